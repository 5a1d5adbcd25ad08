extension Operations {
    public struct ListOptions: Sendable {
        public var filter = ConntrackFilter()
        public var stale = false
        public var mode: EntryPrinter.Mode = .table(wide: false)
        public var graceNs = StaleDefaults.graceNs
        /// Threads reading the map (nil: CPUs.available).
        public var threads: Int?
        public init() {}
    }

    /// `conntrack list`: streams the entries that match, or only the stale ones.
    /// Returns how many were shown.
    @discardableResult
    public static func list(_ target: SessionOptions, _ o: ListOptions, console: Console) throws -> Int {
        try session(target, readOnly: true, console: console).run(ListOp(o: o, console: console))
    }

    struct ListOp: DataplaneOperation {
        let o: ListOptions
        let console: Console
        func run<D: Dataplane>(_ dp: D) throws -> Int { try Operations.list(dp, o, console: console) }
    }

    static func list<D: Dataplane>(_ dp: D, _ o: ListOptions, console: Console) throws -> Int {
        let now = Timestamp.monotonicNow()
        let printer = EntryPrinter(o.mode, to: console.out, now: now, showReason: o.stale)
        printer.begin()
        // Reads only: the view of the services is consistent, and partners are looked up with
        // read-only fds (works on a read-only bpffs).
        let scan =
            o.stale
            ? EntryScan(
                dp, filter: o.filter, judge: StaleJudge(try dp.staleRules(holdingLock: false), now: now, graceNs: o.graceNs))
            : EntryScan(dp, filter: o.filter)
        try scan.run(threads: o.threads ?? CPUs.available, into: printer)
        printer.end()
        if o.mode != .count {
            console.err.line("\(printer.count) \(o.stale ? "stale " : "")entr\(printer.count == 1 ? "y" : "ies") shown")
        }
        return printer.count
    }
}
