import CLibBPF
import ConntrackKit
import Foundation
import NetLab
import TestSupport
import Testing

@Suite("conntrack list, get, remove, stats on a real dataplane")
struct ConntrackTests {
    func list(_ t: TestDataplane, _ args: [String]) throws -> [[String: Any]] {
        let r = ctctl(["conntrack", "list", "-o", "json", "--pin-dir", t.pins.path] + args)
        #expect(r.status == 0, "\(args): \(r.err)")
        return try jsonArray(r.out)
    }

    func flows(_ entries: [[String: Any]]) -> Set<String> {
        Set(entries.map { "\($0["proto"]!) \($0["src"]!):\($0["sport"]!)>\($0["dst"]!):\($0["dport"]!) \($0["type"]!)" })
    }

    @Test("list shows every entry; the JSON validates against the published schema")
    func listAll() throws {
        try withDataplane("list") { t in
            try Fixture.stage(t)
            let r = ctctl(["conntrack", "list", "-o", "json", "--pin-dir", t.pins.path])
            #expect(r.status == 0)
            #expect(r.err == "\(Fixture.total) entries shown\n")
            try validateAgainstSchema(r.out)
            let all = try jsonArray(r.out)
            #expect(all.count == Fixture.total)
            let fwd = try #require(all.first { $0["type"] as? String == "nat-fwd" && $0["sport"] as? Int == 50000 })
            #expect(fwd["proto"] as? String == "tcp")
            #expect(fwd["src"] as? String == "198.18.1.3")
            #expect(fwd["dst"] as? String == "198.19.0.20")
            #expect(fwd["nat_ip"] as? String == "198.18.2.2")
            #expect(fwd["nat_port"] as? Int == 8080)
            #expect(fwd["service"] as? String == "198.19.0.20:80/tcp")
            #expect(fwd["packets"] as? Int == 1)
            let rev = try #require(all.first { $0["type"] as? String == "nat-rev" && $0["sport"] as? Int == 50000 })
            #expect(rev["src"] as? String == "198.18.1.3", "a reverse half shows its flow's original direction")
            #expect(rev["dst"] as? String == "198.19.0.20")
            #expect((rev["key"] as? [String: Any])?["src"] as? String == "198.18.2.2", "the stored key is backend -> client")
            let v6 = try #require(all.first { $0["family"] as? Int == 6 && $0["type"] as? String == "normal" })
            #expect(v6["dst"] as? String == "2001:db8:9::9")
            #expect(v6["nat_ip"] is NSNull && v6["service"] is NSNull && v6["partner"] is NSNull)
            #expect(ctctl(["conntrack", "list", "--count", "--pin-dir", t.pins.path]).out == "\(Fixture.total)\n")
        }
    }

    @Test(
        "each filter, and filters combined",
        arguments: [
            (["--proto", "tcp"], 3), (["--proto", "6"], 3), (["--src", "198.18.1.2"], 6), (["--src", "198.18.1.0/24"], 8),
            (["--dst", "198.19.0.10"], 4), (["--dst", "198.19.0.0/16"], 6), (["--dport", "161"], 4), (["--sport", "40000"], 4),
            (["--type", "nat-rev"], 4), (["--type", "normal"], 3), (["--service", "198.19.0.10:161/udp"], 4),
            (["--service", "[2001:db8:ff::10]:53/udp"], 2), (["--family", "6"], 3), (["--family", "4"], 8),
            (["--proto", "udp", "--family", "4", "--type", "normal"], 1), (["--src", "2001:db8:1::/48", "--dport", "53"], 3),
            (["--dst", "198.19.0.10", "--sport", "40001", "--type", "nat-fwd"], 1), (["--proto", "17", "--dport", "80"], 0),
        ])
    func filters(_ args: [String], _ expected: Int) throws {
        try withDataplane("filters") { t in
            try Fixture.stage(t)
            let got = try list(t, args)
            #expect(got.count == expected, "\(args): \(flows(got))")
            #expect(ctctl(["conntrack", "list", "--count", "--pin-dir", t.pins.path] + args).out == "\(expected)\n")
        }
    }

    @Test("--service also shows the normal entries addressed to the VIP (the stuck ones)")
    func serviceFilterShowsStuck() throws {
        try withDataplane("stuck", options: .epochOff) { t in
            _ = try t.run(Packets.udp(Endpoint("198.18.1.2:40000")!, Endpoint("198.19.0.10:161")!))
            try t.setService(Fixture.s1, ["198.18.2.2:1161"])
            let got = try list(t, ["--service", Fixture.s1])
            #expect(flows(got) == ["udp 198.18.1.2:40000>198.19.0.10:161 normal"])
        }
    }

    @Test("table and wide output")
    func tables() throws {
        try withDataplane("table") { t in
            try Fixture.stage(t)
            let table = ctctl(["conntrack", "list", "--proto", "tcp", "--pin-dir", t.pins.path])
            let lines = table.out.split(separator: "\n")
            #expect(lines.count == 4)
            #expect(lines[0].hasPrefix("PROTO  SOURCE"))
            #expect(
                lines.contains {
                    $0.contains("198.18.1.3:50000") && $0.contains("198.19.0.20:80") && $0.contains("198.18.2.2:8080")
                        && $0.contains("nat-fwd")
                })
            let wide = ctctl(["conntrack", "list", "--type", "nat-fwd", "--proto", "tcp", "-o", "wide", "--pin-dir", t.pins.path])
            #expect(wide.out.contains("198.19.0.20:80/tcp"))
            #expect(wide.out.contains("tcp 198.18.2.2:8080 -> 198.18.1.3:50000"), "the partner key")
            #expect(wide.out.split(separator: "\n")[0].contains("PARTNER"))
        }
    }

    @Test("get finds a flow by key: both NAT halves; a normal flow from its reply side")
    func get() throws {
        try withDataplane("get") { t in
            try Fixture.stage(t)
            let nat = ctctl([
                "conntrack", "get", "udp", "198.18.1.2:40000", "198.19.0.10:161", "-o", "json", "--pin-dir", t.pins.path,
            ])
            #expect(nat.status == 0)
            try validateAgainstSchema(nat.out)
            #expect(Set(try jsonArray(nat.out).map { $0["type"] as! String }) == ["nat-fwd", "nat-rev"])
            let reply = ctctl([
                "conntrack", "get", "udp", "198.18.9.9:53", "198.18.1.2:40002", "-o", "json", "--pin-dir", t.pins.path,
            ])
            #expect(try jsonArray(reply.out).map { $0["type"] as! String } == ["normal"])
            let none = ctctl(["conntrack", "get", "udp", "198.18.1.2:1", "198.18.1.9:2", "--pin-dir", t.pins.path])
            #expect(none.status == 0)
            #expect(none.err.contains("0 entries"))
        }
    }

    @Test("get --explain says where a flow goes and why a stuck entry is stale")
    func explain() throws {
        try withDataplane("explain", options: .epochOff) { t in
            try t.setService(Fixture.s1, ["198.18.2.2:1161"])
            _ = try t.run(Packets.udp(Endpoint("198.18.1.2:40001")!, Endpoint("198.19.0.10:161")!))
            let ok = ctctl([
                "conntrack", "get", "udp", "198.18.1.2:40001", "198.19.0.10:161", "--explain", "--pin-dir", t.pins.path,
            ])
            #expect(ok.out.contains("Next packet: translated to 198.18.2.2:1161, a current backend."))
            #expect(ok.out.contains("Not stale."))

            try t.deleteService(Fixture.s1)
            _ = try t.run(Packets.udp(Endpoint("198.18.1.2:40000")!, Endpoint("198.19.0.10:161")!))
            try t.setService(Fixture.s1, ["198.18.2.2:1161"])
            let stuck = ctctl([
                "conntrack", "get", "udp", "198.18.1.2:40000", "198.19.0.10:161", "--explain", "--pin-dir", t.pins.path,
            ])
            #expect(stuck.out.contains("normal entry"))
            #expect(stuck.out.contains("Next packet: NOT translated"))
            #expect(stuck.out.contains("Stale: missed-nat."))
            #expect(stuck.out.contains("ctctl conntrack remove udp 198.19.0.10 198.18.1.2 --dport 161 --sport 40000"))
        }
    }

    @Test("remove deletes exactly the matched flows and their partners (checked with bpftool)")
    func remove() throws {
        try withDataplane("remove") { t in
            try Fixture.stage(t)
            let before = try bpftoolKeys(t.pins)
            #expect(before.count == Fixture.total)
            let r = ctctl(["conntrack", "remove", "udp", "198.19.0.10", "198.18.1.2", "--pin-dir", t.pins.path])
            #expect(r.status == 0)
            #expect(r.err.contains("4 entries removed"))
            #expect(r.out.contains("deleted, with partner"))
            let gone: Set<String> = [
                keyText(.udp, "198.18.1.2:40000", "198.19.0.10:161"), keyText(.udp, "198.18.1.2:40001", "198.19.0.10:161"),
                keyText(.udp, "198.18.2.2:1161", "198.18.1.2:40000"), keyText(.udp, "198.18.3.2:1161", "198.18.1.2:40000"),
                keyText(.udp, "198.18.2.2:1161", "198.18.1.2:40001"), keyText(.udp, "198.18.3.2:1161", "198.18.1.2:40001"),
            ]
            let after = try bpftoolKeys(t.pins)
            #expect(before.subtracting(after).count == 4)
            #expect(before.subtracting(after).isSubset(of: gone))
            #expect(after.isSubset(of: before), "nothing else changed")
            #expect(
                try t.entries().allSatisfy {
                    !($0.key.src.address.description == "198.18.1.2"
                        && $0.originalDestination.address.description == "198.19.0.10")
                })
        }
    }

    @Test("remove narrows by port on each side; the reverse half matches by its own addresses")
    func removeNarrowed() throws {
        try withDataplane("narrow") { t in
            try Fixture.stage(t)
            let r = ctctl([
                "conntrack", "remove", "udp", "198.19.0.10", "198.18.1.2", "--dport", "161", "--sport", "40001", "-o", "json",
                "--pin-dir", t.pins.path,
            ])
            #expect(r.status == 0)
            try validateAgainstSchema(r.out)
            let out = try jsonArray(r.out)
            #expect(out.count == 1)
            #expect(out[0]["result"] as? String == "deleted" && out[0]["with_partner"] as? Bool == true)
            #expect(try t.entries().count == Fixture.total - 2)
            // the reverse key backend -> client: the pair given as <dst>=client <src>=backend
            let rev = ctctl([
                "conntrack", "remove", "tcp", "198.18.1.3", "198.18.2.2", "--dport", "50000", "--pin-dir", t.pins.path,
            ])
            #expect(rev.status == 0)
            #expect(try t.entries().count == Fixture.total - 4)
            #expect(try t.entry(.tcp, "198.18.1.3:50000", "198.19.0.20:80") == nil, "its forward half went with it")
        }
    }

    @Test("remove: --dry-run deletes nothing; nothing matched exits 1; IPv6")
    func removeDryRunAndMiss() throws {
        try withDataplane("dryrun") { t in
            try Fixture.stage(t)
            let dry = ctctl([
                "conntrack", "remove", "udp", "2001:db8:ff::10", "2001:db8:1::2", "--dry-run", "--pin-dir", t.pins.path,
            ])
            #expect(dry.status == 0)
            #expect(dry.out.contains("would delete, with partner"))
            #expect(dry.err.contains("2 entries would be removed (dry run), NAT partners included"))
            #expect(try t.entries().count == Fixture.total)
            let miss = ctctl(["conntrack", "remove", "udp", "198.19.0.99", "198.18.1.2", "--pin-dir", t.pins.path])
            #expect(miss.status == 1)
            #expect(miss.err.contains("0 entries removed"))
            let v6 = ctctl(["conntrack", "remove", "udp", "2001:db8:ff::10", "2001:db8:1::2", "--pin-dir", t.pins.path])
            #expect(v6.status == 0)
            #expect(try t.entries().count == Fixture.total - 2)
        }
    }

    @Test("remove writes one audit line per deleted entry, partners included")
    func audit() throws {
        try withDataplane("audit") { t in
            try Fixture.stage(t)
            let log = FileManager.default.temporaryDirectory.appendingPathComponent(
                "ctctl-audit-\(getpid())-\(UInt32.random(in: 0..<UInt32.max)).jsonl"
            ).path
            defer { try? FileManager.default.removeItem(atPath: log) }
            let r = ctctl([
                "conntrack", "remove", "tcp", "198.19.0.20", "198.18.1.3", "--audit-log", log, "--pin-dir", t.pins.path,
            ])
            #expect(r.status == 0)
            let lines = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n")
            #expect(lines.count == 2)
            let objs = try lines.map { try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]) }
            #expect(objs.map { $0["deleted_as"] as? String } == ["entry", "partner"])
            #expect(
                objs.allSatisfy {
                    $0["command"] as? String == "conntrack remove" && $0["reason"] as? String == "requested"
                        && ($0["time"] as? String)?.hasSuffix("Z") == true
                })
            let bad = ctctl([
                "conntrack", "remove", "udp", "198.19.0.10", "198.18.1.2", "--audit-log", "/nonexistent-dir/x.jsonl", "--pin-dir",
                t.pins.path,
            ])
            #expect(bad.status == 64)
            #expect(try t.entries().count == Fixture.total - 2, "a bad audit path stops before any delete")
        }
    }

    @Test("a delete re-checks identity in the kernel: re-created entries stay, refreshed ones go, evicted ones are not an error")
    func compareAndDelete() throws {
        try withDataplane("cad") { t in
            try Fixture.stage(t)
            // read three NAT forward entries as a scan would
            let buf = UnsafeMutablePointer<ctctl_ct_key>.allocate(capacity: 3)
            let vals = UnsafeMutablePointer<ctctl_ct_value>.allocate(capacity: 3)
            defer {
                buf.deallocate()
                vals.deallocate()
            }
            let picks = [
                ("198.18.1.2:40000", "198.19.0.10:161"), ("198.18.1.2:40001", "198.19.0.10:161"),
                ("198.18.1.3:50000", "198.19.0.20:80"),
            ]
            for (i, (s, d)) in picks.enumerated() {
                let proto: IPProto = i == 2 ? .tcp : .udp
                buf[i] = FlowKey(proto: proto, src: Endpoint(s)!, dst: Endpoint(d)!).raw
                vals[i] = try #require(try t.dp.ct.lookup(buf[i], as: ctctl_ct_value.self))
            }
            // between the read and the delete: the datapath re-creates the first (new created
            // time), refreshes the second (a stuck flow still sending), and LRU evicts the third
            try t.rewrite(.udp, picks[0].0, picks[0].1) { $0.created_ns += 1 }
            try t.rewrite(.udp, picks[1].0, picks[1].1) {
                $0.last_seen_ns += 1_000
                $0.packets += 10
            }
            try t.dp.ct.delete(buf[2])

            var outcomes: [DeleteOutcome] = []
            let lock = try t.lock()
            let d = try t.dp.remover(lock: lock) { _, _, o in outcomes.append(o) }
            for i in 0..<3 { try d.add(ReferenceEntry(buf + i, vals + i), reason: nil) }
            try d.flush()
            #expect(outcomes == [.changed, .deleted(partner: true), .gone])
            #expect(try t.entry(.udp, picks[0].0, picks[0].1) != nil, "the re-created entry survives")
            #expect(try t.entry(.udp, picks[1].0, picks[1].1) == nil, "the refreshed entry is still deleted")
            #expect(
                try t.entry(.udp, "198.18.2.2:1161", "198.18.1.2:40001") == nil
                    && (try t.entry(.udp, "198.18.3.2:1161", "198.18.1.2:40001")) == nil)
            #expect(d.counts.deleted == 2)
        }
    }

    @Test("service delete removes the frontend, the backends and the NAT entries of that service only")
    func serviceDelete() throws {
        try withDataplane("svcdel", options: .epochOff) { t in
            try Fixture.stage(t)
            _ = try t.run(Packets.udp(Endpoint("198.18.1.9:7")!, Endpoint("198.19.0.30:161")!))  // normal, to a future VIP
            let epoch = try t.dp.epoch()
            let r = ctctl(["service", "delete", Fixture.s1, "--pin-dir", t.pins.path])
            #expect(r.status == 0, "\(r.err)")
            #expect(r.err.contains("4 entries removed"))
            #expect(try t.dp.epoch() == epoch + 2, "odd while written, even after")
            #expect(try Services.get(t.dp, ServiceRef(Fixture.s1)!) == nil)
            #expect(try Services.list(t.dp).count == 2)
            #expect(try t.entries().count == Fixture.total + 1 - 4)
            #expect(try t.entries().allSatisfy { $0.service != ServiceRef(Fixture.s1) })
            let again = ctctl(["service", "delete", Fixture.s1, "--pin-dir", t.pins.path])
            #expect(again.status == 1)
            #expect(again.err.contains("no service 198.19.0.10:161/udp"))
        }
    }

    @Test("service set grows and shrinks; nat list shows backends and flags a missing one")
    func servicesAndNatList() throws {
        try withDataplane("natlist") { t in
            #expect(ctctl(["service", "set", Fixture.s1, "--backend", "198.18.2.2:1161", "--pin-dir", t.pins.path]).status == 0)
            #expect(
                ctctl([
                    "service", "set", Fixture.s1, "--backend", "198.18.2.2:1161", "--backend", "198.18.3.2:1161", "--backend",
                    "198.18.4.2:1161", "--pin-dir", t.pins.path,
                ]).out.contains("replaced service"))
            #expect(ctctl(["service", "set", Fixture.s1, "--backend", "198.18.4.2:1161", "--pin-dir", t.pins.path]).status == 0)
            let svc = try #require(try Services.get(t.dp, ServiceRef(Fixture.s1)!))
            #expect(svc.backends == [Endpoint("198.18.4.2:1161")])
            #expect(try Status(t).backendCount == 1, "shrinking removed the ordinals past the end")

            #expect(
                ctctl([
                    "service", "set", Fixture.s6, "--backend", "[2001:db8:2::2]:53", "--backend", "[2001:db8:3::2]:53",
                    "--pin-dir", t.pins.path,
                ]).status == 0)
            let six = try #require(try Services.get(t.dp, ServiceRef(Fixture.s6)!))
            try t.dp.natBackend.delete(ctctl_be_key(svc_id: six.id, ordinal: 1))
            let table = ctctl(["nat", "list", "--pin-dir", t.pins.path])
            #expect(table.out.contains("[2001:db8:2::2]:53, MISSING(ordinal 1)"))
            #expect(table.err.contains("1 backend MISSING"))
            let json = try jsonArray(ctctl(["nat", "list", "-o", "json", "--pin-dir", t.pins.path]).out)
            #expect(json.count == 2)
            #expect(
                (json.first { $0["service"] as? String == Fixture.s6 }?["backends"] as? [[String: Any]])?.last?["missing"]
                    as? Bool == true)
        }
    }

    struct Status {
        let backendCount: Int
        init(_ t: TestDataplane) throws {
            backendCount = try t.dp.natBackend.info.maxEntries > 0 ? (try ConntrackStats.gather(.at(t.pins))).backends : 0
        }
    }

    @Test("stats counts by type, protocol and family; JSON too")
    func stats() throws {
        try withDataplane("stats") { t in
            try Fixture.stage(t)
            let r = ctctl(["conntrack", "stats", "-o", "json", "--pin-dir", t.pins.path])
            #expect(r.status == 0)
            let s = try #require(try JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [String: Any])
            #expect(s["entries"] as? Int == Fixture.total)
            #expect(s["by_type"] as? [String: Int] == ["normal": 3, "nat-fwd": 4, "nat-rev": 4])
            #expect(s["by_proto"] as? [String: Int] == ["udp": 8, "tcp": 3, "other": 0])
            #expect(s["by_family"] as? [String: Int] == ["ipv4": 8, "ipv6": 3])
            #expect(s["frontends"] as? Int == 3 && s["backends"] as? Int == 4)
            #expect(s["near_full"] as? Bool == false)
            #expect((s["counters"] as? [String: Int])?["nat_pair_created"] == 4)
            #expect(
                ctctl(["conntrack", "stats", "--pin-dir", t.pins.path]).out.contains("by type:    normal 3, nat-fwd 4, nat-rev 4")
            )
        }
    }

    @Test("stats warns when the LRU map is close to full")
    func nearFull() throws {
        var o = LoadOptions()
        o.ctSize = 1024
        try withDataplane("full", options: o) { t in
            var n = 0
            for i in 0..<1000 {
                let run = try t.run(Packets.udp(Endpoint("198.18.1.\(i % 250 + 1):\(20000 + i)")!, Endpoint("198.18.9.9:53")!))
                if run.verdict == TCRun.ok { n += 1 }
            }
            let count = try t.entries().count
            let r = ctctl(["conntrack", "stats", "--pin-dir", t.pins.path])
            if count > 819 {
                #expect(r.out.contains("evicts live flows silently"))
            } else {
                Issue.record("the LRU map held only \(count) of 1024 entries after 1000 inserts; cannot check the warning")
            }
        }
    }
}
