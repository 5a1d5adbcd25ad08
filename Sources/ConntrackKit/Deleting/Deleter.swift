import CLibBPF

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
    let report: (ReferenceEntry, StaleReason?, DeleteOutcome) throws -> Void
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
    public init(_ stager: Stager, report: @escaping (ReferenceEntry, StaleReason?, DeleteOutcome) throws -> Void) {
        dp = stager.dp
        self.stager = stager
        partners = PartnerLookup(stager.dp.ct)
        self.report = report
    }

    /// A dry run: reads only.
    public init(dryRun dp: Dataplane, report: @escaping (ReferenceEntry, StaleReason?, DeleteOutcome) throws -> Void) {
        self.dp = dp
        stager = nil
        partners = PartnerLookup(dp.ct)
        self.report = report
    }

    deinit { partners.deallocate() }

    public var dryRun: Bool { stager == nil }

    public func add(_ e: ReferenceEntry, reason: StaleReason?) throws {
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
