import ConntrackKit
import Foundation
import NetLab
import Testing

@Suite("real traffic between network namespaces")
struct TrafficTests {
    @Test(
        "UDP from a fixed source port reaches a backend through the VIP and replies come back from the VIP",
        arguments: [false, true], [true, false])
    func udpThroughVIP(v6: Bool, partialChecksums: Bool) throws {
        let topo = try Topology(v6 ? "udp6" : "udp4", partialChecksums: partialChecksums)
        defer { topo.cleanup() }
        try withDataplane("traffic") { t in
            let lock = try t.lock()
            for (ifname, ns) in [("nc", topo.node), ("nb1", topo.node), ("nb2", topo.node)] {
                try Attachments.attach(t.dp, ifname: ifname, netns: ns, lock: lock)
            }
            #expect(try Attachments.list(t.dp).map(\.state) == [.attached, .attached, .attached])

            let clientAddr = v6 ? "[\(Topology.clientV6)]" : Topology.clientV4
            let vip = Endpoint((v6 ? "[\(Topology.vipV6)]" : Topology.vipV4) + ":161")!
            let backend = Endpoint((v6 ? "[\(Topology.backendV6[0])]" : Topology.backendV4[0]) + ":1161")!
            try Services.set(t.dp, ServiceRef(vip: vip, proto: .udp), backends: [backend], lock: lock)

            let any = v6 ? "[::]:1161" : "0.0.0.0:1161"
            let server = try UDPSocket(netns: topo.backend1, bind: Endpoint(any)!)
            let client = try UDPSocket(netns: topo.client, bind: Endpoint(clientAddr + ":40000")!)

            for i in 0..<5 {
                let msg = Array("poll-\(i)".utf8)
                try client.send(msg, to: vip)
                let got = try #require(server.receive(timeoutMs: 2000), "datagram \(i) reached the backend")
                #expect(got.payload == msg)
                #expect(got.from == Endpoint(clientAddr + ":40000")!, "the client's address and port are kept")
                try server.send(Array("ack-\(i)".utf8), to: got.from)
                let reply = try #require(client.receive(timeoutMs: 2000), "reply \(i) came back")
                #expect(reply.from == vip, "the reply comes from the VIP, not the backend")
                #expect(reply.payload == Array("ack-\(i)".utf8))
            }
            #expect(try t.counter("nat_pair_created") == 1)
            #expect(try t.counter("ct_hit") == 9)
            #expect(try t.counter("drop_rewrite") == 0)
            for ns in [topo.client, topo.backend1] {
                #expect(try udpChecksumErrors(ns) == 0, "checksum errors in \(ns)")
            }
        }
    }

    @Test(
        "a reverse half deleted under live traffic is restored by the next request after a pause: every reply comes from the VIP")
    func reverseRestoredUnderTraffic() throws {
        let topo = try Topology("revlive")
        defer { topo.cleanup() }
        try withDataplane("revlive") { t in
            let lock = try t.lock()
            for ifname in ["nc", "nb1", "nb2"] { try Attachments.attach(t.dp, ifname: ifname, netns: topo.node, lock: lock) }
            let vip = Endpoint(Topology.vipV4 + ":161")!
            let backend = Endpoint(Topology.backendV4[0] + ":1161")!
            try Services.set(t.dp, ServiceRef(vip: vip, proto: .udp), backends: [backend], lock: lock)
            let server = try UDPSocket(netns: topo.backend1, bind: Endpoint("0.0.0.0:1161")!)
            let client = try UDPSocket(netns: topo.client, bind: Endpoint(Topology.clientV4 + ":40000")!)
            let reverseKey = FlowKey(proto: .udp, src: backend, dst: Endpoint(Topology.clientV4 + ":40000")!).raw
            var deleted = 0
            for i in 0..<40 {
                if i % 10 == 5 {
                    // the reverse half goes (as under LRU pressure), between a reply and the next request
                    if try t.dp.ct.delete(reverseKey) { deleted += 1 }
                }
                Thread.sleep(forTimeInterval: 0.012)  // a poller's interval: more than 10 ms between requests
                try client.send(Array("poll-\(i)".utf8), to: vip)
                let got = try #require(server.receive(timeoutMs: 2000), "request \(i) reached the backend")
                try server.send(Array("ack-\(i)".utf8), to: got.from)
                let reply = try #require(client.receive(timeoutMs: 2000), "reply \(i) came back")
                #expect(reply.from == vip, "reply \(i) comes from the VIP, not the backend")
            }
            #expect(deleted == 4)
            #expect(try t.counter("reverse_restored") == 4)
            #expect(try t.counter("nat_pair_created") == 1, "the same pair all along")
        }
    }

    @Test("a connected client gets ECONNREFUSED when the backend has no listener", arguments: [false, true])
    func connectionRefused(v6: Bool) throws {
        let topo = try Topology(v6 ? "refused6" : "refused4")
        defer { topo.cleanup() }
        try withDataplane("refused") { t in
            let lock = try t.lock()
            for ifname in ["nc", "nb1", "nb2"] { try Attachments.attach(t.dp, ifname: ifname, netns: topo.node, lock: lock) }
            let vip = Endpoint((v6 ? "[\(Topology.vipV6)]" : Topology.vipV4) + ":161")!
            let backend = Endpoint((v6 ? "[\(Topology.backendV6[0])]" : Topology.backendV4[0]) + ":1161")!
            try Services.set(t.dp, ServiceRef(vip: vip, proto: .udp), backends: [backend], lock: lock)
            let client = try UDPSocket(
                netns: topo.client, bind: Endpoint((v6 ? "[\(Topology.clientV6)]" : Topology.clientV4) + ":40000")!)
            try client.connect(to: vip)
            // nothing listens on the backend's port: its kernel answers port unreachable
            var refused = false
            for _ in 0..<3 where !refused {
                #expect(client.send(Array("poll".utf8)) == 0)
                refused = client.pendingError(timeoutMs: 1000) == ECONNREFUSED
            }
            #expect(refused, "the client's socket learned that the port is closed")
            #expect(try t.counter("icmp_error_translated") >= 1)
        }
    }

    @Test(
        "a router's fragmentation-needed or packet-too-big reaches the client: its kernel learns the path MTU to the VIP",
        arguments: [false, true])
    func pathMTU(v6: Bool) throws {
        let topo = try Topology(v6 ? "pmtu6" : "pmtu4", withRouter: true)
        defer { topo.cleanup() }
        try withDataplane("pmtu") { t in
            let lock = try t.lock()
            for ifname in ["nc", "nb3"] { try Attachments.attach(t.dp, ifname: ifname, netns: topo.node, lock: lock) }
            let vipAddr = v6 ? Topology.vipV6 : Topology.vipV4
            let vip = Endpoint((v6 ? "[\(vipAddr)]" : vipAddr) + ":161")!
            let backend = Endpoint((v6 ? "[\(Topology.backend3V6)]" : Topology.backend3V4) + ":1161")!
            try Services.set(t.dp, ServiceRef(vip: vip, proto: .udp), backends: [backend], lock: lock)
            let client = try UDPSocket(
                netns: topo.client, bind: Endpoint((v6 ? "[\(Topology.clientV6)]" : Topology.clientV4) + ":40000")!)
            try client.connect(to: vip)
            client.setDontFragment()
            func routeMTU() throws -> String {
                try sh(["ip", "-n", topo.client] + (v6 ? ["-6"] : []) + ["route", "get", vipAddr])
            }
            #expect(!(try routeMTU()).contains("mtu \(Topology.farMTU)"))
            // larger than the router's far link: the router answers, from its own address
            var learned = false
            for _ in 0..<3 where !learned {
                _ = client.send([UInt8](repeating: 0x5a, count: 1400))
                Thread.sleep(forTimeInterval: 0.3)
                learned = try routeMTU().contains("mtu \(Topology.farMTU)")
            }
            let route = try routeMTU()
            #expect(learned, "the client's kernel accepted the translated error: \(route)")
            #expect(try t.counter("icmp_error_translated") >= 1)
            #expect(
                client.send([UInt8](repeating: 0x5a, count: 1400)) == EMSGSIZE, "and now refuses to send more than the path takes"
            )
        }
    }
}

/// UDP datagrams a namespace's stack dropped for a bad checksum (IPv4 and IPv6).
func udpChecksumErrors(_ ns: String) throws -> Int {
    var total = 0
    for file in ["/proc/net/snmp", "/proc/net/snmp6"] {
        let text = try sh(["ip", "netns", "exec", ns, "cat", file])
        let lines = text.split(separator: "\n").map { $0.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init) }
        if file.hasSuffix("6") {
            for l in lines where l.first == "Udp6InCsumErrors" { total += Int(l[1]) ?? 0 }
        } else if let header = lines.first(where: { $0.first == "Udp:" && $0.contains("InCsumErrors") }),
            let values = lines.last(where: { $0.first == "Udp:" }), let i = header.firstIndex(of: "InCsumErrors")
        {
            total += Int(values[i]) ?? 0
        }
    }
    return total
}
