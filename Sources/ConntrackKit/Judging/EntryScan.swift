import Glibc

/// What a scan saw.
public struct ScanTotals: Sendable {
    public var scanned = 0
    public var matched = 0
    public var byReason: [StaleReason: Int] = [:]
}

/// Streams a dataplane's conntrack entries once: filters every entry, and, with a judge,
/// keeps only the stale ones and names why. Memory stays fixed whatever the map size: one
/// map batch and the pair ledger. Reads only, so it runs on read-only fds. The same for
/// every layout: what differs is asked of the layout (Dataplane) and its rules (StaleRules).
///
/// Partners: the halves of intact pairs cancel out in the PairLedger as the scan goes, so
/// a half pair costs a partner lookup only once the ledger names it. Idle NAT halves have
/// their partner looked up as they come, because a pair is expired only when its partner
/// is not live by its own state. Without a ledger (`get --explain`, or after the ledger
/// overflowed) every NAT half that needs it is looked up. A layout without creation times
/// confirms a missing partner by a second look (StaleRules.halfPairRecheckNs) after the
/// scan.
public final class EntryScan<D: Dataplane> {
    let dp: D
    let filter: ConntrackFilter
    let judge: StaleJudge<D.Rules>?
    var ledger: PairLedger?
    /// The second pass after a ledger overflow: report half pairs only.
    var onlyHalfPairs = false
    /// Half pairs found without a ledger that wait for their second look, and when the
    /// last of them was seen.
    var deferred: [PairLedger.Element] = []
    var lastDeferredAt: UInt64 = 0
    let identity = UnsafeMutablePointer<UInt64>.allocate(capacity: PairLedger.identityWords)
    /// Checked after every batch and while resolving the ledger: true stops the scan there
    /// (heal on SIGINT/SIGTERM).
    public var shouldStop: () -> Bool = { false }
    public private(set) var totals = ScanTotals()
    public private(set) var stopped = false

    /// A plain listing: every entry the filter matches.
    public init(_ dp: D, filter: ConntrackFilter) {
        self.dp = dp
        self.filter = filter
        judge = nil
    }

    /// Stale entries only, judged by `judge`. `ledger: false` looks every partner up (a
    /// handful of entries).
    public init(_ dp: D, filter: ConntrackFilter, judge: StaleJudge<D.Rules>, ledger: Bool = true) {
        self.dp = dp
        self.filter = filter
        self.judge = judge
        self.ledger = ledger ? PairLedger() : nil
    }

    /// Tests: a ledger of 3 x 2^bits cells.
    init(_ dp: D, filter: ConntrackFilter, judge: StaleJudge<D.Rules>, ledgerBits: Int) {
        self.dp = dp
        self.filter = filter
        self.judge = judge
        ledger = PairLedger(bits: ledgerBits)
    }

    deinit { identity.deallocate() }

    public func run(_ emit: (D.Entry, StaleReason?) throws -> Void) throws {
        try dp.scan { batch in
            // the judge is bound once a batch: a copy per entry would retain its service view
            if let judge {
                for i in 0..<batch.count {
                    let e = batch[i]
                    guard filter.matches(e) else { continue }
                    try consider(e, judge, emit)
                }
            } else {
                for i in 0..<batch.count {
                    let e = batch[i]
                    guard filter.matches(e) else { continue }
                    totals.matched += 1
                    try emit(e, nil)
                }
            }
            totals.scanned += batch.count
            if shouldStop() { stopped = true }
            try dp.verifyPinned(progress: "\(totals.scanned) entries scanned")
            return !stopped
        }
        if !stopped { try finish(emit) }
    }

    /// Judges a few entries read by key (not the map), with the same rules and partner
    /// lookups as a scan; `emit` gets only the stale ones.
    public func judge(_ entries: [D.Entry], _ emit: (D.Entry, StaleReason?) throws -> Void) throws {
        guard let judge else { return }
        for e in entries { try consider(e, judge, emit) }
        try finish(emit)
    }

    /// One matched entry, judged.
    @inline(__always)
    func consider(_ e: D.Entry, _ judge: StaleJudge<D.Rules>, _ emit: (D.Entry, StaleReason?) throws -> Void) throws {
        switch judge.judge(e) {
        case .fresh: break
        case .stale(let reason): if !onlyHalfPairs { try found(e, reason, emit) }
        case .nat(let idle, let old):
            if old, let ledger { ledger.add(identity, sign: dp.ledgerIdentity(e, into: identity)) }
            if idle || (old && ledger == nil) { try resolvePartner(e, judge, selfIdle: idle, old: old, emit) }
        }
    }

    /// After the whole map was read: the verdicts that needed all of it.
    private func finish(_ emit: (D.Entry, StaleReason?) throws -> Void) throws {
        guard let judge else { return }
        if let decoded = ledger?.decode() {
            ledger = nil  // from here on, partner lookups decide half pairs directly
            guard decoded.complete else {
                // more half pairs than the ledger can name: find them with a second pass
                let second = EntryScan(dp, filter: filter, judge: judge, ledger: false)
                second.onlyHalfPairs = true
                second.shouldStop = shouldStop
                try second.run { e, reason in try found(e, reason!, emit) }
                stopped = second.stopped
                return
            }
            deferred += decoded.elements
            lastDeferredAt = Timestamp.monotonicNow()
        }
        guard !deferred.isEmpty else { return }
        // the second look of a layout without creation times comes this much later
        let due = lastDeferredAt + judge.rules.halfPairRecheckNs
        let now = Timestamp.monotonicNow()
        if due > now { usleep(UInt32(min((due - now) / 1000, 1_000_000))) }
        let candidates = deferred
        deferred = []
        for (i, c) in candidates.enumerated() {
            if i % 1024 == 1023 && shouldStop() {
                stopped = true
                return
            }
            // re-read (it may have changed since), and check its partner again; the scan
            // judged its expiry already, here only whether its partner is still gone
            try dp.reread(c) { e in
                guard filter.matches(e), case .nat(_, let old) = judge.judge(e), old else { return }
                try dp.partner(of: e) { p in if p == nil { try found(e, .halfPair, emit) } }
            }
        }
    }

    private func found(_ e: D.Entry, _ reason: StaleReason, _ emit: (D.Entry, StaleReason?) throws -> Void) throws {
        totals.matched += 1
        totals.byReason[reason, default: 0] += 1
        try emit(e, reason)
    }

    /// Looks a NAT half's partner up: a half pair (partner gone or no longer pointing
    /// back) past the grace period is stale; so is a half that is expired by the
    /// datapath's rule (idle, and its partner not live by its own state).
    private func resolvePartner(
        _ e: D.Entry, _ judge: StaleJudge<D.Rules>, selfIdle: Bool, old: Bool,
        _ emit: (D.Entry, StaleReason?) throws -> Void
    ) throws {
        let rules = judge.rules
        try dp.partner(of: e) { p in
            if let p {
                let partnerIdle = rules.isIdle(p, now: judge.now)
                if rules.expired(e, selfIdle: selfIdle, partnerIdle: partnerIdle) && !onlyHalfPairs {
                    try found(e, .expired, emit)
                }
            } else if old {
                // with a ledger, the ledger names half pairs (and this one is in it)
                if ledger == nil { try halfPairSeen(e, rules, emit) }
            } else if rules.expired(e, selfIdle: selfIdle, partnerIdle: nil) && !onlyHalfPairs {
                try found(e, .expired, emit)
            }
        }
    }

    /// A half pair found by a direct lookup: stale now, or after the layout's second look.
    private func halfPairSeen(_ e: D.Entry, _ rules: D.Rules, _ emit: (D.Entry, StaleReason?) throws -> Void) throws {
        guard rules.halfPairRecheckNs > 0 else { return try found(e, .halfPair, emit) }
        let sign = dp.ledgerIdentity(e, into: identity)
        let w = UnsafeBufferPointer(start: identity, count: PairLedger.identityWords)
        deferred.append(PairLedger.Element(forward: Array(w[1..<6]), reverse: Array(w[6..<11]), tag: w[0], sign: sign))
        lastDeferredAt = Timestamp.monotonicNow()
    }
}
