import CLibBPF

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
    public var epoch: UInt32 = 0
    public var serviceEpoch = true
    public var counters: [DatapathCounter] = []

    public var occupancy: Double { maxEntries == 0 ? 0 : Double(entries) / Double(maxEntries) }
    public var nearFull: Bool { occupancy > Occupancy.warnFraction }

    public static func gather(_ pins: PinDirectory) throws -> ConntrackStats {
        let dp = try Dataplane(pins, readOnly: true)
        let now = Timestamp.monotonicNow()
        var s = ConntrackStats()
        s.maxEntries = dp.ct.info.maxEntries
        var oldestSeen = UInt64.max
        try Conntrack.scan(dp) { keys, values, n in
            for i in 0..<n {
                let t = Int(values[i].type)
                if t < 3 { s.byType[t] += 1 }
                switch keys[i].proto {
                case 17: s.udp += 1
                case 6: s.tcp += 1
                default: s.otherProto += 1
                }
                if keys[i].family == 6 { s.ipv6 += 1 } else { s.ipv4 += 1 }
                if values[i].last_seen_ns < oldestSeen {
                    oldestSeen = values[i].last_seen_ns
                    s.oldest = FlowKey(keys[i])
                }
            }
            s.entries += n
            return true
        }
        if oldestSeen != .max { s.oldestLastSeenAgoNs = now > oldestSeen ? now - oldestSeen : 0 }
        let services = try Services.list(dp)
        s.frontends = services.count
        s.backends = services.reduce(0) { $0 + $1.liveBackends.count }
        s.missingBackends = services.reduce(0) { $0 + $1.missingOrdinals.count }
        s.epoch = try dp.epoch()
        s.serviceEpoch = dp.serviceEpochEnabled
        s.counters = try dp.counterTotals()
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
        out += "Service epoch: \(epoch) (re-check \(serviceEpoch ? "on" : "off"))\n"
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
            ("service_epoch", .uint(UInt64(epoch))), ("service_epoch_check", .bool(serviceEpoch)),
            ("counters", .object(counters.map { ($0.name, .uint($0.value)) })),
        ])
    }
}
