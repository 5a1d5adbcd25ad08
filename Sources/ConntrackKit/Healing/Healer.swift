import CLibBPF
import Glibc
import Logging

/// What one heal pass is asked to do.
public struct HealOptions: Sendable {
    public var filter = ConntrackFilter()
    public var dryRun = false
    public var graceNs = StaleJudge.defaultGraceNs
    public var auditLog: String?
    public init() {}
}

/// What one heal pass did.
public struct PassResult: Sendable {
    public var scanned = 0
    public var stale = 0
    public var staleByReason: [StaleReason: Int] = [:]
    /// Entries deleted, NAT partners included.
    public var deleted = 0
    public var deletedByReason: [StaleReason: Int] = [:]
    /// Kept because the datapath re-created them between the read and the delete.
    public var changed = 0
    /// Kept because the rule they were judged by no longer held at delete time.
    public var noLongerStale = 0
    public var wouldDelete = 0
    public var wouldDeleteByReason: [StaleReason: Int] = [:]
    public var durationNs: UInt64 = 0
    /// Stopped early by a signal (between batches).
    public var stopped = false
    public var epoch: UInt32 = 0
    public var ctMaxEntries: UInt32 = 0
}

/// One heal pass: under the writers' lock, judge every entry against one consistent view
/// of the services, and delete the stale ones (with their NAT partners) through the
/// kernel's compare-and-delete. Memory stays at one map batch and two stages.
public final class Healer {
    public let pins: PinDirectory
    let options: HealOptions
    let audit: AuditLog?
    var dp: Dataplane

    public init(_ pins: PinDirectory, options: HealOptions, auditCommand: String) throws(CtctlError) {
        self.pins = pins
        self.options = options
        dp = try Dataplane(pins, readOnly: options.dryRun)
        audit = try options.auditLog.map { p throws(CtctlError) in try AuditLog(path: p, command: auditCommand) }
    }

    /// Re-opens the maps (after the dataplane was unloaded and loaded again).
    public func reopen() throws(CtctlError) { dp = try Dataplane(pins, readOnly: options.dryRun) }

    public var dataplane: Dataplane { dp }

    /// `printer`: where each handled entry is printed (nil: nowhere). `shouldStop` is
    /// checked between batches; a pass never stops between the two deletes of a pair
    /// (both halves go in one kernel run).
    public func pass(printer: EntryPrinter?, shouldStop: @escaping () -> Bool = { false }) throws -> PassResult {
        let start = Timestamp.monotonicNow()
        // a dry run reads only; a real pass holds the writers' lock from start to end
        let lock = options.dryRun ? nil : try WriterLock(pins)
        defer { _ = lock }
        if let lock { try dp.verify(holding: lock) } else { try dp.verifyPinned() }
        let view = try ServiceView.read(dp, holdingLock: lock != nil)
        let judge = StaleJudge(view: view, timeouts: dp.timeouts, now: start, graceNs: options.graceNs)
        let audit = self.audit
        let report = { (e: ReferenceEntry, reason: StaleReason?, outcome: DeleteOutcome) throws in
            printer?.add(e, reason: reason, outcome: outcome)
            if case .deleted(let partner) = outcome {
                try audit?.deleted(e, why: reason?.rawValue ?? "stale", withPartner: partner, now: start)
            }
        }
        let deleter =
            try lock.map { lock throws(CtctlError) in Deleter(try Stager(dp, lock: lock), report: report) }
            ?? Deleter(dryRun: dp, report: report)
        let scan = EntryScan(dp, filter: options.filter, judge: judge)
        scan.shouldStop = shouldStop
        try scan.run { e, reason in try deleter.add(e, reason: reason) }
        try deleter.flush()

        var r = PassResult()
        r.scanned = scan.totals.scanned
        r.stale = scan.totals.matched
        r.staleByReason = scan.totals.byReason
        r.deleted = deleter.deletedEntries
        r.deletedByReason = deleter.deletedByReason
        r.changed = deleter.changed
        r.noLongerStale = deleter.noLongerStale
        r.wouldDelete = deleter.wouldDelete
        r.wouldDeleteByReason = deleter.wouldDeleteByReason
        r.stopped = scan.stopped
        r.epoch = view.epoch
        r.ctMaxEntries = dp.ct.info.maxEntries
        r.durationNs = Timestamp.monotonicNow() - start
        return r
    }

    /// The stderr summary of a pass.
    public static func summary(_ r: PassResult, dryRun: Bool) -> String {
        let reasons = StaleReason.allCases.map {
            "\($0.rawValue) \((dryRun ? r.wouldDeleteByReason : r.deletedByReason)[$0] ?? 0)"
        }.joined(separator: ", ")
        var s =
            dryRun
            ? "dry run: \(r.wouldDelete) entr\(r.wouldDelete == 1 ? "y" : "ies") would be deleted (\(reasons))"
            : "healed: \(r.deleted) entr\(r.deleted == 1 ? "y" : "ies") deleted (\(reasons))"
        if r.changed > 0 { s += "; \(r.changed) kept (re-created by the datapath since read)" }
        if r.noLongerStale > 0 { s += "; \(r.noLongerStale) kept (no longer stale)" }
        s += "; \(r.scanned) scanned in \(DurationText.format(nanoseconds: r.durationNs))"
        if r.stopped { s += "; stopped early by a signal" }
        return s
    }
}
