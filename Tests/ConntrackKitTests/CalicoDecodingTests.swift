import Foundation
import Testing

@testable import ConntrackKit

/// Golden fixtures: conntrack entries Calico's own datapath wrote (captured with
/// scripts/capture-calico-fixtures.sh from ../shared/calico/calico-lab), each as the lab
/// decodes it from Calico's structs and as raw bytes. ctctl decodes the bytes and must say
/// what the lab says, for v3.29 and current Calico, IPv4 and IPv6.
@Suite("decoding Calico's entries (golden fixtures, no kernel)")
struct CalicoDecodingTests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")

    struct Captured {
        let decoded: String
        let map: String
        let key: [UInt8]
        let value: [UInt8]
    }

    static func load(_ version: String) throws -> [Captured] {
        let text = try String(contentsOf: fixtures.appendingPathComponent("calico-\(version).txt"), encoding: .utf8)
        let lines = text.split(separator: "\n").filter { !$0.hasPrefix("#") }.map(String.init)
        var out: [Captured] = []
        var i = 0
        while i + 1 < lines.count {
            let hex = lines[i + 1].split(separator: " ").map(String.init)
            out.append(Captured(decoded: lines[i], map: hex[0], key: bytes(hex[1]), value: bytes(hex[2])))
            i += 2
        }
        return out
    }

    static func bytes(_ hex: String) -> [UInt8] {
        var out: [UInt8] = []
        var it = hex.makeIterator()
        while let a = it.next(), let b = it.next() { out.append(UInt8(String([a, b]), radix: 16)!) }
        return out
    }

    /// `name=value` of the lab's line (the first match).
    static func field(_ line: String, _ name: String) -> String? {
        guard let r = line.range(of: " \(name)=") else { return nil }
        let rest = line[r.upperBound...]
        if rest.hasPrefix("{") { return String(rest[...rest.firstIndex(of: "}")!]) }
        return String(rest.prefix { $0 != " " })
    }

    /// "{pk=1,by=58,seq=0,if=1,approved,opener}" -> numbers and bit names.
    static func leg(_ text: String) -> (pk: UInt64, by: UInt64, seq: UInt64, ifindex: UInt64, bits: [String]) {
        var pk: UInt64 = 0
        var by: UInt64 = 0
        var seq: UInt64 = 0
        var ifindex: UInt64 = 0
        var bits: [String] = []
        for part in text.dropFirst().dropLast().split(separator: ",") {
            let kv = part.split(separator: "=")
            if kv.count == 2 {
                let v = UInt64(kv[1])!
                switch kv[0] {
                case "pk": pk = v
                case "by": by = v
                case "seq": seq = v
                default: ifindex = v
                }
            } else {
                bits.append(String(part))
            }
        }
        return (pk, by, seq, ifindex, bits)
    }

    func check(_ version: String, generation: CalicoGeneration) throws {
        let captured = try CalicoDecodingTests.load(version)
        #expect(captured.count >= 16, "both families, NORMAL, NAT_FWD and NAT_REV entries")
        #expect(Set(captured.map { CalicoDecodingTests.field($0.decoded, "type")! }) == ["NORMAL", "NAT_FWD", "NAT_REV"])
        for c in captured {
            let v6 = c.map.hasPrefix("cali_v6")
            let format = CalicoFormat(v6: v6)
            #expect(c.key.count == format.keySize && c.value.count == format.valueSize)
            try c.key.withUnsafeBytes { k in
                try c.value.withUnsafeBytes { v in
                    try compare(CalicoEntry(k.baseAddress!, v.baseAddress!, format, generation), c.decoded)
                }
            }
        }
    }

    func compare(_ e: CalicoEntry, _ line: String) throws {
        let words = line.split(separator: " ").map(String.init)
        let proto = words[1]
        #expect("\(IPProto(e.proto))" == proto, "\(line)")
        let key = e.storedKey
        #expect(
            words[2] == "\(Endpoint(address: key.src, port: key.sport))"
                && words[4] == "\(Endpoint(address: key.dst, port: key.dport))", "\(line)")
        let type = CalicoDecodingTests.field(line, "type")!
        #expect(["NORMAL": EntryType.normal, "NAT_FWD": .natForward, "NAT_REV": .natReverse][type] == e.type, "\(line)")
        let flags = CalicoDecodingTests.field(line, "flags")!
        let hex = flags.dropFirst(2).prefix { $0.isHexDigit }
        #expect(e.flags == UInt32(hex, radix: 16)!, "\(line)")
        #expect(e.lastSeenNs == UInt64(CalicoDecodingTests.field(line, "last_seen")!)!, "\(line)")
        if let created = CalicoDecodingTests.field(line, "created") {
            #expect(e.created == UInt64(created)!, "\(line)")
        } else {
            #expect(e.created == nil)
            #expect(e.word0 == UInt64(CalicoDecodingTests.field(line, "rst_seen")!)!, "\(line)")
        }
        switch type {
        case "NAT_FWD":
            let rev = line[line.range(of: "rev={")!.upperBound...].prefix { $0 != "}" }.split(separator: " ").map(String.init)
            let partner = try #require(e.storedPartner)
            #expect(rev[1] == "\(Endpoint(address: partner.src, port: partner.sport))", "\(line)")
            #expect(rev[3] == "\(Endpoint(address: partner.dst, port: partner.dport))", "\(line)")
            #expect(e.natSport == UInt16(CalicoDecodingTests.field(line, "nat_sport")!)!)
            #expect(e.packetCount == nil && e.byteCount == nil, "a NAT_FWD counts nothing: its NAT_REV does")
            // the client is the endpoint the key shares with its NAT_REV key; the VIP the other
            #expect(e.forwardSides != nil, "\(line)")
            #expect(e.serviceAddress == (e.clientIsA ? key.dst : key.src))
            #expect(e.natAddress == e.backendAddress && e.backendAddress != e.serviceAddress)
        default:
            for (name, offset) in [("a2b", CalicoFormat.legAB), ("b2a", CalicoFormat.legBA)] {
                let want = CalicoDecodingTests.leg(CalicoDecodingTests.field(line, name)!)
                let got = e.leg(offset)
                #expect(UInt64(got.packets) == want.pk && got.bytes == want.by, "\(name): \(line)")
                #expect(UInt64(got.seqno) == want.seq && UInt64(got.ifindex) == want.ifindex, "\(name): \(line)")
                let names = Calico.legBitNames.filter { got.bits & $0.0 != 0 }.map(\.1)
                #expect(names == want.bits.map { $0 == "syn" ? "syn" : $0 }, "\(name): \(line)")
            }
            if e.generation.countsTraffic {
                let a = CalicoDecodingTests.leg(CalicoDecodingTests.field(line, "a2b")!)
                let b = CalicoDecodingTests.leg(CalicoDecodingTests.field(line, "b2a")!)
                #expect(e.packetCount == a.pk + b.pk && e.byteCount == a.by + b.by)
            } else {
                #expect(e.packetCount == nil, "v3.29 does not count packets: not shown")
            }
            // the opener is the client: A, or B with the BA flag
            let opener = CalicoDecodingTests.leg(CalicoDecodingTests.field(line, e.isBA ? "b2a" : "a2b")!)
            #expect(opener.bits.contains("opener"), "\(line)")
        }
        if type == "NAT_REV" {
            #expect("\(Endpoint(address: e.origIP, port: e.origPort))" == CalicoDecodingTests.field(line, "orig_dst")!, "\(line)")
            #expect(
                "\(Endpoint(address: e.originalSource, port: e.originalSourcePort))" == CalicoDecodingTests.field(
                    line, "orig_src")!,
                "\(line)")
            #expect(e.serviceAddress == e.origIP && e.natAddress == e.origIP)
            #expect("\(e.tunIP)" == CalicoDecodingTests.field(line, "tun_ip")!.trimmingCharacters(in: ["[", "]"]))
        }
    }

    @Test("current Calico (ct4, v3.31+): every entry decodes as Calico's own structs say")
    func head() throws { try check("head", generation: .ct4) }

    @Test("Calico v3.29 (ct3): every entry decodes as Calico's own structs say")
    func v329() throws { try check("v3.29", generation: .ct3v329) }

    @Test("a NAT_FWD and its NAT_REV name each other: the forward key a NAT_REV implies is the NAT_FWD's key")
    func partnersPointAtEachOther() throws {
        for (version, gen) in [("head", CalicoGeneration.ct4), ("v3.29", .ct3v329)] {
            let entries = try CalicoDecodingTests.load(version)
            var forward: [String: StoredTuple] = [:]  // key -> its NAT_REV key
            var reverse: [String: StoredTuple] = [:]  // key -> the NAT_FWD key it implies
            for c in entries {
                let f = CalicoFormat(v6: c.map.hasPrefix("cali_v6"))
                c.key.withUnsafeBytes { k in
                    c.value.withUnsafeBytes { v in
                        let e = CalicoEntry(k.baseAddress!, v.baseAddress!, f, gen)
                        if e.type == .natForward { forward["\(e.storedKey)"] = e.storedPartner }
                        if e.type == .natReverse { reverse["\(e.storedKey)"] = e.storedPartner }
                    }
                }
            }
            #expect(!forward.isEmpty && forward.count == reverse.count, "\(version): every pair whole")
            for (fk, rk) in forward {
                #expect(reverse["\(rk)"].map { "\($0)" } == fk, "\(version): \(fk) <-> \(rk)")
            }
        }
    }

    @Test("Calico's A/B order: addresses compare as little-endian words of their network bytes")
    func order() {
        // checked in the lab: 10.65.0.2 < 10.96.0.10, but 10.96.0.10 < 10.65.0.200
        let vip = IPAddress("10.96.0.10")!
        #expect(CalicoFormat.isA(IPAddress("10.65.0.2")!, 40000, before: vip, 53))
        #expect(!CalicoFormat.isA(IPAddress("10.65.0.200")!, 40000, before: vip, 53))
        #expect(CalicoFormat.isA(vip, 53, before: vip, 54), "equal addresses: the ports decide")
    }
}
