import CLibBPF

/// Copies of up to one stage of entries, kept across a kernel round trip (a partner
/// probe or a delete), so they can still be printed afterwards.
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

    func stage(into stager: Stager) {
        stager.reset()
        for i in 0..<count { stager.add(view(i)) }
    }

    func clear() { count = 0 }
}

/// What a scan saw.
public struct ScanTotals: Sendable {
    public var scanned = 0
    public var matched = 0
    public var byReason: [StaleReason: Int] = [:]
}

/// Streams the conntrack map once: filters every entry, and, with a judge, keeps only
/// the stale ones and names why. Memory stays fixed whatever the map size: one map batch,
/// one stage, and the pair ledger.
///
/// Partners: the halves of intact pairs cancel out in the PairLedger as the scan goes, so
/// a half pair costs a kernel check only once the ledger names it. Idle NAT halves are
/// checked in the kernel (prog_stage, probe) as they come, because a pair is expired only
/// when its partner is idle too. Without a ledger (`get --explain`, or after the ledger
/// overflowed) every NAT half that needs it is checked in the kernel.
public final class EntryScan {
    let dp: Dataplane
    let filter: ConntrackFilter
    let judge: StaleJudge?
    let stager: Stager?
    let pending = EntryBuffer()
    var ledger: PairLedger?
    /// The second pass after a ledger overflow: report half pairs only.
    var onlyHalfPairs = false
    /// Checked between batches: true stops the scan there (heal on SIGINT/SIGTERM).
    public var shouldStop: () -> Bool = { false }
    public private(set) var totals = ScanTotals()
    public private(set) var stopped = false

    /// A plain listing: every entry the filter matches.
    public init(_ dp: Dataplane, filter: ConntrackFilter) {
        self.dp = dp
        self.filter = filter
        judge = nil
        stager = nil
    }

    /// Stale entries only, judged by `judge`; the stager runs the partner checks.
    /// `ledger: false` checks every partner in the kernel (a handful of entries).
    public init(_ dp: Dataplane, filter: ConntrackFilter, judge: StaleJudge, stager: Stager, ledger: Bool = true) {
        self.dp = dp
        self.filter = filter
        self.judge = judge
        self.stager = stager
        self.ledger = ledger ? PairLedger() : nil
    }

    /// Tests: a ledger of 3 x 2^bits cells.
    init(_ dp: Dataplane, filter: ConntrackFilter, judge: StaleJudge, stager: Stager, ledgerBits: Int) {
        self.dp = dp
        self.filter = filter
        self.judge = judge
        self.stager = stager
        ledger = PairLedger(bits: ledgerBits)
    }

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
        try finishProbes(emit)
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
            if idle || (old && ledger == nil) {
                pending.append(e, nil)
                if pending.isFull { try probe(emit) }
            }
        }
    }

    func finishProbes(_ emit: (EntryView, StaleReason?) throws -> Void) throws {
        guard judge != nil else { return }
        try probe(emit)
        if ledger != nil { try resolveLedger(emit) }
    }

    /// The halves the ledger says lost their partner: re-read each (it may have changed
    /// since), and confirm with the kernel's partner check.
    private func resolveLedger(_ emit: (EntryView, StaleReason?) throws -> Void) throws {
        guard let decoded = ledger?.decode() else { return }
        ledger = nil  // from here on, partner checks decide half pairs directly
        guard decoded.complete else {
            // more half pairs than the ledger can name: find them with a second pass
            let second = EntryScan(dp, filter: filter, judge: judge!, stager: stager!, ledger: false)
            second.onlyHalfPairs = true
            try second.run { e, reason in try found(e, reason!, emit) }
            return
        }
        for element in decoded.elements {
            var key = element.presentKey
            let value: ctctl_ct_value?
            do throws(Errno) { value = try dp.ct.lookup(key, as: ctctl_ct_value.self) } catch {
                throw CtctlError.from(error, doing: "reading", path: dp.ct.path)
            }
            guard var v = value, v.created_ns == element.created, v.type == element.presentType else { continue }
            let e = EntryView(&key, &v)
            guard filter.matches(e) else { continue }
            pending.append(e, nil)
            if pending.isFull { try probe(emit) }
        }
        try probe(emit)
    }

    private func found(_ e: EntryView, _ reason: StaleReason, _ emit: (EntryView, StaleReason?) throws -> Void) throws {
        totals.matched += 1
        totals.byReason[reason, default: 0] += 1
        try emit(e, reason)
    }

    /// Asks the kernel about each pending entry's partner: a half pair (partner gone or
    /// no longer pointing back) past the grace period is stale; so is a pair whose two
    /// halves are both idle.
    private func probe(_ emit: (EntryView, StaleReason?) throws -> Void) throws {
        guard let stager, let judge, pending.count > 0 else { return }
        pending.stage(into: stager)
        try stager.run(CTCTL_STAGE_OP_PROBE)
        // Copy the results out first: emitting may hand entries to a Deleter, which
        // reuses the same stage.
        let results = (0..<pending.count).map { (stager.result($0), stager.partnerLastSeen($0)) }
        stager.reset()
        for (i, (r, partnerLastSeen)) in results.enumerated() {
            let e = pending.view(i)
            let timeout = judge.timeouts.timeout(proto: e.proto, flags: e.flags)
            let idle = { (last: UInt64) in judge.now > last && judge.now - last > timeout }
            let old = judge.now > e.createdNs && judge.now - e.createdNs > judge.graceNs
            if r.stagePartnerOK {
                if idle(e.lastSeenNs) && idle(partnerLastSeen) && !onlyHalfPairs { try found(e, .expired, emit) }
            } else if old {
                // with a ledger, the ledger names half pairs (and this one is in it)
                if ledger == nil { try found(e, .halfPair, emit) }
            } else if idle(e.lastSeenNs) && !onlyHalfPairs {
                try found(e, .expired, emit)
            }
        }
        pending.clear()
    }

    func checkPinned() throws {
        try EntryScan.checkPinned(dp, progress: "\(totals.scanned) entries scanned")
    }

    static func checkPinned(_ dp: Dataplane, progress: String) throws {
        if !dp.stillPinned() {
            throw CtctlError(
                .unavailable,
                "the dataplane at \(dp.pinDir.path) was unloaded during the pass: stopped after \(progress) (no NAT pair was left half deleted)"
            )
        }
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
    /// Gone already (LRU eviction, expiry, or deleted with its partner earlier in this pass).
    case gone
}

/// Deletes entries in batches through the kernel's compare-and-delete: each entry only
/// if it still has the identity (type, created time) it was read with, and its NAT
/// partner with it if the partner still points back. With dryRun, the same batches run
/// as a probe: nothing is deleted, and the report says what would go.
public final class Deleter {
    let stager: Stager
    let dryRun: Bool
    let pending = EntryBuffer()
    let report: (EntryView, StaleReason?, DeleteOutcome) throws -> Void
    public private(set) var deletedEntries = 0
    public private(set) var deletedByReason: [StaleReason: Int] = [:]
    public private(set) var changed = 0
    public private(set) var gone = 0
    public private(set) var wouldDelete = 0
    public private(set) var wouldDeleteByReason: [StaleReason: Int] = [:]
    /// Hashes of the keys deleted (or, dry run, to be deleted) so far, partners included:
    /// a later slot for an entry that went with its partner is not reported again. A hash
    /// collision could only hide a report line, never change what is deleted.
    private var handled = Set<UInt64>()

    public init(_ stager: Stager, dryRun: Bool, report: @escaping (EntryView, StaleReason?, DeleteOutcome) throws -> Void) {
        self.stager = stager
        self.dryRun = dryRun
        self.report = report
    }

    public func add(_ e: EntryView, reason: StaleReason?) throws {
        pending.append(e, reason)
        if pending.isFull { try flush() }
    }

    public func flush() throws {
        guard pending.count > 0 else { return }
        // Never delete from maps that were unpinned under us (dataplane unloaded).
        try EntryScan.checkPinned(stager.dp, progress: "\(deletedEntries) entries deleted")
        pending.stage(into: stager)
        try stager.run(dryRun ? CTCTL_STAGE_OP_PROBE : CTCTL_STAGE_OP_DELETE)
        let results = (0..<pending.count).map { stager.result($0) }
        stager.reset()
        for (i, r) in results.enumerated() {
            let reason = pending.reasons[i]
            let e = pending.view(i)
            let outcome: DeleteOutcome
            if handled.contains(Deleter.hash(e.key)) { continue }  // went (or goes) with its partner
            if dryRun {
                // the probe asks only about the partner: the entry itself was just read
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
            case .changed, .gone: break
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
