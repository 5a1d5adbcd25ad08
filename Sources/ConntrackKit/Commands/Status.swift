import CLibBPF
import Glibc

/// `ctctl dataplane status`: maps, occupancy, attachments, settings and counters.
public struct DataplaneStatus: Sendable {
    public struct MapRow: Sendable {
        public let name: String
        public let info: MapInfo
        public let entries: Int?
    }

    public let pinDir: String
    public let loadedAt: UInt64
    public let epoch: UInt32
    public let serviceEpoch: Bool
    public let timeouts: Timeouts
    public let maps: [MapRow]
    public let attachments: [Attachment]
    public let counters: [DatapathCounter]

    public static func gather(_ dp: Dataplane) throws(CtctlError) -> DataplaneStatus {
        let rows: [MapRow] = try [
            MapRow(name: CTCTL_PIN_CT, info: dp.ct.info, entries: countEntries(dp.ct, ctctl_ct_key.self, ctctl_ct_value.self)),
            MapRow(
                name: CTCTL_PIN_NAT_FE, info: dp.natFrontend.info,
                entries: countEntries(dp.natFrontend, ctctl_fe_key.self, ctctl_fe_value.self)),
            MapRow(
                name: CTCTL_PIN_NAT_BE, info: dp.natBackend.info,
                entries: countEntries(dp.natBackend, ctctl_be_key.self, ctctl_be_value.self)),
        ]
        return DataplaneStatus(
            pinDir: dp.pinDir.path, loadedAt: try dp.loadedAt(), epoch: try dp.epoch(),
            serviceEpoch: dp.serviceEpochEnabled, timeouts: dp.timeouts, maps: rows,
            attachments: try Attachments.list(dp), counters: try dp.counterTotals())
    }

    static func countEntries<K, V>(_ map: BPFMap, _: K.Type, _: V.Type) throws(CtctlError) -> Int {
        var n = 0
        do {
            try BatchReader<K, V>().read(map) { count in
                n += count
                return true
            }
        } catch let e as CtctlError { throw e } catch { throw CtctlError(.software, "\(error)") }
        return n
    }

    static func percent(_ n: Int, of max: UInt32) -> String {
        guard max > 0 else { return "-" }
        let p = Double(n) * 100 / Double(max)
        return p < 0.1 && n > 0 ? "<0.1%" : String(format1: p) + "%"
    }

    public func renderText() -> String {
        var s = "Dataplane at \(pinDir) (map ABI \(CTCTL_ABI_VERSION), loaded \(Timestamp.utc(loadedAt)))\n"
        s +=
            "Service epoch: \(epoch) (epoch re-check \(serviceEpoch ? "on" : "off: the incident's bug is reproduced on purpose"))\n"
        s +=
            "Idle timeouts: "
            + timeouts.byName.map { "\($0.0) \(DurationText.format(nanoseconds: $0.1))" }.joined(separator: ", ") + "\n\n"
        var t = TextTable(["MAP", "TYPE", "KEY", "VALUE", "ENTRIES", "MAX", "USED"])
        for m in maps {
            t.add([
                m.name, m.info.typeName, String(m.info.keySize), String(m.info.valueSize),
                m.entries.map(String.init) ?? "-", String(m.info.maxEntries),
                m.entries.map { DataplaneStatus.percent($0, of: m.info.maxEntries) } ?? "-",
            ])
        }
        s += t.render()
        if let ct = maps.first, let n = ct.entries, Double(n) > Double(ct.info.maxEntries) * Occupancy.warnFraction {
            s += Occupancy.warning(entries: n, max: ct.info.maxEntries) + "\n"
        }
        s += "\n"
        if attachments.isEmpty {
            s += "Attached: nowhere (`ctctl dataplane attach IFNAME [--netns NAME]`)\n"
        } else {
            var a = TextTable(["NETNS", "INTERFACE", "IFINDEX", "PROG-ID", "STATE"])
            for x in attachments {
                a.add([x.netns.isEmpty ? "-" : x.netns, x.ifname, String(x.ifindex), String(x.progID), x.state.rawValue])
            }
            s += "Attached:\n" + a.render(indent: "  ")
        }
        s += "\nCounters:\n"
        var c = TextTable(["COUNTER", "VALUE"])
        for x in counters { c.add([x.name, String(x.value)]) }
        s += c.render(indent: "  ")
        return s
    }

    public func json() -> JSON {
        .object([
            ("pin_dir", .string(pinDir)),
            ("abi_version", .uint(UInt64(CTCTL_ABI_VERSION))),
            ("loaded_at", .string(Timestamp.rfc3339(loadedAt))),
            ("service_epoch", .uint(UInt64(epoch))),
            ("service_epoch_check", .bool(serviceEpoch)),
            ("timeouts_ns", .object(timeouts.byName.map { ($0.0, .uint($0.1)) })),
            (
                "maps",
                .array(
                    maps.map { m in
                        .object([
                            ("name", .string(m.name)), ("type", .string(m.info.typeName)),
                            ("key_size", .uint(UInt64(m.info.keySize))), ("value_size", .uint(UInt64(m.info.valueSize))),
                            ("max_entries", .uint(UInt64(m.info.maxEntries))),
                            ("entries", m.entries.map { .uint(UInt64($0)) } ?? .null),
                        ])
                    })
            ),
            (
                "attachments",
                .array(
                    attachments.map { a in
                        .object([
                            ("netns", a.netns.isEmpty ? .null : .string(a.netns)), ("interface", .string(a.ifname)),
                            ("ifindex", .uint(UInt64(a.ifindex))), ("prog_id", .uint(UInt64(a.progID))),
                            ("attached_at", .string(Timestamp.rfc3339(a.attachedAt))), ("state", .string(a.state.rawValue)),
                        ])
                    })
            ),
            ("counters", .object(counters.map { ($0.name, .uint($0.value)) })),
        ])
    }
}
