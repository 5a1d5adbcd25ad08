import CLibBPF
import Glibc

/// `ctctl dataplane status`: maps, occupancy, attachments, settings and counters.
public struct DataplaneStatus: Sendable {
    public struct MapRow: Sendable {
        public let name: String
        public let info: MapInfo
        public let entries: Int?

        public init(name: String, info: MapInfo, entries: Int?) {
            self.name = name
            self.info = info
            self.entries = entries
        }

        /// A map's row, its entries counted by one batch read.
        public static func counted(_ map: BPFMap) throws(CtctlError) -> MapRow {
            MapRow(name: map.pin, info: map.info, entries: try countEntries(map))
        }
    }

    public let layout: String
    public let pinDir: String
    /// The map ABI, for the reference layout.
    public let abiVersion: UInt32?
    public let loadedAt: UInt64?
    public let epoch: UInt32?
    public let serviceEpoch: Bool?
    public let timeouts: Timeouts?
    public let maps: [MapRow]
    /// Where the reference dataplane is attached (nil: the layout's control plane attaches).
    public let attachments: [Attachment]?
    public let counters: [DatapathCounter]
    /// What could not be checked (Dataplane.caveats).
    public let caveats: [String]
    /// What was opened, in a line (Dataplane.summary), for layouts other than ctctl's own.
    public let summary: String?

    public init(
        layout: String, pinDir: String, abiVersion: UInt32? = nil, loadedAt: UInt64? = nil, epoch: UInt32? = nil,
        serviceEpoch: Bool? = nil, timeouts: Timeouts? = nil, maps: [MapRow], attachments: [Attachment]? = nil,
        counters: [DatapathCounter] = [], caveats: [String] = [], summary: String? = nil
    ) {
        self.summary = summary
        self.layout = layout
        self.pinDir = pinDir
        self.abiVersion = abiVersion
        self.loadedAt = loadedAt
        self.epoch = epoch
        self.serviceEpoch = serviceEpoch
        self.timeouts = timeouts
        self.maps = maps
        self.attachments = attachments
        self.counters = counters
        self.caveats = caveats
    }

    public static func gather<D: Dataplane>(_ dp: D) throws -> DataplaneStatus { try dp.status() }

    static func countEntries(_ map: BPFMap) throws(CtctlError) -> Int {
        var n = 0
        let reader = RawBatchReader(keySize: map.info.keySize, valueSize: map.info.valueSize, capacity: 1024)
        do {
            try reader.read(map) { count in
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
        var s: String
        if let abiVersion, let loadedAt {
            s = "Dataplane at \(pinDir) (map ABI \(abiVersion), loaded \(Timestamp.utc(loadedAt)))\n"
        } else {
            s = "Dataplane at \(pinDir): \(summary ?? "\(layout) layout")\n"
        }
        for c in caveats { s += "Note: \(c)\n" }
        if let epoch, let serviceEpoch {
            s +=
                "Service epoch: \(epoch) (epoch re-check \(serviceEpoch ? "on" : "off: the incident's bug is reproduced on purpose"))\n"
        }
        if let timeouts {
            s +=
                "Idle timeouts: "
                + timeouts.byName.map { "\($0.0) \(DurationText.format(nanoseconds: $0.1))" }.joined(separator: ", ") + "\n"
        }
        s += "\n"
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
        if let attachments, attachments.isEmpty {
            s += "Attached: nowhere (`ctctl dataplane attach IFNAME [--netns NAME]`)\n"
        } else if let attachments {
            var a = TextTable(["NETNS", "INTERFACE", "IFINDEX", "PROG-ID", "STATE"])
            for x in attachments {
                a.add([x.netns.isEmpty ? "-" : x.netns, x.ifname, String(x.ifindex), String(x.progID), x.state.rawValue])
            }
            s += "Attached:\n" + a.render(indent: "  ")
        }
        guard !counters.isEmpty else { return s }
        s += "\nCounters:\n"
        var c = TextTable(["COUNTER", "VALUE"])
        for x in counters { c.add([x.name, String(x.value)]) }
        s += c.render(indent: "  ")
        return s
    }

    public func json() -> JSON {
        .object([
            ("layout", .string(layout)),
            ("pin_dir", .string(pinDir)),
            ("abi_version", abiVersion.map { .uint(UInt64($0)) } ?? .null),
            ("loaded_at", loadedAt.map { .string(Timestamp.rfc3339($0)) } ?? .null),
            ("service_epoch", epoch.map { .uint(UInt64($0)) } ?? .null),
            ("service_epoch_check", serviceEpoch.map { .bool($0) } ?? .null),
            ("timeouts_ns", timeouts.map { t in .object(t.byName.map { ($0.0, .uint($0.1)) }) } ?? .null),
            ("summary", summary.map { .string($0) } ?? .null),
            ("caveats", .array(caveats.map { .string($0) })),
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
                attachments.map { list in
                    .array(
                        list.map { a in
                            .object([
                                ("netns", a.netns.isEmpty ? .null : .string(a.netns)), ("interface", .string(a.ifname)),
                                ("ifindex", .uint(UInt64(a.ifindex))), ("prog_id", .uint(UInt64(a.progID))),
                                ("attached_at", .string(Timestamp.rfc3339(a.attachedAt))), ("state", .string(a.state.rawValue)),
                            ])
                        })
                } ?? .null
            ),
            ("counters", .object(counters.map { ($0.name, .uint($0.value)) })),
        ])
    }
}
