import CLibBPF

/// The work behind each conntrack and service command. The CLI parses arguments and
/// calls these with a console; tests call them the same way.
public enum Operations {
    // MARK: list

    public struct ListOptions: Sendable {
        public var filter = ConntrackFilter()
        public var stale = false
        public var mode: EntryPrinter.Mode = .table(wide: false)
        public var graceNs = StaleJudge.defaultGraceNs
        public init() {}
    }

    /// `conntrack list`: streams the entries that match, or only the stale ones.
    /// Returns how many were shown.
    @discardableResult
    public static func list(_ pins: PinDirectory, _ o: ListOptions, console: Console) throws -> Int {
        let dp = try Dataplane(pins, readOnly: true)
        let now = Timestamp.monotonicNow()
        let printer = EntryPrinter(o.mode, to: console.out, now: now, showReason: o.stale)
        printer.begin()
        if o.stale {
            // Reads only: the view of the services is consistent by the service epoch, and
            // partners are looked up with read-only fds (works on a read-only bpffs).
            let judge = StaleJudge(view: try ServiceView.read(dp), timeouts: dp.timeouts, now: now, graceNs: o.graceNs)
            try EntryScan(dp, filter: o.filter, judge: judge).run { e, reason in printer.add(e, reason: reason) }
        } else {
            try EntryScan(dp, filter: o.filter).run { e, _ in printer.add(e, reason: nil) }
        }
        printer.end()
        if o.mode != .count {
            console.err.line("\(printer.count) \(o.stale ? "stale " : "")entr\(printer.count == 1 ? "y" : "ies") shown")
        }
        return printer.count
    }

    // MARK: remove

    /// The IP pair of `conntrack remove`, in either direction, optionally narrowed by the
    /// port on each side (`--dport`: the <dst> side, `--sport`: the <src> side).
    public struct PairMatch: Sendable {
        public let proto: IPProto
        public let dst: IPAddress
        public let src: IPAddress
        public var dport: UInt16?
        public var sport: UInt16?

        public init(proto: IPProto, dst: IPAddress, src: IPAddress, dport: UInt16? = nil, sport: UInt16? = nil) throws(CtctlError)
        {
            guard dst.family == src.family else {
                throw .usage("\(dst) and \(src) are not of the same address family: give two IPv4 or two IPv6 addresses")
            }
            self.proto = proto
            self.dst = dst
            self.src = src
            self.dport = dport
            self.sport = sport
        }

        @inline(__always)
        public func matches(_ e: ReferenceEntry) -> Bool {
            guard e.proto == proto.number, e.familyRaw == dst.family.rawValue else { return false }
            let ks = e.keySrc
            let kd = e.keyDst
            if ks == src && kd == dst
                && (dport == nil || e.keyDport == dport!) && (sport == nil || e.keySport == sport!)
            {
                return true
            }
            if ks == dst && kd == src
                && (dport == nil || e.keySport == dport!) && (sport == nil || e.keyDport == sport!)
            {
                return true
            }
            return false
        }
    }

    public struct DeleteOptions: Sendable {
        public var dryRun = false
        public var mode: EntryPrinter.Mode = .table(wide: false)
        public var auditLog: String?
        public init() {}
    }

    /// `conntrack remove`: deletes every entry between the two addresses (and each NAT
    /// entry's partner), each only if it is still the entry that was read.
    public static func remove(_ pins: PinDirectory, _ match: PairMatch, _ o: DeleteOptions, console: Console) throws -> ExitStatus
    {
        let dp = try Dataplane(pins, readOnly: o.dryRun)
        let audit = try o.auditLog.map { p throws(CtctlError) in try AuditLog(path: p, command: "conntrack remove") }
        let lock = o.dryRun ? nil : try WriterLock(pins)
        let deleter = try deleteMatching(dp, lock: lock, o, audit: audit, why: "requested", console: console) {
            match.matches($0)
        }
        return summarize(deleter, o, console: console, what: "removed")
    }

    /// Scans the map and hands every entry `matches` accepts to a Deleter; prints and
    /// audits each outcome. Shared by remove and service delete.
    static func deleteMatching(
        _ dp: Dataplane, lock: WriterLock?, _ o: DeleteOptions, audit: AuditLog?, why: String,
        console: Console, _ matches: @escaping (ReferenceEntry) -> Bool
    ) throws -> (Deleter, EntryPrinter) {
        let now = Timestamp.monotonicNow()
        let printer = EntryPrinter(o.mode, to: console.out, now: now, showReason: false, resultColumn: true)
        printer.begin()
        let report = { (e: ReferenceEntry, _: StaleReason?, outcome: DeleteOutcome) throws in
            printer.add(e, reason: nil, outcome: outcome)
            if case .deleted(let partner) = outcome { try audit?.deleted(e, why: why, withPartner: partner, now: now) }
        }
        let deleter =
            try lock.map { lock throws(CtctlError) in Deleter(try Stager(dp, lock: lock), report: report) }
            ?? Deleter(dryRun: dp, report: report)
        try EntryScan(dp, filter: ConntrackFilter()).run { e, _ in
            if matches(e) { try deleter.add(e, reason: nil) }
        }
        try deleter.flush()
        printer.end()
        return (deleter, printer)
    }

    static func summarize(_ r: (Deleter, EntryPrinter), _ o: DeleteOptions, console: Console, what: String) -> ExitStatus {
        let (d, _) = r
        var parts: [String] = []
        if o.dryRun {
            parts.append(
                "\(d.wouldDelete) entr\(d.wouldDelete == 1 ? "y" : "ies") would be \(what) (dry run), NAT partners included")
        } else {
            parts.append("\(d.deletedEntries) entr\(d.deletedEntries == 1 ? "y" : "ies") \(what)")
        }
        if d.changed > 0 { parts.append("\(d.changed) kept (re-created by the datapath since read)") }
        if d.noLongerStale > 0 { parts.append("\(d.noLongerStale) kept (no longer stale)") }
        if d.gone > 0 { parts.append("\(d.gone) already gone") }
        console.err.line(parts.joined(separator: ", "))
        let acted = o.dryRun ? d.wouldDelete : d.deletedEntries
        return acted > 0 ? .success : .nothingMatched
    }

    // MARK: services

    /// `service delete`: removes the frontend, bumps the epoch, removes the backends, then
    /// the NAT conntrack entries of that service (both halves), as Calico does.
    public static func deleteService(_ pins: PinDirectory, _ ref: ServiceRef, _ o: DeleteOptions, console: Console) throws
        -> ExitStatus
    {
        let dp = try Dataplane(pins, readOnly: false)
        let audit = try o.auditLog.map { p throws(CtctlError) in try AuditLog(path: p, command: "service delete") }
        let lock = try WriterLock(pins)
        if o.dryRun {
            guard try Services.get(dp, ref) != nil else {
                console.err.line("no service \(ref): nothing to delete (see `ctctl nat list`)")
                return .nothingMatched
            }
        } else {
            guard try Services.delete(dp, ref, lock: lock) != nil else {
                console.err.line("no service \(ref): nothing deleted (see `ctctl nat list`)")
                return .nothingMatched
            }
        }
        let r = try deleteMatching(dp, lock: lock, o, audit: audit, why: "service-deleted", console: console) { e in
            e.isNAT && e.serviceProto == ref.proto.number && e.servicePort == ref.vip.port && e.serviceAddress == ref.vip.address
        }
        console.err.line(o.dryRun ? "service \(ref) would be deleted" : "deleted service \(ref)")
        _ = summarize(r, o, console: console, what: "removed")
        return .success
    }

    public static func natList(_ pins: PinDirectory, json: Bool, console: Console) throws {
        let dp = try Dataplane(pins, readOnly: true)
        let services = try Services.list(dp)
        if json {
            console.out.line(
                JSON.array(
                    services.map { s in
                        .object([
                            ("service", .string(s.ref.description)), ("vip", .string(s.ref.vip.address.description)),
                            ("port", .uint(UInt64(s.ref.vip.port))), ("proto", .string(s.ref.proto.description)),
                            ("id", .uint(UInt64(s.id))), ("backend_count", .uint(UInt64(s.backendCount))),
                            ("over_limit", .bool(s.overLimit)),
                            (
                                "backends",
                                .array(
                                    s.backends.enumerated().map { i, b in
                                        b.map {
                                            .object([
                                                ("ordinal", .uint(UInt64(i))), ("ip", .string($0.address.description)),
                                                ("port", .uint(UInt64($0.port))), ("missing", .bool(false)),
                                            ])
                                        }
                                            ?? .object([
                                                ("ordinal", .uint(UInt64(i))), ("ip", .null), ("port", .null),
                                                ("missing", .bool(true)),
                                            ])
                                    })
                            ),
                        ])
                    }
                ).render())
            return
        }
        var t = TextTable(["SERVICE", "ID", "BACKENDS"])
        for s in services {
            let list = s.backends.enumerated().map { i, b in b?.description ?? "MISSING(ordinal \(i))" }
            let backends =
                s.overLimit
                ? "OVER LIMIT: \(s.backendCount) backends, at most \(CTCTL_MAX_BACKENDS) (packets are dropped; its flows are never judged)"
                : list.isEmpty ? "none (packets are dropped)" : list.joined(separator: ", ")
            t.add([s.ref.description, String(s.id), backends])
        }
        console.out.write(t.render())
        let missing = services.reduce(0) { $0 + $1.missingOrdinals.count }
        let over = services.filter(\.overLimit).count
        console.err.line(
            "\(services.count) service\(services.count == 1 ? "" : "s")"
                + (missing > 0 ? ", \(missing) backend\(missing == 1 ? "" : "s") MISSING from the backend map" : "")
                + (over > 0 ? ", \(over) OVER the limit of \(CTCTL_MAX_BACKENDS) backends" : ""))
    }
}
