import CLibBPF

/// Deletes reference-dataplane entries in batches through the kernel's compare-and-delete
/// (prog_stage, see Stager): each entry only if it still has the identity (type, created
/// time) it was read with and the rule it was judged by still holds, and its NAT partner
/// with it if the partner still points back. With no stager (a dry run) nothing is written:
/// the report says what would go, partners looked up as the kernel would.
public final class ReferenceRemover: EntryRemover {
    let dp: ReferenceDataplane
    let stager: Stager?
    let partners: PartnerLookup
    let pending = EntryBuffer(
        keySize: MemoryLayout<ctctl_ct_key>.size, valueSize: MemoryLayout<ctctl_ct_value>.size, capacity: Stager.capacity)
    let report: RemovalReport<ReferenceEntry>
    public private(set) var counts = RemovalCounts()
    private var handled = HandledKeys()

    /// Deletes through `stager` (which holds the writers' lock), or, with nil, a dry run.
    init(_ dp: ReferenceDataplane, stager: Stager?, report: @escaping RemovalReport<ReferenceEntry>) {
        self.dp = dp
        self.stager = stager
        partners = PartnerLookup(dp.ct)
        self.report = report
    }

    public var dryRun: Bool { stager == nil }

    public func add(_ e: ReferenceEntry, reason: StaleReason?) throws {
        pending.append(key: e.key, value: e.value, reason)
        if pending.isFull { try flush() }
    }

    func view(_ i: Int) -> ReferenceEntry {
        ReferenceEntry(
            pending.key(i).assumingMemoryBound(to: ctctl_ct_key.self),
            pending.value(i).assumingMemoryBound(to: ctctl_ct_value.self))
    }

    public func flush() throws {
        guard pending.count > 0 else { return }
        // Never delete from maps that were unpinned under us (dataplane unloaded or reloaded).
        try dp.verifyPinned(progress: "\(counts.deleted) entries deleted")
        try stager?.verifyPinned()
        var results: [UInt8] = []
        if let stager {
            stager.reset()
            for i in 0..<pending.count { stager.add(view(i), rule: pending.reasons[i]?.rule ?? CTCTL_RULE_REQUESTED) }
            try stager.run()
            results = (0..<pending.count).map { stager.result($0) }
            stager.reset()
        } else {
            // what the kernel would find: the entry was just read; is its partner intact?
            for i in 0..<pending.count {
                results.append(try partners.check(view(i)) ? UInt8(CTCTL_STAGE_R_PARTNER_OK) : 0)
            }
        }
        let keySize = MemoryLayout<ctctl_ct_key>.size
        for (i, r) in results.enumerated() {
            let reason = pending.reasons[i]
            let e = view(i)
            if handled.contains(e.key, count: keySize) { continue }  // went (or goes) with its partner
            let outcome = DeleteOutcome(stageResult: r, dryRun: dryRun)
            counts.record(outcome, reason: reason)
            switch outcome {
            case .deleted(let partner), .wouldDelete(let partner):
                handled.insert(e.key, count: keySize)
                if partner { handled.insert(e.partnerKey, count: keySize) }
            case .changed, .noLongerStale, .gone: break
            }
            try report(e, reason, outcome)
        }
        pending.clear()
    }

}
