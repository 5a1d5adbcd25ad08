import CLibBPF
import Glibc
import Logging

/// What one heal pass is asked to do.
public struct HealOptions: Sendable {
    public var filter = ConntrackFilter()
    public var dryRun = false
    public var graceNs = StaleDefaults.graceNs
    public var auditLog: String?
    /// Threads reading the map (nil: CPUs.available; the watching heal uses 1).
    public var threads: Int?
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
    /// The layout's service version the pass judged against (read at its start).
    public var serviceVersion: UInt64 = 0
    public var ctMaxEntries: UInt32 = 0
}

/// One heal pass: under the writers' lock, judge every entry against one consistent view
/// of the services, and delete the stale ones (with their NAT partners) through the
/// layout's compare-and-delete. Memory stays at one map batch and one stage.
public final class Healer {
    let options: HealOptions
    let audit: AuditLog?
    public private(set) var session: Session

    public init(_ target: SessionOptions, options: HealOptions, auditCommand: String) throws(CtctlError) {
        self.options = options
        session = try Session.open(target, readOnly: options.dryRun)
        audit = try options.auditLog.map { p throws(CtctlError) in try AuditLog(path: p, command: auditCommand) }
    }

    /// Re-opens the maps (after the dataplane was unloaded and loaded again).
    public func reopen() throws(CtctlError) { session = try session.reopen() }

    public var dataplane: any Dataplane { session.dataplane }
    public var pins: PinDirectory { session.pins }

    /// `printer`: where each handled entry is printed (nil: nowhere). `shouldStop` is
    /// checked between batches; a pass never stops between the two deletes of a pair
    /// (both halves go in one kernel run).
    public func pass(printer: EntryPrinter?, shouldStop: @escaping () -> Bool = { false }) throws -> PassResult {
        // a dry run reads only; a real pass holds the writers' lock from start to end
        var op = PassOp(healer: self, lock: nil, printer: printer, shouldStop: shouldStop)
        if options.dryRun {
            try session.dataplane.verifyPinned(progress: nil)
            return try session.run(op)
        }
        return try session.withWriterLock { lock in
            op.lock = lock
            return try session.run(op)
        }
    }

    struct PassOp: DataplaneOperation {
        let healer: Healer
        var lock: WriterLock?
        let printer: EntryPrinter?
        let shouldStop: () -> Bool
        func run<D: Dataplane>(_ dp: D) throws -> PassResult {
            try healer.pass(dp, lock: lock, printer: printer, shouldStop: shouldStop)
        }
    }

    func pass<D: Dataplane>(_ dp: D, lock: WriterLock?, printer: EntryPrinter?, shouldStop: @escaping () -> Bool) throws
        -> PassResult
    {
        let start = Timestamp.monotonicNow()
        let version = try dp.serviceVersion()
        let rules = try dp.staleRules(holdingLock: lock != nil)
        let judge = StaleJudge(rules, now: start, graceNs: options.graceNs)
        let audit = self.audit
        let remover = try dp.remover(lock: lock) { e, reason, outcome in
            printer?.add(e, reason: reason, outcome: outcome)
            if case .deleted(let partner) = outcome {
                try audit?.deleted(e, why: reason?.rawValue ?? "stale", withPartner: partner, now: start)
            }
        }
        let scan = EntryScan(dp, filter: options.filter, judge: judge)
        scan.shouldStop = shouldStop
        scan.threads = options.threads ?? CPUs.available
        // the threads judge; deleting (and reporting) is one at a time, through the remover
        let lock = Lock()
        try scan.run(sinks: { _ in { e, reason in try lock.withLock { try remover.add(e, reason: reason) } } })
        try remover.flush()

        let c = remover.counts
        var r = PassResult()
        r.scanned = scan.totals.scanned
        r.stale = scan.totals.matched
        r.staleByReason = scan.totals.byReason
        r.deleted = c.deleted
        r.deletedByReason = c.deletedByReason
        r.changed = c.changed
        r.noLongerStale = c.noLongerStale
        r.wouldDelete = c.wouldDelete
        r.wouldDeleteByReason = c.wouldDeleteByReason
        r.stopped = scan.stopped
        r.epoch = rules.view.version
        r.serviceVersion = version
        r.ctMaxEntries = UInt32(dp.conntrackCapacity)
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
