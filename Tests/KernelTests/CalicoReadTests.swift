import CLibBPF
import ConntrackKit
import Foundation
import NetLab
import TestSupport
import Testing

/// ctctl on Calico's own maps, written by Calico's own datapath (../shared/calico/calico-lab):
/// v3.29 and current, IPv4 and IPv6. What ctctl reports must be exactly what Calico's programs
/// wrote, and its stale verdicts what Calico's programs then do with the next packet.
@Suite("Calico's maps, read (calico-lab)", .enabled(if: CalicoLab.available, "../shared/calico is absent"))
struct CalicoReadTests {
    /// The addresses of one family: a VIP, clients and backends.
    struct Net {
        let v6: Bool
        func w(_ a: String, _ port: Int) -> String { v6 ? "[\(a)]:\(port)" : "\(a):\(port)" }
        var vipAddr: String { v6 ? "2001:db8:ff::10" : "198.19.0.10" }
        var vip: String { w(vipAddr, 53) }
        var service: String { vip + "/udp" }
        /// stuck: its NORMAL entry was made while the service was gone
        var stuck: String { w(v6 ? "2001:db8:1::2" : "198.18.1.2", 40000) }
        /// a NAT flow with its reply
        var client: String { w(v6 ? "2001:db8:1::3" : "198.18.1.3", 40000) }
        /// sorts after the VIP in Calico's A/B order (its entries carry the BA flag)
        var after: String { w(v6 ? "2001:db8:ffff::200" : "198.18.1.200", 40001) }
        var moverAddr: String { v6 ? "2001:db8:1::4" : "198.18.1.4" }
        var b1: String { w(v6 ? "2001:db8:2::2" : "198.18.2.2", 5353) }
        var b2: String { w(v6 ? "2001:db8:3::2" : "198.18.3.2", 5353) }
        var family: String { v6 ? "6" : "4" }
    }

    static let cases: [(String, Bool)] = [("v3.29", false), ("v3.29", true), ("head", false), ("head", true)]

    /// Stages: a NAT miss; the service created; a NAT flow and its reply; a client that sorts
    /// after the VIP; a NAT flow whose backend is then removed; the stuck flow sending again.
    /// Returns the mover's source (the flow to the removed backend).
    static func stage(_ lab: CalicoLab, _ n: Net) throws -> String {
        #expect(try lab.packet("udp", n.stuck, n.vip).nat == "no-nat", "no service yet: a NORMAL entry")
        try lab.setService(n.service, [n.b1])
        #expect(try lab.packet("udp", n.client, n.vip).to == n.b1)
        #expect(try lab.reply("udp", n.b1, n.client).nat == "snat")
        #expect(try lab.packet("udp", n.after, n.vip).to == n.b1)
        // a second backend, and a flow to it (Calico picks a backend at random: bounded tries)
        try lab.setService(n.service, [n.b1, n.b2])
        var mover: String? = nil
        for port in 41000..<41040 where mover == nil {
            let src = n.w(n.moverAddr, port)
            if try lab.packet("udp", src, n.vip).to == n.b2 { mover = src }
        }
        let moved = try #require(mover, "one of 40 flows went to \(n.b2)")
        // b2 is removed (felix's order: the frontend shrinks, the backend goes)
        try lab.setService(n.service, [n.b1])
        #expect(try lab.packet("udp", moved, n.vip).to == n.b2, "Calico keeps the flow on its removed backend")
        #expect(try lab.packet("udp", n.stuck, n.vip).nat == "no-nat", "the incident: the stuck flow is not translated")
        return moved
    }

    func json(_ args: [String], _ lab: CalicoLab) throws -> [[String: Any]] {
        let r = ctctl(args + ["-o", "json", "--pin-dir", lab.pins.path])
        #expect(r.status == 0, "\(args): \(r.err)")
        return try jsonArray(r.out)
    }

    static func key(_ e: [String: Any]) -> String {
        let k = e["key"] as! [String: Any]
        return "\(k["src"]!):\(k["sport"]!)-\(k["dst"]!):\(k["dport"]!)"
    }

    @Test("list, get --explain, stats, nat list and --stale report what Calico's datapath wrote", arguments: cases)
    func reportsWhatCalicoWrote(_ version: String, _ v6: Bool) throws {
        try withCalicoLab("read-\(version)-\(v6 ? 6 : 4)", version: version) { lab in
            let n = Net(v6: v6)
            let mover = try CalicoReadTests.stage(lab, n)
            let labLines = try lab.entries(family: v6 ? 6 : 4)

            // list -o json: every entry Calico wrote, and only those, validating against the schema
            let r = ctctl(["conntrack", "list", "-o", "json", "--family", n.family, "--pin-dir", lab.pins.path])
            #expect(r.status == 0, "\(r.err)")
            try validateAgainstSchema(r.out)
            let all = try jsonArray(r.out)
            #expect(all.count == labLines.count, "\(labLines)")
            for line in labLines {
                let w = line.split(separator: " ").map(String.init)
                let type = w[5].replacingOccurrences(of: "type=", with: "")
                let want = ["NORMAL": "normal", "NAT_FWD": "nat-fwd", "NAT_REV": "nat-rev"][type]!
                let e = try #require(
                    all.first { e in
                        let k = e["key"] as! [String: Any]
                        return n.w("\(k["src"]!)", k["sport"] as! Int) == w[2] && n.w("\(k["dst"]!)", k["dport"] as! Int) == w[4]
                    }, "\(line)")
                #expect(e["type"] as? String == want, "\(line)")
                #expect(e["proto"] as? String == w[1])
                #expect((e["calico"] as? [String: Any])?["type"] as? String == type)
                if type != "NORMAL" {
                    #expect(e["service"] as? String == n.service, "\(line)")
                    #expect(e["dst"] as? String == n.vipAddr, "a NAT entry's original destination is the VIP: \(line)")
                }
            }
            // the NAT flow of a client that sorts after the VIP: the client is still the source
            let after = all.filter { n.w("\($0["src"]!)", $0["sport"] as! Int) == n.after }
            #expect(Set(after.map { $0["type"] as! String }) == ["nat-fwd", "nat-rev"])
            #expect(after.allSatisfy { ($0["flags"] as! [String]).contains("ba") || $0["type"] as? String == "nat-fwd" })

            // --stale: the stuck flow (missed-nat) and the pair on the removed backend (orphan-nat)
            let stale = try json(["conntrack", "list", "--stale", "--family", n.family], lab)
            let verdicts = Set(stale.map { "\(n.w("\($0["src"]!)", $0["sport"] as! Int)) \($0["type"]!) \($0["reason"]!)" })
            #expect(
                verdicts == ["\(n.stuck) normal missed-nat", "\(mover) nat-fwd orphan-nat", "\(mover) nat-rev orphan-nat"],
                "\(verdicts)")

            // get --explain, typed as the user types it: client, then service
            let stuck = ctctl(["conntrack", "get", "udp", n.stuck, n.vip, "--explain", "--pin-dir", lab.pins.path])
            #expect(stuck.status == 0)
            #expect(stuck.out.contains("Next packet: NOT translated"), "\(stuck.out)")
            #expect(stuck.out.contains("Stale: missed-nat"), "\(stuck.out)")
            let live = ctctl(["conntrack", "get", "udp", n.client, n.vip, "--explain", "--pin-dir", lab.pins.path])
            #expect(
                live.out.contains("NAT_FWD of service \(n.service)") && live.out.contains("NAT_REV of service"), "\(live.out)")
            #expect(live.out.contains("is a current backend") && !live.out.contains("Stale:"), "\(live.out)")
            let both = ctctl(["conntrack", "get", "udp", n.client, n.vip, "--pin-dir", lab.pins.path])
            #expect(both.err.contains("2 entries for"), "both halves, found by key: \(both.err)")

            // stats: by type and family, occupancy against the real max_entries
            let s = ctctl(["conntrack", "stats", "-o", "json", "--pin-dir", lab.pins.path])
            let stats = try #require(try JSONSerialization.jsonObject(with: Data(s.out.utf8)) as? [String: Any])
            let everything = try lab.entries()
            #expect(stats["entries"] as? Int == everything.count)
            let byType = stats["by_type"] as! [String: Int]
            #expect(byType["normal"] == everything.filter { $0.contains("type=NORMAL") }.count)
            #expect(byType["nat-fwd"] == everything.filter { $0.contains("type=NAT_FWD") }.count)
            #expect(stats["max_entries"] as? Int == 2 * 512_000, "both families' maps, sizes read from the kernel")
            #expect(stats["layout"] as? String == "calico" && stats["service_epoch"] is NSNull)

            // nat list: the service with its one remaining backend
            let nat = ctctl(["nat", "list", "-o", "json", "--pin-dir", lab.pins.path])
            let services = try jsonArray(nat.out).filter { $0["service"] as? String == n.service }
            #expect(services.count == 1)
            let backends = (services.first?["backends"] as? [[String: Any]]) ?? []
            #expect(backends.map { n.w("\($0["ip"]!)", $0["port"] as! Int) } == [n.b1], "\(nat.out)")
            #expect(services.first?["state"] as? String == "active")
        }
    }

    @Test("a NAT_REV whose NAT_FWD is gone is a half pair, and Calico drops the flow's next packet", arguments: cases)
    func halfPair(_ version: String, _ v6: Bool) throws {
        try withCalicoLab("half-\(version)-\(v6 ? 6 : 4)", version: version) { lab in
            let n = Net(v6: v6)
            try lab.setService(n.service, [n.b1])
            #expect(try lab.packet("udp", n.client, n.vip).nat == "dnat")
            // take the NAT_FWD away, as `calico-node -bpf conntrack remove` can leave it
            let all = try json(["conntrack", "list", "--family", n.family], lab)
            let fwd = try #require(all.first { $0["type"] as? String == "nat-fwd" })
            let map = try BPFMap.open(lab.pins.pin("cali_v\(n.family)_ct\(version == "head" ? 4 : 3)"), readOnly: false)
            var key = [UInt8](repeating: 0, count: map.info.keySize)
            let k = fwd["key"] as! [String: Any]
            CalicoKeyWriter.write(
                &key, proto: 17, IPAddress("\(k["src"]!)")!, UInt16(k["sport"] as! Int), IPAddress("\(k["dst"]!)")!,
                UInt16(k["dport"] as! Int))
            #expect(try key.withUnsafeBytes { try map.delete($0.baseAddress!) })
            let stale = try json(["conntrack", "list", "--stale", "--family", n.family], lab)
            #expect(stale.map { "\($0["type"]!) \($0["reason"]!)" } == ["nat-rev half-pair"], "\(stale)")
            let explain = ctctl(["conntrack", "get", "udp", n.client, n.vip, "--explain", "--pin-dir", lab.pins.path])
            #expect(explain.out.contains("No conntrack entry") || explain.out.contains("NAT_FWD is missing"), "\(explain.out)")
            let byBackend = ctctl(["conntrack", "get", "udp", n.client, n.b1, "--explain", "--pin-dir", lab.pins.path])
            #expect(
                byBackend.out.contains("Its NAT_FWD is missing") && byBackend.out.contains("Stale: half-pair"), "\(byBackend.out)"
            )
            // what ctctl says Calico does: the next packet is dropped (the NAT_REV is in the way)
            #expect(try lab.packet("udp", n.client, n.vip).dropped, "Calico drops the flow while the lone NAT_REV lives")
        }
    }

    @Test("TCP normal entries are not judged; a NAT_REV or NORMAL to a non-service is left alone")
    func tcpAndNonServices() throws {
        try withCalicoLab("tcp", version: "head") { lab in
            let n = Net(v6: false)
            #expect(try lab.packet("tcp", "198.18.1.5:50000", "198.19.0.20:80").nat == "no-nat")
            #expect(try lab.packet("udp", "198.18.1.6:40000", "198.18.9.9:53").nat == "no-nat")
            try lab.setService("198.19.0.20:80/tcp", [n.w("198.18.2.2", 8080)])
            // the TCP SYN re-sent on the same 4-tuple is not translated either (the entry wins)
            #expect(try lab.packet("tcp", "198.18.1.5:50000", "198.19.0.20:80").nat == "no-nat")
            let stale = try json(["conntrack", "list", "--stale"], lab)
            #expect(stale.isEmpty, "TCP normal entries are never judged by default, like Calico's own scanner: \(stale)")
        }
    }

    @Test("NodePort: a normal entry to a host address is stale once a NodePort frontend exists; to another address it is not")
    func nodePort() throws {
        for version in ["v3.29", "head"] {
            try withCalicoLab("nodeport-\(version)", version: version) { lab in
                try lab.lab(["route", "198.18.0.1", "0x18"])  // a host address (LOCAL | HOST)
                #expect(try lab.packet("udp", "198.18.1.2:40000", "198.18.0.1:30080").nat == "no-nat")
                #expect(try lab.packet("udp", "198.18.1.2:40001", "198.18.9.9:30080").nat == "no-nat")
                try lab.setService("255.255.255.255:30080/udp", ["198.18.2.2:5353"])
                let stale = try json(["conntrack", "list", "--stale"], lab)
                #expect(
                    stale.map { "\($0["dst"]!):\($0["dport"]!) \($0["reason"]!)" } == ["198.18.0.1:30080 missed-nat"], "\(stale)")
                // Calico agrees: a new flow to the host address is translated, to the other address not
                #expect(try lab.packet("udp", "198.18.1.2:40002", "198.18.0.1:30080").nat == "dnat")
                #expect(try lab.packet("udp", "198.18.1.2:40003", "198.18.9.9:30080").nat == "no-nat")
                let nat = ctctl(["nat", "list", "--pin-dir", lab.pins.path])
                #expect(nat.out.contains("nodeport"), "\(nat.out)")
            }
        }
    }

    @Test("a scan's threads share Calico's routes cache safely: with a NodePort frontend every thread looks routes up")
    func routesSharedByThreads() throws {
        try withCalicoLab("routes-threads", version: "head") { lab in
            let n = 200_000
            try CalicoFill.resize(lab.pins, map: "cali_v4_ct4", entries: n)
            let fill = CalicoFill(entries: n)
            try fill.createServices { _ = try lab.lab($0) }
            _ = try fill.write(lab.pins.pin("cali_v4_ct4"), now: Timestamp.monotonicNow())
            // NORMAL entries to 250 addresses on port 53: each asks whether its destination is
            // a host address for the NodePort wildcard, from every thread at once
            try lab.setService("255.255.255.255:53/udp", ["198.18.2.2:5353"])
            let args = ["conntrack", "list", "--stale", "--count", "--pin-dir", lab.pins.path]
            let one = ctctl(args + ["--threads", "1"])
            #expect(one.status == 0, "\(one.err)")
            for _ in 0..<3 {
                let many = ctctl(args + ["--threads", "8"])
                #expect(many.status == 0, "\(many.err)")
                #expect(many.out == one.out)
            }
        }
    }

    @Test("source ranges: the longest prefix of VIP, port and client decides; a drop entry is not a service to translate to")
    func sourceRanges() throws {
        try withCalicoLab("ranges", version: "head") { lab in
            // normal entries from inside and outside 198.18.5.0/24, made before any frontend
            #expect(try lab.packet("udp", "198.18.5.7:40000", "198.19.0.30:53").nat == "no-nat")
            #expect(try lab.packet("udp", "198.18.6.7:40000", "198.19.0.30:53").nat == "no-nat")
            // as felix writes a LoadBalancer with a source range: the range's frontend, and a
            // drop entry (count all ones) for every other source
            let fe = try BPFMap.open(lab.pins.pin("cali_v4_nat_fe3"), readOnly: false)
            let be = try BPFMap.open(lab.pins.pin("cali_v4_nat_be"), readOnly: false)
            func frontend(_ prefix: UInt32, _ source: String, id: UInt32, count: UInt32) throws {
                var k = [UInt8](repeating: 0, count: 16)
                withUnsafeBytes(of: prefix.littleEndian) { k.replaceSubrange(0..<4, with: $0) }
                k.replaceSubrange(4..<8, with: IPAddress("198.19.0.30")!.bytes)
                withUnsafeBytes(of: UInt16(53).littleEndian) { k.replaceSubrange(8..<10, with: $0) }
                k[10] = 17
                k.replaceSubrange(11..<15, with: IPAddress(source)!.bytes)
                var v = [UInt8](repeating: 0, count: 20)
                withUnsafeBytes(of: id.littleEndian) { v.replaceSubrange(0..<4, with: $0) }
                withUnsafeBytes(of: count.littleEndian) { v.replaceSubrange(4..<8, with: $0) }
                try k.withUnsafeBytes { kp in try v.withUnsafeBytes { vp in try fe.update(kp.baseAddress!, vp.baseAddress!) } }
            }
            var bk = [UInt8](repeating: 0, count: 8)
            withUnsafeBytes(of: UInt32(700).littleEndian) { bk.replaceSubrange(0..<4, with: $0) }
            var bv = IPAddress("198.18.2.2")!.bytes + [0, 0, 0, 0]
            withUnsafeBytes(of: UInt16(5353).littleEndian) { bv.replaceSubrange(4..<6, with: $0) }
            try bk.withUnsafeBytes { kp in try bv.withUnsafeBytes { vp in try be.update(kp.baseAddress!, vp.baseAddress!) } }
            try frontend(56 + 24, "198.18.5.0", id: 700, count: 1)
            try frontend(56, "0.0.0.0", id: 701, count: 0xffff_ffff)
            // Calico: from inside the range a new flow is translated, from outside it is dropped
            #expect(try lab.packet("udp", "198.18.5.7:40001", "198.19.0.30:53").nat == "dnat")
            #expect(try lab.packet("udp", "198.18.6.7:40001", "198.19.0.30:53").dropped)
            let stale = try json(["conntrack", "list", "--stale"], lab)
            #expect(stale.map { "\($0["src"]!) \($0["reason"]!)" } == ["198.18.5.7 missed-nat"], "\(stale)")
            let nat = ctctl(["nat", "list", "--pin-dir", lab.pins.path])
            #expect(nat.out.contains("from 198.18.5.0/24") && nat.out.contains("drop entry"), "\(nat.out)")
        }
    }

    @Test("bpftool decodes the same map (BTF-formatted on current Calico): the same entries as ctctl's JSON")
    func crossCheckWithBpftool() throws {
        for version in ["v3.29", "head"] {
            try withCalicoLab("bpftool-\(version)", version: version) { lab in
                for v6 in [false, true] { _ = try CalicoReadTests.stage(lab, Net(v6: v6)) }
                for v6 in [false, true] {
                    let map = lab.pins.pin("cali_v\(v6 ? 6 : 4)_ct\(version == "head" ? 4 : 3)")
                    let r = try runCommand(["bpftool", "-j", "map", "dump", "pinned", map])
                    #expect(r.status == 0, "\(r.err)")
                    let items = try #require(try JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [[String: Any]])
                    var theirs = Set<String>()
                    for item in items {
                        let key = (item["key"] as! [String]).map { UInt8($0.dropFirst(2), radix: 16)! }
                        let value = (item["value"] as! [String]).map { UInt8($0.dropFirst(2), radix: 16)! }
                        let d = BpftoolCalico.decode(key, value, v6: v6)
                        theirs.insert(d)
                        if version == "head" {
                            // BTF-formatted: the same fields by Calico's own names
                            let f = try #require(item["formatted"] as? [String: Any])
                            let fk = f["key"] as! [String: Any]
                            let fv = f["value"] as! [String: Any]
                            #expect(fk["protocol"] as? Int == Int(key[0]))
                            #expect("\(fv["last_seen"]!)" == d.split(separator: " ")[3], "\(d)")
                        }
                    }
                    let ours = try json(["conntrack", "list", "--family", v6 ? "6" : "4"], lab).map { e -> String in
                        let k = e["key"] as! [String: Any]
                        return
                            "\(e["proto"]!) \(k["src"]!):\(k["sport"]!)-\(k["dst"]!):\(k["dport"]!) \((e["calico"] as! [String: Any])["type"]!)"
                    }
                    #expect(Set(theirs.map { $0.split(separator: " ").prefix(3).joined(separator: " ") }) == Set(ours))
                }
            }
        }
    }

    @Test("a map of another layout pinned under Calico's names is refused with exit 65, naming the map")
    func otherLayoutRefused() throws {
        // ctctl's own conntrack map (another key and value size), pinned as Calico's
        try withDataplane("calico-impostor") { t in
            let dir = "/sys/fs/bpf/ctctl-test-calico-impostor-\(getpid())"
            mkdir(dir, 0o700)
            defer {
                for f in (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [] { unlink(dir + "/" + f) }
                rmdir(dir)
            }
            let fd = CLibBPF_obj_get(t.pins.pin("ct"), 0)
            #expect(fd >= 0)
            defer { close(fd) }
            #expect(bpf_obj_pin(fd, dir + "/cali_v4_ct4") == 0)
            for args in [["conntrack", "list"], ["conntrack", "list", "--stale"], ["conntrack", "stats"], ["nat", "list"]] {
                let r = ctctl(args + ["--pin-dir", dir])
                #expect(r.status == 65, "\(args): \(r.err)")
                #expect(r.err.contains("cali_v4_ct4") && r.err.contains("another layout"), "\(r.err)")
            }
            let auto = ctctl(["conntrack", "list", "--pin-dir", dir, "--layout", "calico"])
            #expect(auto.status == 65)
        }
    }

    @Test("dry runs and reading commands change nothing; services and dataplanes stay felix's")
    func readOnly() throws {
        try withCalicoLab("readonly", version: "head") { lab in
            let n = Net(v6: false)
            _ = try CalicoReadTests.stage(lab, n)
            let before = try lab.entries()
            let dry = ctctl(["heal", "--once", "--dry-run", "--pin-dir", lab.pins.path])
            #expect(dry.status == 0, "\(dry.err)")
            #expect(dry.err.contains("dry run: 3 entries would be deleted"), "\(dry.err)")
            let r = ctctl(["conntrack", "remove", "udp", n.vipAddr, "198.18.1.2", "--dry-run", "--pin-dir", lab.pins.path])
            #expect(r.status == 0 && r.err.contains("would be removed (dry run)"), "\(r.err)")
            for args in [["conntrack", "list", "--stale"], ["conntrack", "stats"], ["nat", "list"], ["dataplane", "status"]] {
                #expect(ctctl(args + ["--pin-dir", lab.pins.path]).status == 0, "\(args)")
            }
            #expect(try lab.entries() == before, "nothing was written")
            #expect(!FileManager.default.fileExists(atPath: lab.dir + "/ctctl-calico"), "no lock taken, nothing created")
            let svc = ctctl(["service", "set", "198.19.0.99:53/udp", "--pin-dir", lab.pins.path])
            #expect(svc.status == 64 && svc.err.contains("felix"), "\(svc.err)")
            let load = ctctl(["dataplane", "load", "--pin-dir", lab.pins.path])
            #expect(load.status == 64 && load.err.contains("felix"), "\(load.err)")
            #expect(try lab.entries() == before)
        }
    }

    @Test("without CAP_SYS_ADMIN the maps' BTF cannot be read: ctctl says \"BTF not checked\" and still reads them")
    func btfNotChecked() throws {
        try withCalicoLab("nobtf", version: "head") { lab in
            let r = try runCommand([
                "setpriv", "--inh-caps=-sys_admin", "--bounding-set=-sys_admin", ctctlBinary(), "dataplane", "status", "-o",
                "json",
                "--pin-dir", lab.pins.path,
            ])
            #expect(r.status == 0, "\(r.err)")
            let status = try #require(try JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [String: Any])
            let caveats = status["caveats"] as? [String] ?? []
            #expect(caveats.contains { $0.contains("BTF not checked") }, "\(caveats)")
            let asRoot = ctctl(["dataplane", "status", "-o", "json", "--pin-dir", lab.pins.path])
            #expect(!asRoot.out.contains("BTF not checked") && asRoot.out.contains("BTF checked"), "\(asRoot.out)")
        }
    }
}

/// Calico's key bytes for a test that writes the map directly.
enum CalicoKeyWriter {
    static func write(_ key: inout [UInt8], proto: UInt32, _ a: IPAddress, _ pa: UInt16, _ b: IPAddress, _ pb: UInt16) {
        let v6 = key.count == 40
        withUnsafeBytes(of: proto.littleEndian) { key.replaceSubrange(0..<4, with: $0) }
        let size = v6 ? 16 : 4
        key.replaceSubrange(4..<(4 + size), with: a.bytes)
        key.replaceSubrange((4 + size)..<(4 + 2 * size), with: b.bytes)
        withUnsafeBytes(of: pa.littleEndian) { key.replaceSubrange((4 + 2 * size)..<(6 + 2 * size), with: $0) }
        withUnsafeBytes(of: pb.littleEndian) { key.replaceSubrange((6 + 2 * size)..<(8 + 2 * size), with: $0) }
    }
}

/// An independent decoding of a Calico conntrack entry from bpftool's bytes:
/// "PROTO A:pa-B:pb TYPE LAST_SEEN".
enum BpftoolCalico {
    static func decode(_ k: [UInt8], _ v: [UInt8], v6: Bool) -> String {
        func addr(_ o: Int) -> String {
            v6
                ? IPAddress(family: .v6, hi: be(k, o), lo: be(k, o + 8)).description
                : "\(k[o]).\(k[o + 1]).\(k[o + 2]).\(k[o + 3])"
        }
        func be(_ b: [UInt8], _ o: Int) -> UInt64 { (0..<8).reduce(0) { $0 << 8 | UInt64(b[o + $1]) } }
        func le16(_ o: Int) -> Int { Int(k[o]) | Int(k[o + 1]) << 8 }
        let size = v6 ? 16 : 4
        let proto = k[0] == 17 ? "udp" : k[0] == 6 ? "tcp" : "\(k[0])"
        let lastSeen = (0..<8).reduce(UInt64(0)) { $0 | UInt64(v[8 + $1]) << UInt64(8 * $1) }
        let type = ["NORMAL", "NAT_FWD", "NAT_REV"][Int(v[16])]
        return "\(proto) \(addr(4)):\(le16(4 + 2 * size))-\(addr(4 + size)):\(le16(6 + 2 * size)) \(type) \(lastSeen)"
    }
}
