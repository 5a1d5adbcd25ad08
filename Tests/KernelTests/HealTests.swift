import CLibBPF
import ConntrackKit
import Foundation
import Logging
import NetLab
import TestSupport
import Testing

/// Every kind of stale entry, staged through the real datapath (epoch re-check off, so
/// nothing repairs itself), next to entries that look stale but are not.
enum StaleFixture {
    static let s1 = "198.19.0.10:161/udp", s2 = "198.19.0.20:80/tcp", s3 = "198.19.0.30:53/udp", s6 = "[2001:db8:ff::10]:53/udp"
    static let sec = UInt64(1_000_000_000)

    /// (proto, key src, key dst, reason) of every stale entry, keys as stored.
    static let stale: [(IPProto, String, String, String)] = [
        (.udp, "198.18.1.2:40000", "198.19.0.10:161", "missed-nat"),
        (.udp, "[2001:db8:1::2]:40000", "[2001:db8:ff::10]:53", "missed-nat"),
        (.tcp, "198.18.1.3:50000", "198.19.0.20:80", "orphan-nat"), (.tcp, "198.18.2.2:8080", "198.18.1.3:50000", "orphan-nat"),
        (.udp, "198.18.1.4:40000", "198.19.0.30:53", "orphan-nat"), (.udp, "198.18.2.2:53", "198.18.1.4:40000", "orphan-nat"),
        (.udp, "198.18.1.5:40000", "198.19.0.10:161", "half-pair"),
        (.udp, "198.18.1.6:40000", "198.18.9.9:53", "expired"),
        (.udp, "198.18.1.7:40000", "198.19.0.10:161", "expired"), (.udp, "198.18.2.2:1161", "198.18.1.7:40000", "expired"),
    ]
    static let fresh: [(IPProto, String, String)] = [
        (.udp, "198.18.1.8:40000", "198.18.9.9:53"),
        (.udp, "198.18.1.9:40000", "198.19.0.10:161"), (.udp, "198.18.2.2:1161", "198.18.1.9:40000"),
        (.udp, "198.18.1.10:40000", "198.19.0.10:161"), (.udp, "198.18.2.2:1161", "198.18.1.10:40000"),
        (.udp, "198.18.1.11:40000", "198.19.0.10:161"),
    ]

    static var options: LoadOptions {
        var o = LoadOptions.epochOff
        o.timeouts = try! Timeouts(parsing: "udp=2s,tcp=4s,tcp-closing=1s")
        return o
    }

    static func send(_ t: TestDataplane, _ p: IPProto, _ s: String, _ d: String) throws {
        #expect(try t.run(Packets.packet(p, Endpoint(s)!, Endpoint(d)!)).verdict == TCRun.ok)
    }

    static func stage(_ t: TestDataplane) throws {
        // missed-nat: the client sends while the service does not exist yet
        try send(t, .udp, "198.18.1.2:40000", "198.19.0.10:161")
        try send(t, .udp, "[2001:db8:1::2]:40000", "[2001:db8:ff::10]:53")
        try t.setService(s1, ["198.18.2.2:1161"])
        try t.setService(s6, ["[2001:db8:2::2]:53"])
        // orphan-nat: service gone (frontend only: Services.delete leaves conntrack alone)
        try t.setService(s2, ["198.18.2.2:8080"])
        try send(t, .tcp, "198.18.1.3:50000", "198.19.0.20:80")
        try t.deleteService(s2)
        // orphan-nat: backend removed
        try t.setService(s3, ["198.18.2.2:53"])
        try send(t, .udp, "198.18.1.4:40000", "198.19.0.30:53")
        try t.setService(s3, ["198.18.3.2:53"])
        // half-pair past the grace period: the reverse half is gone
        try send(t, .udp, "198.18.1.5:40000", "198.19.0.10:161")
        try t.dp.ct.delete(FlowKey(proto: .udp, src: Endpoint("198.18.2.2:1161")!, dst: Endpoint("198.18.1.5:40000")!).raw)
        try t.rewrite(.udp, "198.18.1.5:40000", "198.19.0.10:161") { $0.created_ns -= 11 * sec }
        // expired: a normal entry, and a pair with both halves idle
        try send(t, .udp, "198.18.1.6:40000", "198.18.9.9:53")
        try t.rewrite(.udp, "198.18.1.6:40000", "198.18.9.9:53") { $0.last_seen_ns -= 3 * sec }
        try send(t, .udp, "198.18.1.7:40000", "198.19.0.10:161")
        try t.rewrite(.udp, "198.18.1.7:40000", "198.19.0.10:161") { $0.last_seen_ns -= 3 * sec }
        try t.rewrite(.udp, "198.18.2.2:1161", "198.18.1.7:40000") { $0.last_seen_ns -= 3 * sec }
        // not stale: a normal flow to a non-service, a live pair, a one-way pair whose
        // reverse half is idle, a fresh half pair inside the grace period
        try send(t, .udp, "198.18.1.8:40000", "198.18.9.9:53")
        try send(t, .udp, "198.18.1.9:40000", "198.19.0.10:161")
        try send(t, .udp, "198.18.1.10:40000", "198.19.0.10:161")
        try t.rewrite(.udp, "198.18.2.2:1161", "198.18.1.10:40000") { $0.last_seen_ns -= 3 * sec }
        try send(t, .udp, "198.18.1.11:40000", "198.19.0.10:161")
        try t.dp.ct.delete(FlowKey(proto: .udp, src: Endpoint("198.18.2.2:1161")!, dst: Endpoint("198.18.1.11:40000")!).raw)
        #expect(try t.entries().count == stale.count + fresh.count)
    }

    static func text(_ p: IPProto, _ s: String, _ d: String) -> String { "\(p) \(Endpoint(s)!) -> \(Endpoint(d)!)" }
    static var staleKeys: Set<String> { Set(stale.map { text($0.0, $0.1, $0.2) }) }
    static var freshKeys: Set<String> { Set(fresh.map { text($0.0, $0.1, $0.2) }) }

    static func keys(_ t: TestDataplane) throws -> Set<String> { Set(try t.entries().map { $0.key.description }) }
}

func keyOf(_ json: [String: Any]) -> String {
    let k = json["key"] as! [String: Any]
    let p = IPProto(json["proto"] as! String)!
    let src = Endpoint(address: IPAddress(k["src"] as! String)!, port: UInt16(k["sport"] as! Int))
    let dst = Endpoint(address: IPAddress(k["dst"] as! String)!, port: UInt16(k["dport"] as! Int))
    return FlowKey(proto: p, src: src, dst: dst).description
}

@Suite("stale entries and heal on a real dataplane")
struct HealTests {
    @Test("list --stale shows exactly the stale entries, with their reasons, in every format")
    func listStale() throws {
        try withDataplane("stale", options: StaleFixture.options) { t in
            try StaleFixture.stage(t)
            let r = ctctl(["conntrack", "list", "--stale", "-o", "json", "--pin-dir", t.pins.path])
            #expect(r.status == 0)
            try validateAgainstSchema(r.out)
            let got = Dictionary(uniqueKeysWithValues: try jsonArray(r.out).map { (keyOf($0), $0["reason"] as! String) })
            let want = Dictionary(uniqueKeysWithValues: StaleFixture.stale.map { (StaleFixture.text($0.0, $0.1, $0.2), $0.3) })
            #expect(got == want)
            #expect(r.err == "\(want.count) stale entries shown\n")
            #expect(ctctl(["conntrack", "list", "--stale", "--count", "--pin-dir", t.pins.path]).out == "\(want.count)\n")
            #expect(ctctl(["conntrack", "list", "--stale", "--count", "--proto", "tcp", "--pin-dir", t.pins.path]).out == "2\n")
            #expect(
                ctctl(["conntrack", "list", "--stale", "--count", "--type", "nat-rev", "--pin-dir", t.pins.path]).out == "3\n")
            #expect(ctctl(["conntrack", "list", "--stale", "--count", "--family", "6", "--pin-dir", t.pins.path]).out == "1\n")
            let table = ctctl(["conntrack", "list", "--stale", "--service", StaleFixture.s1, "--pin-dir", t.pins.path]).out
            #expect(table.split(separator: "\n")[0].hasSuffix("REASON"))
            #expect(table.contains("missed-nat") && table.contains("half-pair") && table.contains("expired"))
            #expect(try t.entries().count == StaleFixture.stale.count + StaleFixture.fresh.count, "listing deletes nothing")
        }
    }

    @Test("heal --once --dry-run deletes nothing; heal --once deletes exactly the stale entries and their partners")
    func healOnce() throws {
        try withDataplane("heal", options: StaleFixture.options) { t in
            try StaleFixture.stage(t)
            let before = try StaleFixture.keys(t)
            let dry = ctctl(["heal", "--once", "--dry-run", "--pin-dir", t.pins.path])
            #expect(dry.status == 0)
            #expect(
                dry.err.contains("dry run: 10 entries would be deleted (missed-nat 2, orphan-nat 4, half-pair 1, expired 3)"),
                "\(dry.err)")
            #expect(try StaleFixture.keys(t) == before)

            let log = FileManager.default.temporaryDirectory.appendingPathComponent(
                "ctctl-heal-\(getpid())-\(UInt32.random(in: 0..<UInt32.max)).jsonl"
            ).path
            defer { try? FileManager.default.removeItem(atPath: log) }
            let r = ctctl(["heal", "--once", "-o", "json", "--audit-log", log, "--pin-dir", t.pins.path])
            #expect(r.status == 0, "\(r.err)")
            try validateAgainstSchema(r.out)
            #expect(r.err.contains("healed: 10 entries deleted (missed-nat 2, orphan-nat 4, half-pair 1, expired 3)"), "\(r.err)")
            #expect(try StaleFixture.keys(t) == StaleFixture.freshKeys, "exactly the stale entries are gone")
            let results = try jsonArray(r.out).map { $0["result"] as! String }
            #expect(Set(results).isSubset(of: ["deleted", "gone"]))
            let audit = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n")
            #expect(audit.count == 10, "one audit line per deleted entry, partners included")

            let again = ctctl(["heal", "--once", "--pin-dir", t.pins.path])
            #expect(again.status == 1)
            #expect(again.err.contains("healed: 0 entries deleted"))
        }
    }

    @Test(
        "heal --once on a filled map deletes every stale entry exactly once while the scan goes on (buffers deleted on a thread of their own)",
        arguments: [1, 2])
    func healOnceThroughThePipeline(_ threads: Int) throws {
        try withFilledDataplane("pipeline-\(threads)", entries: 60_000) { t, counts in
            #expect(counts.stale > 4 * Stager.capacity, "enough stale entries for several buffers")
            let r = ctctl(["heal", "--once", "-o", "json", "--threads", "\(threads)", "--pin-dir", t.pins.path])
            try expectHealedExactly(r, stale: counts.stale, pinDir: t.pins.path)
        }
    }

    @Test("during a pass: an entry the datapath re-creates survives; a stuck flow refreshed meanwhile is still healed")
    func raceDuringPass() throws {
        try withDataplane("race", options: StaleFixture.options) { t in
            try StaleFixture.stage(t)
            let expiredKey = ("198.18.1.6:40000", "198.18.9.9:53")
            let stuckKey = ("198.18.1.2:40000", "198.19.0.10:161")
            let stuckBefore = try #require(try t.entry(.udp, stuckKey.0, stuckKey.1))
            var o = HealOptions()
            o.filter.family = .v4
            // one thread: the hook after the first batch then comes after every entry was judged
            o.threads = 1
            let healer = try Healer(.at(t.pins), options: o, auditCommand: "test")
            var hooked = false
            // shouldStop runs after each batch is read and judged, before the deletes are flushed
            let r = try healer.pass(printer: nil) {
                if !hooked {
                    hooked = true
                    _ = try? StaleFixture.send(t, .udp, expiredKey.0, expiredKey.1)  // expired: the datapath writes a new entry
                    _ = try? StaleFixture.send(t, .udp, stuckKey.0, stuckKey.1)  // stuck: the datapath refreshes it
                }
                return false
            }
            #expect(hooked)
            #expect(r.changed == 1, "the re-created entry is kept")
            let survivor = try #require(try t.entry(.udp, expiredKey.0, expiredKey.1))
            #expect(survivor.lastSeenNs > stuckBefore.lastSeenNs)
            #expect(try t.entry(.udp, stuckKey.0, stuckKey.1) == nil, "the refreshed stuck flow is healed")
        }
    }

    @Test("a signal stops a pass between batches, while the datapath is busy, and never leaves half a pair")
    func stopBetweenBatches() throws {
        var o = LoadOptions.epochOff
        o.ctSize = 65536
        try withDataplane("stop", options: o) { t in
            try t.setService(StaleFixture.s1, ["198.18.2.2:1161"])
            let clients = 12000
            for i in 0..<clients {
                try StaleFixture.send(t, .udp, "198.18.\(10 + i / 250).\(i % 250 + 1):\(30000 + i % 7)", "198.19.0.10:161")
            }
            try t.deleteService(StaleFixture.s1)  // every pair is now orphan-nat
            let total = try t.entries().count
            #expect(total == 2 * clients)

            let busy = Thread {
                for i in 0..<2000 {
                    _ = try? StaleFixture.send(t, .udp, "198.18.99.\(i % 250 + 1):\(20000 + i)", "198.18.9.9:53")
                }
            }
            busy.start()
            var batches = 0
            let healer = try Healer(.at(t.pins), options: HealOptions(), auditCommand: "test")
            let r = try healer.pass(printer: nil) {
                batches += 1
                return true  // a signal arrived during the first batch
            }
            #expect(r.stopped)
            #expect(batches == 1)
            #expect(r.deleted > 0 && r.deleted < total)
            #expect(r.deleted % 2 == 0, "pairs go whole")
            // every NAT entry left still has its partner
            let entries = try t.entries()
            let byKey = Dictionary(entries.map { ($0.key, $0) }, uniquingKeysWith: { a, _ in a })
            let nat = entries.filter { $0.type != .normal }
            #expect(nat.allSatisfy { e in byKey[e.partner!].map { $0.createdNs == e.createdNs && $0.partner == e.key } ?? false })
            #expect(nat.count == total - r.deleted)
            while !busy.isFinished { Thread.sleep(forTimeInterval: 0.01) }
        }
    }

    @Test("maps vanishing mid-pass end it with a clear error and no partial pair")
    func mapsVanish() throws {
        let t = try TestDataplane("vanish", options: StaleFixture.options)
        defer {
            for pin in Loader.allPins { unlink(t.pins.pin(pin)) }
            rmdir(t.pins.path)
        }
        try StaleFixture.stage(t)
        let healer = try Healer(.at(t.pins), options: HealOptions(), auditCommand: "test")
        let before = try t.entries().count
        #expect(throws: CtctlError.self) {
            _ = try healer.pass(printer: nil) {
                for pin in Loader.allPins { unlink(t.pins.pin(pin)) }  // someone removed the pins
                return false
            }
        }
        do {
            _ = try Healer(.at(t.pins), options: HealOptions(), auditCommand: "test")
        } catch {
            #expect(error.status == .unavailable)
        }
        // our fds keep the maps alive: nothing was deleted, so no pair is half gone
        #expect(try t.entries().count == before)
        let r = ctctl(["heal", "--once", "--pin-dir", t.pins.path])
        #expect(r.status == 69)
    }

    @Test("the running heal repairs the incident within a second of the service change, logs, and writes metrics")
    func daemon() throws {
        try withDataplane("daemon", options: .epochOff) { t in
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent(
                "ctctl-daemon-\(getpid())-\(UInt32.random(in: 0..<UInt32.max))")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: false)
            defer { try? FileManager.default.removeItem(at: dir) }
            let metrics = dir.appendingPathComponent("ctctl.prom").path
            let logPath = dir.appendingPathComponent("heal.log").path
            FileManager.default.createFile(atPath: logPath, contents: nil)
            let p = Process()
            p.executableURL = URL(fileURLWithPath: ctctlBinary())
            p.arguments = ["heal", "--interval", "1h", "--metrics-file", metrics, "--pin-dir", t.pins.path]
            p.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
            p.standardOutput = FileHandle.nullDevice
            try p.run()
            defer { if p.isRunning { kill(p.processIdentifier, SIGKILL) } }
            func log() -> String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }
            func waitFor(_ what: String, seconds: Double) -> Bool {
                let deadline = Date().addingTimeInterval(seconds)
                while Date() < deadline {
                    if log().contains(what) { return true }
                    Thread.sleep(forTimeInterval: 0.01)
                }
                return false
            }
            #expect(waitFor("trigger=start", seconds: 5), "the first pass ran: \(log())")

            try StaleFixture.send(t, .udp, "198.18.1.2:40000", "198.19.0.10:161")
            let changed = Date()
            try t.setService(StaleFixture.s1, ["198.18.2.2:1161"])
            var healedAfter: Double?
            while Date().timeIntervalSince(changed) < 3 {
                if try t.entry(.udp, "198.18.1.2:40000", "198.19.0.10:161") == nil {
                    healedAfter = Date().timeIntervalSince(changed)
                    break
                }
                Thread.sleep(forTimeInterval: 0.005)
            }
            let after = try #require(healedAfter, "the stuck entry was healed; daemon log:\n\(log())")
            #expect(after < 1.0, "healed \(after)s after the service change")
            #expect(waitFor("trigger=epoch", seconds: 2))
            #expect(log().contains("deleted_missed_nat=1"))
            #expect(FileManager.default.fileExists(atPath: metrics))
            let text = try String(contentsOfFile: metrics, encoding: .utf8)
            #expect(text.contains("ctctl_heal_entries_deleted_total{reason=\"missed-nat\"} 1"))
            #expect(text.contains("ctctl_heal_passes_total{trigger=\"epoch\"} 1"))
            #expect(text.contains("# TYPE ctctl_heal_pass_duration_seconds gauge"))
            #expect(text.contains("ctctl_datapath_events_total{counter=\"ct_miss\"} 1"))
            #expect(!FileManager.default.fileExists(atPath: metrics + ".tmp.\(p.processIdentifier)"))

            p.interrupt()
            let deadline = Date().addingTimeInterval(3)
            while p.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.01) }
            #expect(!p.isRunning)
            #expect(p.terminationStatus == 0)
            #expect(log().contains("msg=\"heal stopped\""))
        }
    }

    @Test("a service change during a pass triggers the next pass")
    func changeDuringPass() throws {
        try withDataplane("during", options: .epochOff) { t in
            try StaleFixture.send(t, .udp, "198.18.1.2:40000", "198.19.0.10:161")
            var config = HealDaemon.Config()
            config.intervalNs = 3_600_000_000_000
            config.pollNs = 10_000_000
            let logs = CapturedStream()
            let handler = LogfmtHandler(stream: logs)
            let daemon = try HealDaemon(.at(t.pins), config: config, logger: Logger(label: "test", factory: { _ in handler }))
            var calls = 0
            let deadline = Date().addingTimeInterval(3)
            let passes = daemon.run {
                calls += 1
                // call 1 is the loop's own check; call 2 comes between batches of the start
                // pass, after it read its view of the services: a writer that does not take
                // ctctl's lock (another control plane) adds the service right there
                if calls == 2 {
                    let svc = ServiceRef(StaleFixture.s1)!
                    var fe = ctctl_fe_key()
                    withUnsafeMutableBytes(of: &fe) { svc.vip.address.store(to: $0.baseAddress!) }
                    fe.port = svc.vip.port.bigEndian
                    fe.proto = svc.proto.number
                    fe.family = 4
                    var be = ctctl_be_value()
                    withUnsafeMutableBytes(of: &be) { IPAddress("198.18.2.2")!.store(to: $0.baseAddress!) }
                    be.port = UInt16(1161).bigEndian
                    be.family = 4
                    try? t.dp.beginServiceWrite()
                    try? t.dp.natBackend.update(ctctl_be_key(svc_id: 77, ordinal: 0), be)
                    try? t.dp.natFrontend.update(fe, ctctl_fe_value(svc_id: 77, backend_count: 1, flags: 0, pad: 0))
                    _ = try? t.dp.endServiceWrite()
                }
                let healed = calls > 2 && (try? t.entry(.udp, "198.18.1.2:40000", "198.19.0.10:161")) == nil
                return healed || Date() > deadline
            }
            #expect(try t.entry(.udp, "198.18.1.2:40000", "198.19.0.10:161") == nil, "healed by the next pass: \(logs.text)")
            #expect(passes == 2)
            #expect(logs.text.contains("trigger=epoch"))
        }
    }

    @Test("bad daemon input fails at start: a metrics directory that does not exist, a bad interval")
    func daemonBadInput() throws {
        try withDataplane("daemonbad") { t in
            let r = ctctl(["heal", "--metrics-file", "/nonexistent-ctctl-dir/ctctl.prom", "--pin-dir", t.pins.path])
            #expect(r.status == 64)
            #expect(r.err.contains("the directory /nonexistent-ctctl-dir does not exist"))
            #expect(ctctl(["heal", "--interval", "1ms", "--pin-dir", t.pins.path]).status == 64)
            #expect(ctctl(["heal", "--once", "--grace", "soon", "--pin-dir", t.pins.path]).status == 64)
        }
    }
}
