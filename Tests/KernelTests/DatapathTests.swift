import CLibBPF
import ConntrackKit
import TestSupport
import Testing

/// One address plan per family: a client, a VIP, two backends and a plain host.
struct Plan: Sendable, CustomTestStringConvertible {
    let proto: IPProto
    let v6: Bool

    var client: String { v6 ? "[2001:db8:1::2]:40000" : "198.18.1.2:40000" }
    var vip: String { v6 ? "[2001:db8:ff::10]:161" : "198.19.0.10:161" }
    var backend1: String { v6 ? "[2001:db8:2::2]:1161" : "198.18.2.2:1161" }
    var backend2: String { v6 ? "[2001:db8:3::2]:1162" : "198.18.3.2:1162" }
    var host: String { v6 ? "[2001:db8:9::9]:53" : "198.18.9.9:53" }
    var service: String { "\(vip)/\(proto)" }

    func ep(_ s: String) -> Endpoint { Endpoint(s)! }
    func packet(_ src: String, _ dst: String) -> [UInt8] { Packets.packet(proto, ep(src), ep(dst)) }

    var testDescription: String { "\(proto)/ipv\(v6 ? 6 : 4)" }

    static let all: [Plan] = [
        Plan(proto: .udp, v6: false), Plan(proto: .tcp, v6: false),
        Plan(proto: .udp, v6: true), Plan(proto: .tcp, v6: true),
    ]
}

/// Checks a frame that left the program: it must equal, byte for byte, the same frame
/// built from scratch with the translated addresses (so every checksum is exact).
func expectFrame(
    _ run: TCRun, src: Endpoint, dst: Endpoint, payloadFrom original: [UInt8],
    sourceLocation: SourceLocation = #_sourceLocation
) throws {
    #expect(run.verdict == TCRun.ok, "verdict", sourceLocation: sourceLocation)
    let out = try #require(Packets.parse(run.packet), sourceLocation: sourceLocation)
    let before = try #require(Packets.parse(original), sourceLocation: sourceLocation)
    #expect(out.src == src, sourceLocation: sourceLocation)
    #expect(out.dst == dst, sourceLocation: sourceLocation)
    #expect(out.ipChecksumOK, "IPv4 header checksum", sourceLocation: sourceLocation)
    #expect(out.l4ChecksumOK, "L4 checksum", sourceLocation: sourceLocation)
    let proto = IPProto(before.proto)
    let expected =
        proto == .tcp
        ? Packets.tcp(src, dst, payload: before.payload)
        : Packets.udp(src, dst, payload: before.payload, zeroChecksum: before.l4ChecksumField == 0)
    #expect(run.packet == expected, "byte for byte", sourceLocation: sourceLocation)
}

@Suite("datapath (BPF_PROG_TEST_RUN)")
struct DatapathTests {
    @Test("a packet to a VIP is DNATed to a backend and both entries are created", arguments: Plan.all)
    func dnatCreatesPair(_ p: Plan) throws {
        try withDataplane("dnat") { t in
            try t.setService(p.service, [p.backend1])
            let pkt = p.packet(p.client, p.vip)
            try expectFrame(try t.run(pkt), src: p.ep(p.client), dst: p.ep(p.backend1), payloadFrom: pkt)

            let fwd = try #require(try t.entry(p.proto, p.client, p.vip))
            let rev = try #require(try t.entry(p.proto, p.backend1, p.client))
            #expect(fwd.type == .natForward)
            #expect(fwd.nat == p.ep(p.backend1))
            #expect(fwd.service == ServiceRef(p.service))
            #expect(fwd.partner == rev.key)
            #expect(fwd.packets == 1)
            #expect(rev.type == .natReverse)
            #expect(rev.nat == p.ep(p.vip))
            #expect(rev.partner == fwd.key)
            #expect(rev.createdNs == fwd.createdNs, "both halves share one created time")
            #expect(try t.entries().count == 2)
            #expect(try t.counter("nat_pair_created") == 1)
        }
    }

    @Test("the reply is translated back to the VIP", arguments: Plan.all)
    func replyTranslated(_ p: Plan) throws {
        try withDataplane("reply") { t in
            try t.setService(p.service, [p.backend1])
            _ = try t.run(p.packet(p.client, p.vip))
            let reply = p.packet(p.backend1, p.client)
            try expectFrame(try t.run(reply), src: p.ep(p.vip), dst: p.ep(p.client), payloadFrom: reply)
            #expect(try t.entry(p.proto, p.backend1, p.client)?.packets == 1)
            #expect(try t.counter("ct_hit") == 1)
        }
    }

    @Test("a packet to a non-service creates one normal entry; its reply matches it", arguments: Plan.all)
    func normalFlow(_ p: Plan) throws {
        try withDataplane("normal") { t in
            try t.setService(p.service, [p.backend1])
            let pkt = p.packet(p.client, p.host)
            let run = try t.run(pkt)
            #expect(run.verdict == TCRun.ok)
            #expect(run.packet == pkt, "a normal flow is never rewritten")
            let e = try #require(try t.entry(p.proto, p.client, p.host))
            #expect(e.type == .normal)
            #expect(e.nat == nil && e.partner == nil)

            let reply = p.packet(p.host, p.client)
            #expect(try t.run(reply).packet == reply)
            #expect(try t.entries().count == 1, "the reply matched the entry through the reversed tuple")
            #expect(try t.counter("reply_hit") == 1)
            #expect(try t.entry(p.proto, p.client, p.host)?.flagNames.contains("seen-reply") == true)
        }
    }

    @Test("a service with zero backends drops and creates nothing", arguments: Plan.all)
    func zeroBackendsDrop(_ p: Plan) throws {
        try withDataplane("zero") { t in
            try t.setService(p.service, [])
            #expect(try t.run(p.packet(p.client, p.vip)).verdict == TCRun.shot)
            #expect(try t.entries().isEmpty)
            #expect(try t.counter("drop_no_backend") == 1)
        }
    }

    /// Short idle timeouts, so a test can age an entry without underflowing the clock.
    static var shortTimeouts: LoadOptions {
        var o = LoadOptions()
        o.timeouts = try! Timeouts(parsing: "udp=2s,tcp=4s,tcp-closing=1s")
        return o
    }

    @Test("an idle-expired entry is treated as new", arguments: Plan.all)
    func expiredIsNew(_ p: Plan) throws {
        try withDataplane("expired", options: DatapathTests.shortTimeouts) { t in
            try t.setService(p.service, [p.backend1])
            _ = try t.run(p.packet(p.client, p.vip))
            _ = try t.run(p.packet(p.client, p.host))
            let fwd = try #require(try t.entry(p.proto, p.client, p.vip))
            let normal = try #require(try t.entry(p.proto, p.client, p.host))
            let idle = (p.proto == .udp ? 3 : 5) * UInt64(1_000_000_000)
            try t.rewrite(p.proto, p.client, p.vip) { $0.last_seen_ns -= idle }
            try t.rewrite(p.proto, p.backend1, p.client) { $0.last_seen_ns -= idle }
            try t.rewrite(p.proto, p.client, p.host) { $0.last_seen_ns -= idle }

            let pkt = p.packet(p.client, p.vip)
            try expectFrame(try t.run(pkt), src: p.ep(p.client), dst: p.ep(p.backend1), payloadFrom: pkt)
            _ = try t.run(p.packet(p.client, p.host))
            #expect(try t.entry(p.proto, p.client, p.vip)!.createdNs > fwd.createdNs, "a new pair replaced the expired one")
            #expect(try t.entry(p.proto, p.backend1, p.client)!.createdNs > fwd.createdNs)
            #expect(try t.entry(p.proto, p.client, p.host)!.createdNs > normal.createdNs)
            #expect(try t.counter("expired_hit") == 2)
        }
    }

    @Test("a NAT pair expires as one flow: a late reply to a one-way flow is still translated", arguments: Plan.all)
    func pairExpiresAsOne(_ p: Plan) throws {
        try withDataplane("oneway", options: DatapathTests.shortTimeouts) { t in
            try t.setService(p.service, [p.backend1])
            let pkt = p.packet(p.client, p.vip)
            _ = try t.run(pkt)
            // the client keeps sending; no reply for longer than the timeout
            let idle = (p.proto == .udp ? 3 : 5) * UInt64(1_000_000_000)
            try t.rewrite(p.proto, p.backend1, p.client) { $0.last_seen_ns -= idle }
            let created = try #require(try t.entry(p.proto, p.client, p.vip)).createdNs
            try expectFrame(try t.run(pkt), src: p.ep(p.client), dst: p.ep(p.backend1), payloadFrom: pkt)
            let reply = p.packet(p.backend1, p.client)
            try expectFrame(try t.run(reply), src: p.ep(p.vip), dst: p.ep(p.client), payloadFrom: reply)
            #expect(try t.entry(p.proto, p.backend1, p.client)?.type == .natReverse)
            #expect(try t.entry(p.proto, p.client, p.vip)?.createdNs == created, "the pair lives on")
            #expect(try t.counter("expired_hit") == 0)
            // the other way round: only replies for a while, then the client sends again
            try t.rewrite(p.proto, p.client, p.vip) { $0.last_seen_ns -= idle }
            _ = try t.run(reply)
            try expectFrame(try t.run(pkt), src: p.ep(p.client), dst: p.ep(p.backend1), payloadFrom: pkt)
            #expect(try t.entry(p.proto, p.client, p.vip)?.createdNs == created)
            #expect(try t.counter("expired_hit") == 0)
        }
    }

    @Test("TCP FIN switches an entry to the closing timeout")
    func tcpFinClosing() throws {
        try withDataplane("fin", options: DatapathTests.shortTimeouts) { t in
            let p = Plan(proto: .tcp, v6: false)
            _ = try t.run(Packets.tcp(p.ep(p.client), p.ep(p.host), flags: Packets.tcpFIN | Packets.tcpACK))
            #expect(try t.entry(.tcp, p.client, p.host)?.flagNames == ["fin"])
            // 2 s idle: within the 4 s TCP timeout, past the 1 s closing one
            let before = try #require(try t.entry(.tcp, p.client, p.host))
            try t.rewrite(.tcp, p.client, p.host) { $0.last_seen_ns -= 2_000_000_000 }
            _ = try t.run(p.packet(p.client, p.host))
            #expect(try t.entry(.tcp, p.client, p.host)!.createdNs > before.createdNs)
        }
    }

    @Test("epoch fix on: a normal entry to a new service is converted on the next packet", arguments: Plan.all)
    func epochConverts(_ p: Plan) throws {
        try withDataplane("convert") { t in
            let pkt = p.packet(p.client, p.vip)
            #expect(try t.run(pkt).packet == pkt, "no service yet: passed untranslated")
            let stuck = try #require(try t.entry(p.proto, p.client, p.vip))
            #expect(stuck.type == .normal)

            try t.setService(p.service, [p.backend1])
            try expectFrame(try t.run(pkt), src: p.ep(p.client), dst: p.ep(p.backend1), payloadFrom: pkt)
            let fwd = try #require(try t.entry(p.proto, p.client, p.vip))
            #expect(fwd.type == .natForward)
            #expect(fwd.createdNs > stuck.createdNs, "new entries, never an in-place type change")
            #expect(fwd.flagNames.contains("converted"))
            #expect(try t.entry(p.proto, p.backend1, p.client)?.type == .natReverse)
            #expect(try t.counter("flow_converted") == 1)
        }
    }

    @Test("epoch fix off: the normal entry stays and the flow never reaches a backend (the bug)", arguments: Plan.all)
    func epochOffKeepsBug(_ p: Plan) throws {
        try withDataplane("bug", options: .epochOff) { t in
            let pkt = p.packet(p.client, p.vip)
            _ = try t.run(pkt)
            try t.setService(p.service, [p.backend1])
            for _ in 0..<3 {
                #expect(try t.run(pkt).packet == pkt, "still sent to the VIP untranslated")
            }
            #expect(try t.entry(p.proto, p.client, p.vip)?.type == .normal)
            #expect(try t.entry(p.proto, p.client, p.vip)?.packets == 4)
            #expect(try t.counter("flow_converted") == 0)
            #expect(try t.counter("epoch_recheck") == 0)
        }
    }

    @Test("epoch fix on: a NAT flow whose backend was removed is re-balanced", arguments: Plan.all)
    func epochRebalances(_ p: Plan) throws {
        try withDataplane("rebalance") { t in
            try t.setService(p.service, [p.backend1])
            let pkt = p.packet(p.client, p.vip)
            _ = try t.run(pkt)
            try t.setService(p.service, [p.backend2])
            try expectFrame(try t.run(pkt), src: p.ep(p.client), dst: p.ep(p.backend2), payloadFrom: pkt)
            #expect(try t.entry(p.proto, p.client, p.vip)?.nat == p.ep(p.backend2))
            #expect(try t.entry(p.proto, p.backend2, p.client)?.type == .natReverse)
            #expect(try t.entry(p.proto, p.backend1, p.client) == nil, "the old reverse half is removed")
            #expect(try t.counter("flow_rebalanced") == 1)
        }
    }

    @Test("epoch fix off: a NAT flow keeps its removed backend")
    func epochOffNoRebalance() throws {
        let p = Plan(proto: .udp, v6: false)
        try withDataplane("norebalance", options: .epochOff) { t in
            try t.setService(p.service, [p.backend1])
            let pkt = p.packet(p.client, p.vip)
            _ = try t.run(pkt)
            try t.setService(p.service, [p.backend2])
            try expectFrame(try t.run(pkt), src: p.ep(p.client), dst: p.ep(p.backend1), payloadFrom: pkt)
            #expect(try t.counter("flow_rebalanced") == 0)
        }
    }

    @Test("epoch fix on: a backend still in the service keeps its flow", arguments: Plan.all)
    func epochKeepsMember(_ p: Plan) throws {
        try withDataplane("member") { t in
            try t.setService(p.service, [p.backend1])
            let pkt = p.packet(p.client, p.vip)
            _ = try t.run(pkt)
            let before = try #require(try t.entry(p.proto, p.client, p.vip))
            try t.setService(p.service, [p.backend2, p.backend1])
            try expectFrame(try t.run(pkt), src: p.ep(p.client), dst: p.ep(p.backend1), payloadFrom: pkt)
            let after = try #require(try t.entry(p.proto, p.client, p.vip))
            #expect(after.createdNs == before.createdNs)
            #expect(after.epoch == (try t.dp.epoch()), "the epoch is brought up to date")
            #expect(try t.counter("epoch_recheck") == 1)
        }
    }

    @Test("epoch fix on: a NAT flow whose service is gone becomes a normal flow")
    func epochUnnats() throws {
        let p = Plan(proto: .udp, v6: false)
        try withDataplane("unnat") { t in
            try t.setService(p.service, [p.backend1])
            let pkt = p.packet(p.client, p.vip)
            _ = try t.run(pkt)
            try t.deleteService(p.service)
            #expect(try t.run(pkt).packet == pkt)
            #expect(try t.entry(p.proto, p.client, p.vip)?.type == .normal)
            #expect(try t.entry(p.proto, p.backend1, p.client) == nil)
            #expect(try t.counter("flow_unnated") == 1)
        }
    }

    @Test("a late reply that left a normal entry on the reverse key does not block the NAT pair", arguments: Plan.all)
    func lateReply(_ p: Plan) throws {
        try withDataplane("late") { t in
            try t.setService(p.service, [p.backend1])
            _ = try t.run(p.packet(p.backend1, p.client))
            #expect(try t.entry(p.proto, p.backend1, p.client)?.type == .normal)

            _ = try t.run(p.packet(p.client, p.vip))
            #expect(try t.entry(p.proto, p.backend1, p.client)?.type == .natReverse)
            let reply = p.packet(p.backend1, p.client)
            try expectFrame(try t.run(reply), src: p.ep(p.vip), dst: p.ep(p.client), payloadFrom: reply)
        }
    }

    @Test("an IPv4 UDP datagram without a checksum keeps a zero checksum")
    func udpZeroChecksum() throws {
        let p = Plan(proto: .udp, v6: false)
        try withDataplane("csum0") { t in
            try t.setService(p.service, [p.backend1])
            let run = try t.run(Packets.udp(p.ep(p.client), p.ep(p.vip), zeroChecksum: true))
            let out = try #require(Packets.parse(run.packet))
            #expect(out.dst == p.ep(p.backend1))
            #expect(out.l4ChecksumField == 0)
            #expect(out.ipChecksumOK)
        }
    }

}

@Suite("datapath: what it does not translate")
struct MalformedTests {
    let p = Plan(proto: .udp, v6: false)

    func withService(_ tag: String, _ body: (TestDataplane) throws -> Void) throws {
        try withDataplane(tag) { t in
            try t.setService(p.service, [p.backend1])
            try body(t)
        }
    }

    func ipv4Checksum(_ f: inout [UInt8]) {
        f[24] = 0
        f[25] = 0
        let ihl = Int(f[14] & 0x0f) * 4
        let c = ~UInt16(Packets.sum(Array(f[14..<(14 + ihl)])))
        f[24] = UInt8(c >> 8)
        f[25] = UInt8(c & 0xff)
    }

    @Test("non-IP frames pass untouched")
    func arp() throws {
        try withService("arp") { t in
            let arp = Packets.macs + [0x08, 0x06] + [UInt8](repeating: 1, count: 28)
            let run = try t.run(arp)
            #expect(run.verdict == TCRun.ok && run.packet == arp)
            #expect(try t.counter("pass_not_ip") == 1)
        }
    }

    @Test("IPv4 with options passes untouched, never translated")
    func ipOptions() throws {
        try withService("opts") { t in
            var f = p.packet(p.client, p.vip)
            // insert a 4-byte NOP option block: ihl 6, total length + 4
            f.insert(contentsOf: [1, 1, 1, 0], at: 34)
            f[14] = 0x46
            let tot = Packets.u16(f, 16) + 4
            f[16] = UInt8(tot >> 8)
            f[17] = UInt8(tot & 0xff)
            ipv4Checksum(&f)
            let run = try t.run(f)
            #expect(run.verdict == TCRun.ok && run.packet == f)
            #expect(try t.entries().isEmpty)
            #expect(try t.counter("pass_ip_options") == 1)
        }
    }

    @Test("IPv4 fragments pass untouched, first and later ones", arguments: [0x2000 as UInt16, 0x0010])
    func fragments(_ fragField: UInt16) throws {
        try withService("frag") { t in
            var f = p.packet(p.client, p.vip)
            f[20] = UInt8(fragField >> 8)
            f[21] = UInt8(fragField & 0xff)
            ipv4Checksum(&f)
            let run = try t.run(f)
            #expect(run.verdict == TCRun.ok && run.packet == f)
            #expect(try t.entries().isEmpty)
            #expect(try t.counter("pass_fragment") == 1)
        }
    }

    @Test("IPv6 extension headers pass untouched")
    func ipv6Ext() throws {
        let p6 = Plan(proto: .udp, v6: true)
        try withDataplane("ext") { t in
            try t.setService(p6.service, [p6.backend1])
            var f = p6.packet(p6.client, p6.vip)
            // hop-by-hop header (8 bytes, next header UDP) before the UDP header
            f.insert(contentsOf: [17, 0, 1, 4, 0, 0, 0, 0], at: 54)
            f[20] = 0
            let plen = Packets.u16(f, 18) + 8
            f[18] = UInt8(plen >> 8)
            f[19] = UInt8(plen & 0xff)
            let run = try t.run(f)
            #expect(run.verdict == TCRun.ok && run.packet == f)
            #expect(try t.entries().isEmpty)
            #expect(try t.counter("pass_ipv6_ext") == 1)
        }
    }

    @Test("other IP protocols pass untouched")
    func icmp() throws {
        try withService("icmp") { t in
            var f = p.packet(p.client, p.vip)
            f[23] = 1
            ipv4Checksum(&f)
            let run = try t.run(f)
            #expect(run.verdict == TCRun.ok && run.packet == f)
            #expect(try t.counter("pass_not_tcp_udp") == 1)
        }
    }

    @Test("truncated or inconsistent headers are dropped", arguments: ["bad-ihl", "long-total-length", "short-udp", "tcp-doff"])
    func malformed(_ kind: String) throws {
        try withService("malformed") { t in
            var f: [UInt8]
            switch kind {
            case "bad-ihl":
                f = p.packet(p.client, p.vip)
                f[14] = 0x44  // IHL 4: shorter than the fixed header
            case "long-total-length":
                f = p.packet(p.client, p.vip)
                f[17] &+= 40
            case "short-udp":
                f = Array(p.packet(p.client, p.vip)[0..<(34 + 4)])
                f[16] = 0
                f[17] = 24
            default:
                f = Packets.tcp(p.ep(p.client), p.ep(p.host))
                f[46] = 0x30  // data offset 3 words
            }
            let run = try t.run(f)
            #expect(run.verdict == TCRun.shot)
            #expect(try t.entries().isEmpty)
            #expect(try t.counter("drop_malformed") == 1)
        }
    }
}
