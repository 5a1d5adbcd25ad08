import CLibBPF

/// What a scan saw.
public struct ScanTotals: Sendable {
    public var scanned = 0
    public var matched = 0
    public var byReason: [StaleReason: Int] = [:]
}

/// Streams the conntrack map once: filters every entry, and, with a judge, keeps only
/// the stale ones and names why. Memory stays fixed whatever the map size: one map batch
/// and the pair ledger. Reads only, so it runs on read-only fds.
///
/// Partners: the halves of intact pairs cancel out in the PairLedger as the scan goes, so
/// a half pair costs a partner lookup only once the ledger names it. Idle NAT halves have
/// their partner looked up as they come, because a pair is expired only when its partner
/// is not live by its own state (ctctl_expired_entry). Without a ledger (`get --explain`,
/// or after the ledger overflowed) every NAT half that needs it is looked up.
public final class EntryScan {
    let dp: Dataplane
    let filter: ConntrackFilter
    let judge: StaleJudge?
    let partners: PartnerLookup
    var ledger: PairLedger?
    /// The second pass after a ledger overflow: report half pairs only.
    var onlyHalfPairs = false
    /// Checked after every batch and while resolving the ledger: true stops the scan there
    /// (heal on SIGINT/SIGTERM).
    public var shouldStop: () -> Bool = { false }
    public private(set) var totals = ScanTotals()
    public private(set) var stopped = false

    /// A plain listing: every entry the filter matches.
    public init(_ dp: Dataplane, filter: ConntrackFilter) {
        self.dp = dp
        self.filter = filter
        judge = nil
        partners = PartnerLookup(dp.ct)
    }

    /// Stale entries only, judged by `judge`. `ledger: false` looks every partner up (a
    /// handful of entries).
    public init(_ dp: Dataplane, filter: ConntrackFilter, judge: StaleJudge, ledger: Bool = true) {
        self.dp = dp
        self.filter = filter
        self.judge = judge
        partners = PartnerLookup(dp.ct)
        self.ledger = ledger ? PairLedger() : nil
    }

    /// Tests: a ledger of 3 x 2^bits cells.
    init(_ dp: Dataplane, filter: ConntrackFilter, judge: StaleJudge, ledgerBits: Int) {
        self.dp = dp
        self.filter = filter
        self.judge = judge
        partners = PartnerLookup(dp.ct)
        ledger = PairLedger(bits: ledgerBits)
    }

    deinit { partners.deallocate() }

    public func run(_ emit: (ReferenceEntry, StaleReason?) throws -> Void) throws {
        try Conntrack.scan(dp) { keys, values, n in
            for i in 0..<n {
                let e = ReferenceEntry(keys + i, values + i)
                guard filter.matches(e) else { continue }
                try consider(e, emit)
            }
            totals.scanned += n
            if shouldStop() {
                stopped = true
            }
            try checkPinned()
            return !stopped
        }
        if !stopped { try resolveLedger(emit) }
    }

    /// One matched entry: emitted as is (a plain listing), or judged.
    @inline(__always)
    func consider(_ e: ReferenceEntry, _ emit: (ReferenceEntry, StaleReason?) throws -> Void) throws {
        guard let judge else {
            totals.matched += 1
            try emit(e, nil)
            return
        }
        switch judge.judge(e) {
        case .fresh: break
        case .stale(let reason): if !onlyHalfPairs { try found(e, reason, emit) }
        case .nat(let idle, let old):
            if old, let ledger { ledger.add(e) }
            if idle || (old && ledger == nil) { try resolvePartner(e, selfIdle: idle, old: old, emit) }
        }
    }

    /// The halves the ledger says lost their partner: re-read each (it may have changed
    /// since), and check its partner again.
    private func resolveLedger(_ emit: (ReferenceEntry, StaleReason?) throws -> Void) throws {
        guard let decoded = ledger?.decode() else { return }
        ledger = nil  // from here on, partner lookups decide half pairs directly
        guard decoded.complete else {
            // more half pairs than the ledger can name: find them with a second pass
            let second = EntryScan(dp, filter: filter, judge: judge!, ledger: false)
            second.onlyHalfPairs = true
            second.shouldStop = shouldStop
            try second.run { e, reason in try found(e, reason!, emit) }
            stopped = second.stopped
            return
        }
        let key = UnsafeMutablePointer<ctctl_ct_key>.allocate(capacity: 1)
        let value = UnsafeMutablePointer<ctctl_ct_value>.allocate(capacity: 1)
        defer {
            key.deallocate()
            value.deallocate()
        }
        for (i, element) in decoded.elements.enumerated() {
            if i % 1024 == 1023 && shouldStop() {
                stopped = true
                return
            }
            key.pointee = element.presentKey
            let present: Bool
            present = try dp.ct.lookup(UnsafeRawPointer(key), into: value)
            guard present, value.pointee.created_ns == element.created, value.pointee.type == element.presentType else {
                continue
            }
            let e = ReferenceEntry(key, value)
            // the scan judged its expiry already; here only whether its partner is still gone
            guard filter.matches(e), case .nat(_, let old) = judge!.judge(e), old, try !partners.check(e) else { continue }
            try found(e, .halfPair, emit)
        }
    }

    private func found(_ e: ReferenceEntry, _ reason: StaleReason, _ emit: (ReferenceEntry, StaleReason?) throws -> Void) throws {
        totals.matched += 1
        totals.byReason[reason, default: 0] += 1
        try emit(e, reason)
    }

    /// Looks a NAT half's partner up: a half pair (partner gone or no longer pointing
    /// back) past the grace period is stale; so is a half that is expired by the
    /// datapath's rule (idle, and its partner not live by its own state).
    private func resolvePartner(
        _ e: ReferenceEntry, selfIdle: Bool, old: Bool, _ emit: (ReferenceEntry, StaleReason?) throws -> Void
    ) throws {
        guard let judge else { return }
        let ok = try partners.check(e)
        if ok {
            let pv = partners.value.pointee
            let partnerIdle = judge.isIdle(proto: e.proto, flags: pv.flags, lastSeen: pv.last_seen_ns)
            if judge.expired(e.typeRaw, selfIdle: selfIdle, partner: (true, partnerIdle)) && !onlyHalfPairs {
                try found(e, .expired, emit)
            }
        } else if old {
            // with a ledger, the ledger names half pairs (and this one is in it)
            if ledger == nil { try found(e, .halfPair, emit) }
        } else if judge.expired(e.typeRaw, selfIdle: selfIdle, partner: nil) && !onlyHalfPairs {
            try found(e, .expired, emit)
        }
    }

    func checkPinned() throws {
        try dp.verifyPinned(progress: "\(totals.scanned) entries scanned")
    }
}
