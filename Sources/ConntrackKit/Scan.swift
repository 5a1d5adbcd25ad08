import CLibBPF

/// Copies of up to one stage of entries, kept across a kernel round trip (a delete), so
/// they can still be printed afterwards.
final class EntryBuffer {
    let capacity: Int
    let keys: UnsafeMutablePointer<ctctl_ct_key>
    let values: UnsafeMutablePointer<ctctl_ct_value>
    var reasons: [StaleReason?]
    private(set) var count = 0

    init(capacity: Int = Stager.capacity) {
        self.capacity = capacity
        keys = .allocate(capacity: capacity)
        values = .allocate(capacity: capacity)
        reasons = Array(repeating: nil, count: capacity)
    }

    deinit {
        keys.deallocate()
        values.deallocate()
    }

    var isFull: Bool { count == capacity }

    func append(_ e: EntryView, _ reason: StaleReason?) {
        keys[count] = e.key.pointee
        values[count] = e.value.pointee
        reasons[count] = reason
        count += 1
    }

    func view(_ i: Int) -> EntryView { EntryView(keys + i, values + i) }

    func clear() { count = 0 }
}

/// What a scan saw.
public struct ScanTotals: Sendable {
    public var scanned = 0
    public var matched = 0
    public var byReason: [StaleReason: Int] = [:]
}

/// Looks up the partner of a NAT half by its key and checks it with the datapath's own
/// rule (ctctl_is_partner): the other type, the same created time, pointing back. Reads
/// only: it works on read-only map fds and a read-only bpffs.
struct PartnerLookup {
    let map: BPFMap
    let value = UnsafeMutablePointer<ctctl_ct_value>.allocate(capacity: 1)

    init(_ map: BPFMap) { self.map = map }

    /// Is the partner of `e` present and intact? Its value is in `value` afterwards.
    func check(_ e: EntryView) throws(CtctlError) -> Bool {
        guard e.isNAT else { return false }
        let found: Bool
        do throws(Errno) { found = try map.lookup(UnsafeRawPointer(e.partnerKey), into: value) } catch {
            throw CtctlError.from(error, doing: "reading", path: map.path)
        }
        return found && ctctl_is_partner(value, e.key, e.typeRaw, e.createdNs) != 0
    }

    func deallocate() { value.deallocate() }
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

    public func run(_ emit: (EntryView, StaleReason?) throws -> Void) throws {
        try Conntrack.scan(dp) { keys, values, n in
            for i in 0..<n {
                let e = EntryView(keys + i, values + i)
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
    func consider(_ e: EntryView, _ emit: (EntryView, StaleReason?) throws -> Void) throws {
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
    private func resolveLedger(_ emit: (EntryView, StaleReason?) throws -> Void) throws {
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
            do throws(Errno) { present = try dp.ct.lookup(UnsafeRawPointer(key), into: value) } catch {
                throw CtctlError.from(error, doing: "reading", path: dp.ct.path)
            }
            guard present, value.pointee.created_ns == element.created, value.pointee.type == element.presentType else {
                continue
            }
            let e = EntryView(key, value)
            // the scan judged its expiry already; here only whether its partner is still gone
            guard filter.matches(e), case .nat(_, let old) = judge!.judge(e), old, try !partners.check(e) else { continue }
            try found(e, .halfPair, emit)
        }
    }

    private func found(_ e: EntryView, _ reason: StaleReason, _ emit: (EntryView, StaleReason?) throws -> Void) throws {
        totals.matched += 1
        totals.byReason[reason, default: 0] += 1
        try emit(e, reason)
    }

    /// Looks a NAT half's partner up: a half pair (partner gone or no longer pointing
    /// back) past the grace period is stale; so is a half that is expired by the
    /// datapath's rule (idle, and its partner not live by its own state).
    private func resolvePartner(
        _ e: EntryView, selfIdle: Bool, old: Bool, _ emit: (EntryView, StaleReason?) throws -> Void
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

/// What happened to one entry handed to the Deleter.
public enum DeleteOutcome: Sendable, Equatable {
    /// Deleted; `partner`: its NAT partner went with it.
    case deleted(partner: Bool)
    /// --dry-run: would be deleted; `partner`: its partner would go with it.
    case wouldDelete(partner: Bool)
    /// The datapath re-created or converted it since it was read (another created time
    /// or type): left alone.
    case changed
    /// The same entry, but the rule it was judged by no longer holds (a flow that came
    /// back to life, a partner restored, a service that changed): left alone.
    case noLongerStale
    /// Gone already (LRU eviction, expiry, or deleted with its partner earlier in this pass).
    case gone
}

/// Deletes entries in batches through the kernel's compare-and-delete: each entry only
/// if it still has the identity (type, created time) it was read with and the rule it was
/// judged by still holds, and its NAT partner with it if the partner still points back.
/// With dryRun nothing is written: the report says what would go, partners looked up as
/// the kernel would.
public final class Deleter {
    let dp: Dataplane
    let stager: Stager?
    let partners: PartnerLookup
    let pending = EntryBuffer()
    let report: (EntryView, StaleReason?, DeleteOutcome) throws -> Void
    public private(set) var deletedEntries = 0
    public private(set) var deletedByReason: [StaleReason: Int] = [:]
    public private(set) var changed = 0
    public private(set) var noLongerStale = 0
    public private(set) var gone = 0
    public private(set) var wouldDelete = 0
    public private(set) var wouldDeleteByReason: [StaleReason: Int] = [:]
    /// Hashes of the keys deleted (or, dry run, to be deleted) so far, partners included:
    /// a later slot for an entry that went with its partner is not reported again. A hash
    /// collision could only hide a report line, never change what is deleted.
    private var handled = Set<UInt64>()

    /// Deletes through `stager`.
    public init(_ stager: Stager, report: @escaping (EntryView, StaleReason?, DeleteOutcome) throws -> Void) {
        dp = stager.dp
        self.stager = stager
        partners = PartnerLookup(stager.dp.ct)
        self.report = report
    }

    /// A dry run: reads only.
    public init(dryRun dp: Dataplane, report: @escaping (EntryView, StaleReason?, DeleteOutcome) throws -> Void) {
        self.dp = dp
        stager = nil
        partners = PartnerLookup(dp.ct)
        self.report = report
    }

    deinit { partners.deallocate() }

    public var dryRun: Bool { stager == nil }

    public func add(_ e: EntryView, reason: StaleReason?) throws {
        pending.append(e, reason)
        if pending.isFull { try flush() }
    }

    public func flush() throws {
        guard pending.count > 0 else { return }
        // Never delete from maps that were unpinned under us (dataplane unloaded or reloaded).
        try dp.verifyPinned(progress: "\(deletedEntries) entries deleted")
        try stager?.verifyPinned()
        var results: [UInt8] = []
        if let stager {
            stager.reset()
            for i in 0..<pending.count { stager.add(pending.view(i), rule: pending.reasons[i]?.rule ?? CTCTL_RULE_REQUESTED) }
            try stager.run()
            results = (0..<pending.count).map { stager.result($0) }
            stager.reset()
        } else {
            // what the kernel would find: the entry was just read; is its partner intact?
            for i in 0..<pending.count {
                results.append(try partners.check(pending.view(i)) ? UInt8(CTCTL_STAGE_R_PARTNER_OK) : 0)
            }
        }
        for (i, r) in results.enumerated() {
            let reason = pending.reasons[i]
            let e = pending.view(i)
            let outcome: DeleteOutcome
            if handled.contains(Deleter.hash(e.key)) { continue }  // went (or goes) with its partner
            if dryRun {
                outcome = .wouldDelete(partner: r.stagePartnerOK)
                let n = r.stagePartnerOK ? 2 : 1
                wouldDelete += n
                if let reason { wouldDeleteByReason[reason, default: 0] += n }
            } else if r & UInt8(CTCTL_STAGE_R_GONE) != 0 {
                outcome = .gone
                gone += 1
            } else if r & UInt8(CTCTL_STAGE_R_CHANGED) != 0 {
                outcome = .changed
                changed += 1
            } else if r.stageRuleFailed {
                outcome = .noLongerStale
                noLongerStale += 1
            } else {
                let n = (r.stageDeleted ? 1 : 0) + (r.stagePartnerDeleted ? 1 : 0)
                deletedEntries += n
                if let reason { deletedByReason[reason, default: 0] += n }
                outcome = r.stageDeleted ? .deleted(partner: r.stagePartnerDeleted) : .gone
                if !r.stageDeleted { gone += 1 }
            }
            switch outcome {
            case .deleted(let partner), .wouldDelete(let partner):
                handled.insert(Deleter.hash(e.key))
                if partner { handled.insert(Deleter.hash(e.partnerKey)) }
            case .changed, .noLongerStale, .gone: break
            }
            try report(e, reason, outcome)
        }
        pending.clear()
    }

    /// FNV-1a over the 40 key bytes.
    static func hash(_ k: UnsafePointer<ctctl_ct_key>) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        let raw = UnsafeRawBufferPointer(start: k, count: MemoryLayout<ctctl_ct_key>.size)
        for b in raw {
            h ^= UInt64(b)
            h &*= 0x100_0000_01b3
        }
        return h
    }
}
