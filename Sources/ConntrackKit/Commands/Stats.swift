import CLibBPF

/// One scanning thread's share of `conntrack stats`.
final class StatsShare {
    var stats = ConntrackStats()
    var oldest = UInt64.max
}

/// `conntrack stats`: what the conntrack map holds, how full it is, the services, the
/// datapath counters. One streamed pass over the map.
public struct ConntrackStats: Sendable {
    public var entries = 0
    public var maxEntries: UInt32 = 0
    public var byType: [Int] = [0, 0, 0]
    public var udp = 0, tcp = 0, otherProto = 0
    public var ipv4 = 0, ipv6 = 0
    public var oldestLastSeenAgoNs: UInt64?
    public var oldest: FlowKey?
    public var frontends = 0
    public var backends = 0
    public var missingBackends = 0
    /// The service epoch, where the layout has one.
    public var epoch: UInt32?
    public var serviceEpoch: Bool?
    public var counters: [DatapathCounter] = []
    public var layout = ""
    public var caveats: [String] = []

    public var occupancy: Double { maxEntries == 0 ? 0 : Double(entries) / Double(maxEntries) }
    public var nearFull: Bool { occupancy > Occupancy.warnFraction }

    /// `conntrack stats`.
    public static func gather(_ target: SessionOptions, threads: Int? = nil, console: Console? = nil) throws -> ConntrackStats {
        try Operations.session(target, readOnly: true, console: console).run(GatherOp(threads: threads ?? CPUs.available))
    }

    struct GatherOp: DataplaneOperation {
        let threads: Int
        func run<D: Dataplane>(_ dp: D) throws -> ConntrackStats { try ConntrackStats.gather(dp, threads: threads) }
    }

    /// One thread's share of the counts.
    mutating func count<E: EntryFacts>(_ e: E, oldest: inout UInt64) {
        byType[Int(e.type.rawValue)] += 1
        switch e.proto {
        case 17: udp += 1
        case 6: tcp += 1
        default: otherProto += 1
        }
        if e.familyRaw == 6 { ipv6 += 1 } else { ipv4 += 1 }
        let seen = e.lastSeenNs
        if seen < oldest {
            oldest = seen
            self.oldest = e.flowKey
        }
        entries += 1
    }

    static func gather<D: Dataplane>(_ dp: D, threads: Int = 1) throws -> ConntrackStats {
        let now = Timestamp.monotonicNow()
        var s = ConntrackStats()
        s.layout = D.layoutName
        s.caveats = dp.caveats
        s.maxEntries = UInt32(dp.conntrackCapacity)
        // each thread counts its own share; the shares add up
        let shares = (0..<max(1, threads)).map { _ in StatsShare() }
        let scan = EntryScan(dp, filter: ConntrackFilter())
        scan.threads = shares.count
        try scan.run(sinks: { i in { e, _ in shares[i].stats.count(e, oldest: &shares[i].oldest) } })
        var oldestSeen = UInt64.max
        for share in shares {
            let t = share.stats
            s.entries += t.entries
            for i in 0..<3 { s.byType[i] += t.byType[i] }
            s.udp += t.udp
            s.tcp += t.tcp
            s.otherProto += t.otherProto
            s.ipv4 += t.ipv4
            s.ipv6 += t.ipv6
            if share.oldest < oldestSeen {
                oldestSeen = share.oldest
                s.oldest = t.oldest
            }
        }
        if oldestSeen != .max { s.oldestLastSeenAgoNs = now > oldestSeen ? now - oldestSeen : 0 }
        let services = try dp.services()
        s.frontends = services.count
        s.backends = services.reduce(0) { $0 + $1.liveBackends.count }
        s.missingBackends = services.reduce(0) { $0 + $1.missingOrdinals.count }
        s.epoch = try dp.serviceEpoch()
        if let r = dp as? ReferenceDataplane { s.serviceEpoch = r.serviceEpochEnabled }
        s.counters = try dp.counters()
        return s
    }

    public func renderText() -> String {
        var out = "Conntrack: \(entries) entries of \(maxEntries) (\(DataplaneStatus.percent(entries, of: maxEntries)))\n"
        if nearFull { out += Occupancy.warning(entries: entries, max: maxEntries) + "\n" }
        out += "  by type:    normal \(byType[0]), nat-fwd \(byType[1]), nat-rev \(byType[2])\n"
        out += "  by proto:   udp \(udp), tcp \(tcp), other \(otherProto)\n"
        out += "  by family:  ipv4 \(ipv4), ipv6 \(ipv6)\n"
        if let ago = oldestLastSeenAgoNs, let oldest {
            out += "  oldest last-seen: \(DurationText.format(nanoseconds: ago)) ago (\(oldest))\n"
        }
        out += "Services: \(frontends) frontends, \(backends) backends"
        out += missingBackends > 0 ? ", \(missingBackends) MISSING from the backend map\n" : "\n"
        if let epoch, let serviceEpoch { out += "Service epoch: \(epoch) (re-check \(serviceEpoch ? "on" : "off"))\n" }
        for c in caveats { out += "Note: \(c)\n" }
        guard !counters.isEmpty else { return out }
        var t = TextTable(["COUNTER", "VALUE"])
        for c in counters { t.add([c.name, String(c.value)]) }
        return out + "Datapath counters:\n" + t.render(indent: "  ")
    }

    public func json() -> JSON {
        .object([
            ("entries", .uint(UInt64(entries))), ("max_entries", .uint(UInt64(maxEntries))),
            ("occupancy", .double((occupancy * 10000).rounded() / 10000)), ("near_full", .bool(nearFull)),
            (
                "by_type",
                .object([
                    ("normal", .uint(UInt64(byType[0]))), ("nat-fwd", .uint(UInt64(byType[1]))),
                    ("nat-rev", .uint(UInt64(byType[2]))),
                ])
            ),
            (
                "by_proto",
                .object([("udp", .uint(UInt64(udp))), ("tcp", .uint(UInt64(tcp))), ("other", .uint(UInt64(otherProto)))])
            ),
            ("by_family", .object([("ipv4", .uint(UInt64(ipv4))), ("ipv6", .uint(UInt64(ipv6)))])),
            ("oldest_last_seen_ago_ns", oldestLastSeenAgoNs.map { .uint($0) } ?? .null),
            ("frontends", .uint(UInt64(frontends))), ("backends", .uint(UInt64(backends))),
            ("missing_backends", .uint(UInt64(missingBackends))),
            ("service_epoch", epoch.map { .uint(UInt64($0)) } ?? .null),
            ("service_epoch_check", serviceEpoch.map { .bool($0) } ?? .null),
            ("layout", .string(layout)), ("caveats", .array(caveats.map { .string($0) })),
            ("counters", .object(counters.map { ($0.name, .uint($0.value)) })),
        ])
    }
}
