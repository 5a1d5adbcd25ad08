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
    private var pending = EntryBuffer(
        keySize: MemoryLayout<ctctl_ct_key>.size, valueSize: MemoryLayout<ctctl_ct_value>.size, capacity: Stager.capacity)
    /// Full buffers are deleted on a thread of its own while the scan goes on.
    private let pipeline = DeletePipeline()
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

    deinit { pipeline.stop() }

    public var dryRun: Bool { stager == nil }

    public func add(_ e: ReferenceEntry, reason: StaleReason?) throws {
        pending.append(key: e.key, value: e.value, reason)
        if pending.isFull { pending = try pipeline.handOver(pending) { try self.delete($0) } }
    }

    func view(_ b: EntryBuffer, _ i: Int) -> ReferenceEntry {
        ReferenceEntry(
            b.key(i).assumingMemoryBound(to: ctctl_ct_key.self), b.value(i).assumingMemoryBound(to: ctctl_ct_value.self))
    }

    public func flush() throws {
        try pipeline.finish()
        try delete(pending)
        pending.clear()
    }

    /// Deletes (or, dry run, looks up) what `pending` holds, and reports each outcome.
    private func delete(_ pending: EntryBuffer) throws {
        guard pending.count > 0 else { return }
        // Never delete from maps that were unpinned under us (dataplane unloaded or reloaded).
        try dp.verifyPinned(progress: "\(counts.deleted) entries deleted")
        try stager?.verifyPinned()
        var results: [UInt8] = []
        if let stager {
            stager.reset()
            for i in 0..<pending.count { stager.add(view(pending, i), rule: pending.reasons[i]?.rule ?? CTCTL_RULE_REQUESTED) }
            try stager.run()
            results = (0..<pending.count).map { stager.result($0) }
            stager.reset()
        } else {
            // what the kernel would find: the entry was just read; is its partner intact?
            for i in 0..<pending.count {
                results.append(try partners.check(view(pending, i)) ? UInt8(CTCTL_STAGE_R_PARTNER_OK) : 0)
            }
        }
        let keySize = MemoryLayout<ctctl_ct_key>.size
        for (i, r) in results.enumerated() {
            let reason = pending.reasons[i]
            let e = view(pending, i)
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
    }

}
