extension Operations {
    public struct DeleteOptions: Sendable {
        public var dryRun = false
        public var mode: EntryPrinter.Mode = .table(wide: false)
        public var auditLog: String?
        /// Threads reading the map (nil: CPUs.available).
        public var threads: Int?
        public init() {}
    }

    /// `conntrack remove`: deletes every entry between the two addresses (and each NAT
    /// entry's partner), each only if it is still the entry that was read.
    public static func remove(_ target: SessionOptions, _ match: PairMatch, _ o: DeleteOptions, console: Console) throws
        -> ExitStatus
    {
        let s = try session(target, readOnly: o.dryRun, console: console)
        let audit = try o.auditLog.map { p throws(CtctlError) in try AuditLog(path: p, command: "conntrack remove") }
        var op = RemoveOp(match: match, o: o, audit: audit, lock: nil, console: console)
        let counts =
            try o.dryRun
            ? s.run(op)
            : s.withWriterLock { lock in
                op.lock = lock
                return try s.run(op)
            }
        return summarize(counts, o, console: console, what: "removed")
    }

    struct RemoveOp: DataplaneOperation {
        let match: PairMatch
        let o: DeleteOptions
        let audit: AuditLog?
        var lock: WriterLock?
        let console: Console
        func run<D: Dataplane>(_ dp: D) throws -> RemovalCounts {
            try Operations.deleteMatching(dp, lock: lock, o, audit: audit, why: "requested", console: console) {
                match.matches($0)
            }
        }
    }

    /// Scans the map and hands every entry `matches` accepts to the layout's remover;
    /// prints and audits each outcome. Shared by remove and service delete.
    static func deleteMatching<D: Dataplane>(
        _ dp: D, lock: WriterLock?, _ o: DeleteOptions, audit: AuditLog?, why: String,
        console: Console, _ matches: @escaping (D.Entry) -> Bool
    ) throws -> RemovalCounts {
        let now = Timestamp.monotonicNow()
        let printer = EntryPrinter(o.mode, to: console.out, now: now, showReason: false, resultColumn: true)
        printer.begin()
        let remover = try dp.remover(lock: lock) { e, _, outcome in
            printer.add(e, reason: nil, outcome: outcome)
            if case .deleted(let partner) = outcome { try audit?.deleted(e, why: why, withPartner: partner, now: now) }
        }
        let scan = EntryScan(dp, filter: ConntrackFilter())
        scan.threads = o.threads ?? CPUs.available
        let lock = Lock()
        try scan.run(sinks: { _ in
            { e, _ in
                if matches(e) { try lock.withLock { try remover.add(e, reason: nil) } }
            }
        })
        try remover.flush()
        printer.end()
        return remover.counts
    }

    static func summarize(_ d: RemovalCounts, _ o: DeleteOptions, console: Console, what: String) -> ExitStatus {
        var parts: [String] = []
        if o.dryRun {
            parts.append(
                "\(d.wouldDelete) entr\(d.wouldDelete == 1 ? "y" : "ies") would be \(what) (dry run), NAT partners included")
        } else {
            parts.append("\(d.deleted) entr\(d.deleted == 1 ? "y" : "ies") \(what)")
        }
        if d.changed > 0 { parts.append("\(d.changed) kept (re-created by the datapath since read)") }
        if d.noLongerStale > 0 { parts.append("\(d.noLongerStale) kept (no longer stale)") }
        if d.gone > 0 { parts.append("\(d.gone) already gone") }
        console.err.line(parts.joined(separator: ", "))
        let acted = o.dryRun ? d.wouldDelete : d.deleted
        return acted > 0 ? .success : .nothingMatched
    }
}
