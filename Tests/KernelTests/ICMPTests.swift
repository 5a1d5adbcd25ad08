import CLibBPF
import ConntrackKit
import TestSupport
import Testing

/// ICMP errors about NAT flows, through the datapath (BPF_PROG_TEST_RUN): each output
/// frame must equal, byte for byte, the error built from scratch with the translated
/// addresses, so every checksum (outer IPv4, ICMP/ICMPv6, quoted IPv4, quoted UDP/TCP) is
/// exact.
@Suite("datapath: ICMP errors of NAT flows")
struct ICMPTests {
    static let router4 = "198.18.4.2", router6 = "2001:db8:4::2"

    func router(_ p: Plan) -> IPAddress { IPAddress(p.v6 ? ICMPTests.router6 : ICMPTests.router4)! }

    /// Destination (port) unreachable; v6: type 1 code 4.
    func unreachable(_ p: Plan) -> (UInt8, UInt8) { p.v6 ? (1, 4) : (3, 3) }
    /// Fragmentation needed (v4, type 3 code 4, MTU in the last two bytes) or packet too big
    /// (v6, type 2, MTU in all four).
    func tooBig(_ p: Plan) -> (UInt8, UInt8, [UInt8]) { p.v6 ? (2, 0, [0, 0, 5, 0]) : (3, 4, [0, 0, 5, 0]) }

    @Test("an error from the backend about a NAT flow reaches the client from the VIP, quoting the VIP", arguments: Plan.all)
    func fromBackend(_ p: Plan) throws {
        try withDataplane("icmp-be") { t in
            try t.setService(p.service, [p.backend1])
            _ = try t.run(p.packet(p.client, p.vip))
            let (type, code) = unreachable(p)
            // what the backend received (after DNAT), quoted whole
            let quoted = Packets.ipPacket(p.packet(p.client, p.backend1))
            let error = Packets.icmpError(
                p.ep(p.backend1).address, p.ep(p.client).address, type: type, code: code, quote: quoted)
            let run = try t.run(error)
            #expect(run.verdict == TCRun.ok)
            let want = Packets.icmpError(
                p.ep(p.vip).address, p.ep(p.client).address, type: type, code: code,
                quote: Packets.ipPacket(p.packet(p.client, p.vip)))
            #expect(run.packet == want, "byte for byte, every checksum exact")
            #expect(try t.counter("icmp_error_translated") == 1)
            #expect(try t.entries().count == 2, "an error creates no entry")
        }
    }

    @Test("a router's fragmentation-needed or packet-too-big reaches the client quoting the VIP", arguments: Plan.all)
    func fromRouterBeyond(_ p: Plan) throws {
        try withDataplane("icmp-ptb") { t in
            try t.setService(p.service, [p.backend1])
            _ = try t.run(p.packet(p.client, p.vip))
            let (type, code, mtu) = tooBig(p)
            // a router only quotes the start of a large packet: the header and 8 bytes of L4
            let quoted = Array(Packets.ipPacket(p.packet(p.client, p.backend1)).prefix(p.v6 ? 48 : 28))
            let error = Packets.icmpError(router(p), p.ep(p.client).address, type: type, code: code, rest: mtu, quote: quoted)
            let run = try t.run(error)
            #expect(run.verdict == TCRun.ok)
            // the router's own address stays. The quoted L4 checksum, updated incrementally,
            // is the checksum of the whole translated datagram: the quote is the prefix of the
            // packet as the client sent it (a TCP checksum lies beyond 8 bytes: not quoted)
            let wantQuote = Array(Packets.ipPacket(p.packet(p.client, p.vip)).prefix(p.v6 ? 48 : 28))
            let want = Packets.icmpError(router(p), p.ep(p.client).address, type: type, code: code, rest: mtu, quote: wantQuote)
            let out = run.packet
            #expect(out == want, "the quote translated, every checksum exact")
            #expect(try t.counter("icmp_error_translated") == 1)
        }
    }

    @Test("an error about a reply, sent to the VIP by a router on the client's side, reaches the backend", arguments: Plan.all)
    func aboutAReply(_ p: Plan) throws {
        try withDataplane("icmp-reply") { t in
            try t.setService(p.service, [p.backend1])
            _ = try t.run(p.packet(p.client, p.vip))
            let (type, code) = unreachable(p)
            // the reply as it left the node (source rewritten to the VIP), quoted whole
            let quoted = Packets.ipPacket(p.packet(p.vip, p.client))
            let error = Packets.icmpError(router(p), p.ep(p.vip).address, type: type, code: code, quote: quoted)
            let run = try t.run(error)
            #expect(run.verdict == TCRun.ok)
            let want = Packets.icmpError(
                router(p), p.ep(p.backend1).address, type: type, code: code,
                quote: Packets.ipPacket(p.packet(p.backend1, p.client)))
            #expect(run.packet == want, "byte for byte")
            #expect(try t.counter("icmp_error_translated") == 1)
        }
    }

    @Test("errors about flows that are not NAT-ed, and ICMP that is not an error, pass untouched", arguments: Plan.all)
    func untracked(_ p: Plan) throws {
        try withDataplane("icmp-untracked") { t in
            try t.setService(p.service, [p.backend1])
            _ = try t.run(p.packet(p.client, p.host))
            let (type, code) = unreachable(p)
            let error = Packets.icmpError(
                p.ep(p.host).address, p.ep(p.client).address, type: type, code: code,
                quote: Packets.ipPacket(p.packet(p.client, p.host)))
            #expect(try t.run(error).packet == error)
            #expect(try t.counter("pass_icmp_untracked") == 1)
            let echo = Packets.icmpError(
                p.ep(p.client).address, p.ep(p.vip).address, type: p.v6 ? 128 : 8, code: 0, quote: [1, 2, 3, 4])
            #expect(try t.run(echo).packet == echo)
            #expect(try t.counter("pass_not_tcp_udp") == 1)
            #expect(try t.counter("icmp_error_translated") == 0)
        }
    }

    @Test(
        "errors with a truncated or malformed quote pass untouched and are counted",
        arguments: ["truncated", "version", "options", "later-fragment"])
    func malformedQuote(_ kind: String) throws {
        let p = Plan(proto: .udp, v6: false)
        try withDataplane("icmp-bad") { t in
            try t.setService(p.service, [p.backend1])
            _ = try t.run(p.packet(p.client, p.vip))
            var quoted = Packets.ipPacket(p.packet(p.client, p.backend1))
            switch kind {
            case "truncated": quoted = Array(quoted.prefix(22))
            case "version": quoted[0] = 0x55
            case "options": quoted[0] = 0x46
            default:
                quoted[6] = 0
                quoted[7] = 0x10  // fragment offset 16: no L4 header
            }
            let error = Packets.icmpError(p.ep(p.backend1).address, p.ep(p.client).address, type: 3, code: 3, quote: quoted)
            let run = try t.run(error)
            #expect(run.verdict == TCRun.ok && run.packet == error)
            #expect(try t.counter("pass_icmp_malformed") == 1)
        }
    }

    @Test("bytes after the IP packet (Ethernet padding) are never touched, even where a quote would go on")
    func paddingUntouched() throws {
        let p = Plan(proto: .tcp, v6: false)
        try withDataplane("icmp-pad") { t in
            try t.setService(p.service, [p.backend1])
            _ = try t.run(p.packet(p.client, p.vip))
            // a router's error quoting 8 bytes of TCP, and 30 bytes of padding after the packet
            // (where a longer quote's TCP checksum would be): found by the datapath fuzzer
            let quoted = Array(Packets.ipPacket(p.packet(p.client, p.backend1)).prefix(28))
            let error = Packets.icmpError(IPAddress(ICMPTests.router4)!, p.ep(p.client).address, type: 3, code: 4, quote: quoted)
            let padding = [UInt8](repeating: 0xa5, count: 30)
            let run = try t.run(error + padding)
            #expect(run.verdict == TCRun.ok)
            #expect(Array(run.packet.suffix(30)) == padding, "the padding is not the datapath's")
            let want = Packets.icmpError(
                IPAddress(ICMPTests.router4)!, p.ep(p.client).address, type: 3, code: 4,
                quote: Array(Packets.ipPacket(p.packet(p.client, p.vip)).prefix(28)))
            #expect(Array(run.packet.prefix(want.count)) == want)
        }
    }
}
