import CLibBPF

extension Operations {
    /// `service set`: creates or replaces a service of the reference dataplane.
    @discardableResult
    public static func setService(_ target: SessionOptions, _ ref: ServiceRef, backends: [Endpoint], console: Console) throws
        -> Bool
    {
        try Services.validate(ref, backends: backends)
        let s = try session(target, readOnly: false, console: console)
        let dp = try s.reference(for: "service set")
        let created = try s.withWriterLock { lock in try Services.set(dp, ref, backends: backends, lock: lock) }
        console.out.line(
            "\(created ? "created" : "replaced") service \(ref) with \(backends.count) backend\(backends.count == 1 ? "" : "s") (service epoch now \(try dp.epoch()))"
        )
        return created
    }

    /// `service delete`: removes the frontend, bumps the epoch, removes the backends, then
    /// the NAT conntrack entries of that service (both halves), as Calico does.
    public static func deleteService(_ target: SessionOptions, _ ref: ServiceRef, _ o: DeleteOptions, console: Console) throws
        -> ExitStatus
    {
        let s = try session(target, readOnly: false, console: console)
        let dp = try s.reference(for: "service delete")
        let audit = try o.auditLog.map { p throws(CtctlError) in try AuditLog(path: p, command: "service delete") }
        return try s.withWriterLock { lock in
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
            let counts = try deleteMatching(
                dp, lock: o.dryRun ? nil : lock, o, audit: audit, why: "service-deleted", console: console
            ) { e in
                e.isNAT && e.serviceProto == ref.proto.number && e.servicePort == ref.vip.port
                    && e.serviceAddress == ref.vip.address
            }
            console.err.line(o.dryRun ? "service \(ref) would be deleted" : "deleted service \(ref)")
            _ = summarize(counts, o, console: console, what: "removed")
            return .success
        }
    }

    /// `nat list`: every service frontend with its backends, whatever the layout.
    public static func natList(_ target: SessionOptions, json: Bool, console: Console) throws {
        let services = try session(target, readOnly: true, console: console).dataplane.services()
        if json {
            console.out.line(JSON.array(services.map(serviceJSON)).render())
            return
        }
        var t = TextTable(["SERVICE", "ID", "BACKENDS"])
        for s in services {
            let list = s.backends.enumerated().map { i, b in b?.description ?? "MISSING(ordinal \(i))" }
            let backends = s.note ?? (list.isEmpty ? "none" : list.joined(separator: ", "))
            t.add([s.ref.description + (s.scope.map { " (\($0))" } ?? ""), String(s.id), backends])
        }
        console.out.write(t.render())
        let missing = services.reduce(0) { $0 + $1.missingOrdinals.count }
        let over = services.filter(\.overLimit).count
        let unjudged = services.filter { $0.state == .unjudged && !$0.overLimit }.count
        console.err.line(
            "\(services.count) service\(services.count == 1 ? "" : "s")"
                + (missing > 0 ? ", \(missing) backend\(missing == 1 ? "" : "s") MISSING from the backend map" : "")
                + (over > 0 ? ", \(over) OVER the limit of \(CTCTL_MAX_BACKENDS) backends" : "")
                + (unjudged > 0 ? ", \(unjudged) whose flows are never judged (see BACKENDS)" : ""))
    }

    static func serviceJSON(_ s: ServiceSummary) -> JSON {
        .object([
            ("service", .string(s.ref.description)), ("vip", .string(s.ref.vip.address.description)),
            ("port", .uint(UInt64(s.ref.vip.port))), ("proto", .string(s.ref.proto.description)),
            ("id", .uint(UInt64(s.id))), ("backend_count", .uint(UInt64(s.backendCount))),
            ("over_limit", .bool(s.overLimit)), ("state", .string(s.state.rawValue)),
            ("scope", s.scope.map { .string($0) } ?? .null),
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
                                ("ordinal", .uint(UInt64(i))), ("ip", .null), ("port", .null), ("missing", .bool(true)),
                            ])
                    })
            ),
        ])
    }
}
