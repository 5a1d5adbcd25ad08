import CLibBPF
import ConntrackKit
import Foundation
import Glibc
import Testing

/// Synthetic entries, built the way the datapath writes them.
struct Synthetic {
    var key: ctctl_ct_key
    var value = ctctl_ct_value()

    static func key(_ p: IPProto, _ s: String, _ d: String) -> ctctl_ct_key {
        FlowKey(proto: p, src: Endpoint(s)!, dst: Endpoint(d)!).raw
    }

    static func normal(_ p: IPProto, _ s: String, _ d: String, created: UInt64 = 100, lastSeen: UInt64 = 100, flags: UInt32 = 0)
        -> Synthetic
    {
        var e = Synthetic(key: key(p, s, d))
        e.value.created_ns = created
        e.value.last_seen_ns = lastSeen
        e.value.flags = flags
        e.value.packets = 3
        e.value.bytes = 300
        return e
    }

    /// Both halves of a NAT pair: client -> vip translated to backend.
    static func pair(_ p: IPProto, client: String, vip: String, backend: String, created: UInt64 = 100, lastSeen: UInt64 = 100)
        -> (Synthetic, Synthetic)
    {
        let c = Endpoint(client)!
        let v = Endpoint(vip)!
        let b = Endpoint(backend)!
        let fk = key(p, client, vip)
        let rk = key(p, backend, client)
        func value(_ type: EntryType, nat: Endpoint, partner: ctctl_ct_key) -> ctctl_ct_value {
            var x = ctctl_ct_value()
            x.created_ns = created
            x.last_seen_ns = lastSeen
            x.type = type.rawValue
            x.svc_proto = p.number
            x.svc_port = v.port.bigEndian
            x.nat_port = nat.port.bigEndian
            withUnsafeMutableBytes(of: &x.nat_addr) { nat.address.store(to: $0.baseAddress!) }
            withUnsafeMutableBytes(of: &x.svc_addr) { v.address.store(to: $0.baseAddress!) }
            x.partner = partner
            return x
        }
        _ = c
        return (
            Synthetic(key: fk, value: value(.natForward, nat: b, partner: rk)),
            Synthetic(key: rk, value: value(.natReverse, nat: v, partner: fk))
        )
    }

    func with<T>(_ body: (ReferenceEntry) -> T) -> T {
        var k = key
        var v = value
        return withUnsafePointer(to: &k) { kp in withUnsafePointer(to: &v) { vp in body(ReferenceEntry(kp, vp)) } }
    }
}

@Suite("filters, pair matching and the entry model (no kernel)")
struct FilterTests {
    static let pair = Synthetic.pair(.udp, client: "198.18.1.2:40000", vip: "198.19.0.10:161", backend: "198.18.2.2:1161")
    let fwd = FilterTests.pair.0
    let rev = FilterTests.pair.1
    let normal = Synthetic.normal(.tcp, "198.18.1.2:40003", "198.18.9.9:80")
    let v6 = Synthetic.normal(.udp, "[2001:db8:1::2]:40001", "[2001:db8:9::9]:53")

    func f(_ edit: (inout ConntrackFilter) -> Void) -> ConntrackFilter {
        var x = ConntrackFilter()
        edit(&x)
        return x
    }

    @Test("a reverse half is seen in its flow's original direction")
    func originalDirection() {
        rev.with { e in
            #expect(e.originalSource.description == "198.18.1.2" && e.originalSourcePort == 40000)
            #expect(e.originalDestination.description == "198.19.0.10" && e.originalDestinationPort == 161)
            #expect(e.backendAddress.description == "198.18.2.2" && e.backendPort == 1161)
        }
        fwd.with { e in #expect(e.backendAddress.description == "198.18.2.2" && e.natPort == 1161) }
    }

    @Test("each filter field narrows, on all three kinds of entry")
    func filterFields() {
        let cases: [(ConntrackFilter, [Bool])] = [  // fwd, rev, normal, v6
            (ConntrackFilter(), [true, true, true, true]),
            (f { $0.proto = .udp }, [true, true, false, true]),
            (f { $0.source = IPNetwork("198.18.1.0/24") }, [true, true, true, false]),
            (f { $0.destination = IPNetwork("198.19.0.10") }, [true, true, false, false]),
            (f { $0.sourcePort = 40000 }, [true, true, false, false]),
            (f { $0.destinationPort = 161 }, [true, true, false, false]),
            (f { $0.destinationPort = 1161 }, [false, false, false, false]),
            (f { $0.type = .natReverse }, [false, true, false, false]),
            (f { $0.service = ServiceRef("198.19.0.10:161/udp") }, [true, true, false, false]),
            (f { $0.service = ServiceRef("198.19.0.10:161/tcp") }, [false, false, false, false]),
            (f { $0.family = .v6 }, [false, false, false, true]),
            (
                f {
                    $0.destination = IPNetwork("2001:db8::/32")
                    $0.destinationPort = 53
                }, [false, false, false, true]
            ),
        ]
        for (filter, expected) in cases {
            let got = [fwd, rev, normal, v6].map { s in s.with { filter.matches($0) } }
            #expect(got == expected, "\(filter)")
        }
    }

    @Test("remove's pair matches either direction, ports by side")
    func pairMatch() throws {
        let m = try PairMatch(proto: .udp, dst: IPAddress("198.19.0.10")!, src: IPAddress("198.18.1.2")!)
        #expect(fwd.with { m.matches($0) })
        #expect(!rev.with { m.matches($0) }, "the reverse half is keyed backend -> client: it goes as the partner")
        let reversed = try PairMatch(
            proto: .udp, dst: IPAddress("198.18.1.2")!, src: IPAddress("198.19.0.10")!, dport: 40000)
        #expect(fwd.with { reversed.matches($0) })
        let narrowed = try PairMatch(
            proto: .udp, dst: IPAddress("198.19.0.10")!, src: IPAddress("198.18.1.2")!, dport: 161, sport: 40001)
        #expect(!fwd.with { narrowed.matches($0) })
        let tcp = try PairMatch(proto: .tcp, dst: IPAddress("198.19.0.10")!, src: IPAddress("198.18.1.2")!)
        #expect(!fwd.with { tcp.matches($0) })
        #expect(throws: CtctlError.self) {
            try PairMatch(proto: .udp, dst: IPAddress("198.19.0.10")!, src: IPAddress("2001:db8::1")!)
        }
    }

    @Test("the decoded entry carries every field")
    func decoded() {
        let e = fwd.with { $0.entry }
        #expect(e.type == .natForward)
        #expect(e.nat == Endpoint("198.18.2.2:1161"))
        #expect(e.service == ServiceRef("198.19.0.10:161/udp"))
        #expect(e.partner == FlowKey(proto: .udp, src: Endpoint("198.18.2.2:1161")!, dst: Endpoint("198.18.1.2:40000")!))
        #expect(
            Synthetic.normal(.tcp, "198.18.1.2:1", "198.18.1.3:2", flags: CTCTL_CT_F_FIN | CTCTL_CT_F_SEEN_REPLY).with {
                $0.entry.flagNames
            } == ["fin", "seen-reply"])
    }
}

@Suite("output formats (no kernel)")
struct OutputFormatTests {
    func render(_ mode: EntryPrinter.Mode, _ entries: [Synthetic], reasons: [StaleReason?]? = nil) -> String {
        let out = CapturedStream()
        let p = EntryPrinter(mode, to: out, now: 5_000_000_000, showReason: reasons != nil)
        p.begin()
        for (i, s) in entries.enumerated() { s.with { p.add($0, reason: reasons?[i] ?? nil) } }
        p.end()
        return out.text
    }

    static var sample: [Synthetic] {
        let (f, r) = Synthetic.pair(.udp, client: "198.18.1.2:40000", vip: "198.19.0.10:161", backend: "198.18.2.2:1161")
        let (f6, r6) = Synthetic.pair(
            .tcp, client: "[2001:db8:1::2]:40000", vip: "[2001:db8:ff::10]:443", backend: "[2001:db8:2::2]:8443")
        return [
            f, r, f6, r6, Synthetic.normal(.udp, "198.18.1.2:40002", "198.18.9.9:53", flags: CTCTL_CT_F_SEEN_REPLY),
            Synthetic.normal(IPProto(132), "198.18.1.2:9", "198.18.9.9:9"),
        ]
    }

    @Test("JSON: one array, parses, and validates against the published schema")
    func json() throws {
        let text = render(.json, OutputFormatTests.sample, reasons: [.orphanNAT, .orphanNAT, nil, nil, .missedNAT, .expired])
        let arr = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [[String: Any]])
        #expect(arr.count == 6)
        #expect(arr[0]["reason"] as? String == "orphan-nat")
        #expect(arr[2]["reason"] is NSNull)
        #expect(arr[2]["src"] as? String == "2001:db8:1::2" && arr[2]["backend"] as? String == "[2001:db8:2::2]:8443")
        #expect(arr[5]["proto"] as? String == "132")
        #expect(arr[1]["last_seen_ago_ns"] as? Int == 4_999_999_900)
        try validateJSON(text)
        #expect(render(.json, []) == "[]\n")
        try validateJSON("[]")
    }

    @Test("the schema rejects what the contract forbids")
    func schemaBites() throws {
        var bad = render(.json, [OutputFormatTests.sample[0]])
        bad = bad.replacingOccurrences(of: "\"sport\":40000", with: "\"sport\":\"40000\"")
        #expect(try !validates(bad))
    }

    @Test("table: a header and one aligned line an entry; wide adds every field")
    func table() {
        let t = render(.table(wide: false), OutputFormatTests.sample)
        let lines = t.split(separator: "\n")
        #expect(lines.count == 7)
        #expect(lines[0].hasPrefix("PROTO  SOURCE"))
        let col = lines[0].range(of: "TYPE")!.lowerBound.utf16Offset(in: lines[0])
        #expect(lines.dropFirst().allSatisfy { $0.count > col && $0[$0.index($0.startIndex, offsetBy: col)] != " " })
        let w = render(.table(wide: true), OutputFormatTests.sample, reasons: Array(repeating: .halfPair, count: 6))
        #expect(
            w.contains("REASON") && w.contains("half-pair") && w.contains("seen-reply") && w.contains("[2001:db8:ff::10]:443/tcp")
        )
        #expect(render(.count, OutputFormatTests.sample) == "6\n")
    }

    @Test("IPv6 text matches inet_ntop, compressed forms and IPv4-mapped included")
    func ipv6Text() {
        var specials: [[UInt8]] = [
            Array(repeating: 0, count: 16), Array(repeating: 0, count: 15) + [1],
            Array(repeating: 0, count: 10) + [0xff, 0xff, 198, 18, 0, 1],
            Array(repeating: 0, count: 12) + [198, 18, 0, 1], [0x20, 0x01, 0x0d, 0xb8] + Array(repeating: 0, count: 12),
            [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1], [0x20, 0x01, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1],
            Array(repeating: 0, count: 10) + [0xff, 0xff, 0, 0, 0, 0], Array(repeating: 0, count: 12) + [0, 0, 0, 2],
            [0, 1] + Array(repeating: 0, count: 14), Array(repeating: 0xff, count: 16),
        ]
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<2000 {
            // random groups, with zero runs likely
            specials.append(
                (0..<8).flatMap { _ -> [UInt8] in
                    Bool.random(using: &rng) ? [0, 0] : [UInt8.random(in: 0...255), UInt8.random(in: 0...255)]
                })
        }
        for b in specials {
            var hi: UInt64 = 0
            var lo: UInt64 = 0
            for i in 0..<8 { hi = hi << 8 | UInt64(b[i]) }
            for i in 8..<16 { lo = lo << 8 | UInt64(b[i]) }
            var buf = [CChar](repeating: 0, count: 64)
            _ = b.withUnsafeBytes { inet_ntop(AF_INET6, $0.baseAddress, &buf, 64) }
            let expected = String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            #expect(IPAddress(family: .v6, hi: hi, lo: lo).description == expected)
        }
    }
}

func validates(_ json: String) throws -> Bool {
    let file = FileManager.default.temporaryDirectory.appendingPathComponent(
        "ctctl-unit-\(getpid())-\(UInt32.random(in: 0..<UInt32.max)).json")
    try json.write(to: file, atomically: true, encoding: .utf8)
    defer { try? FileManager.default.removeItem(at: file) }
    let schema = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
        .appendingPathComponent("docs/schema/conntrack-entry.schema.json").path
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = [
        "python3", "-c",
        "import json,sys,jsonschema; jsonschema.validate(json.load(open(sys.argv[1])), json.load(open(sys.argv[2])))", file.path,
        schema,
    ]
    p.standardError = FileHandle.nullDevice
    try p.run()
    p.waitUntilExit()
    return p.terminationStatus == 0
}

func validateJSON(_ json: String) throws {
    #expect(try validates(json), "validates against docs/schema/conntrack-entry.schema.json")
}
