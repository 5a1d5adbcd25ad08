import CLibBPF
import Foundation
import Logging
import NetLab
import TestSupport
import Testing

@testable import ConntrackKit

/// Never delete a live flow: one regression test for each way a review found to break
/// that promise, each reproduced on the real datapath.
@Suite("never delete a live flow")
struct LiveFlowTests {
    static let client = Endpoint("198.18.1.3:50000")!
    static let vip = Endpoint("198.19.0.20:80")!
    static let backend = Endpoint("198.18.2.2:8080")!

    @Test("a half-closed TCP connection is live while its open half is: neither listed nor healed")
    func halfClosedTCP() throws {
        var o = LoadOptions()
        o.timeouts = try Timeouts(parsing: "tcp=1h,tcp-closing=3s")
        try withDataplane("halfclosed", options: o) { t in
            let (c, v, b) = (LiveFlowTests.client, LiveFlowTests.vip, LiveFlowTests.backend)
            try t.setService("\(v)/tcp", ["\(b)"])
            #expect(try t.run(Packets.tcp(c, v, flags: Packets.tcpSYN)).verdict == TCRun.ok)
            #expect(try t.run(Packets.tcp(b, c, flags: Packets.tcpSYN | Packets.tcpACK)).verdict == TCRun.ok)
            #expect(try t.run(Packets.tcp(c, v, flags: Packets.tcpFIN | Packets.tcpACK)).verdict == TCRun.ok)
            #expect(try t.run(Packets.tcp(b, c, flags: Packets.tcpACK)).verdict == TCRun.ok)
            // 4.5 s of quiet: the client's half is past its closing timeout, the server's is not
            for (s, d) in [(c, v), (b, c)] {
                try t.rewrite(.tcp, "\(s)", "\(d)") { $0.last_seen_ns -= 4_500_000_000 }
            }
            let list = ctctl(["conntrack", "list", "--stale", "--pin-dir", t.pins.path])
            #expect(list.status == 0)
            #expect(list.out.isEmpty, "a half-closed connection is not stale: \(list.out)")
            let heal = ctctl(["heal", "--once", "--pin-dir", t.pins.path])
            #expect(heal.status == 1, "nothing to heal: \(heal.err)")
            #expect(try t.entries().count == 2)
            // the server's next segment still leaves translated, from the VIP
            let seg = try t.run(Packets.tcp(b, c, flags: Packets.tcpACK))
            #expect(Packets.parse(seg.packet)?.src == v)
        }
    }

    @Test("reading commands work on a read-only bpffs; writing ones say why they cannot")
    func readOnlyBPFFS() throws {
        // a bpffs of our own, made read-only once the dataplane is loaded and staged
        let root = "/tmp/ctctl-robpf-\(getpid())-\(UInt32.random(in: 0..<UInt32.max))"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: false)
        try sh(["mount", "-t", "bpf", "bpf", root])
        defer {
            _ = try? runCommand(["umount", root])
            try? FileManager.default.removeItem(atPath: root)
        }
        let t = try TestDataplane("robpffs", options: StaleFixture.options, root: root)
        try StaleFixture.stage(t)
        try sh(["mount", "-o", "remount,ro", root])
        defer {
            _ = try? runCommand(["mount", "-o", "remount,rw", root])
            t.cleanup()
        }
        for args in [
            ["conntrack", "list", "--stale", "-o", "json"], ["conntrack", "list", "-o", "json"],
            ["heal", "--once", "--dry-run", "-o", "json"],
            ["conntrack", "remove", "udp", "198.19.0.10", "198.18.1.2", "--dry-run", "-o", "json"],
        ] {
            let r = ctctl(args + ["--pin-dir", t.pins.path])
            #expect(r.status == 0, "\(args): \(r.err)")
            #expect(!(try jsonArray(r.out)).isEmpty, "\(args)")
        }
        let stale = try jsonArray(ctctl(["conntrack", "list", "--stale", "-o", "json", "--pin-dir", t.pins.path]).out)
        #expect(Set(stale.map(keyOf)) == StaleFixture.staleKeys)
        for args in [
            ["conntrack", "stats"], ["nat", "list"], ["dataplane", "status"],
            ["conntrack", "get", "udp", "198.18.1.2:40000", "198.19.0.10:161", "--explain"],
        ] {
            let r = ctctl(args + ["--pin-dir", t.pins.path])
            #expect(r.status == 0, "\(args): \(r.err)")
        }
        for args in [["heal", "--once"], ["conntrack", "remove", "udp", "198.19.0.10", "198.18.1.2"]] {
            let r = ctctl(args + ["--pin-dir", t.pins.path])
            #expect(r.status == 77, "\(args): \(r.err)")
            #expect(r.err.contains("read-only filesystem"), "\(r.err)")
        }
        #expect(try t.entries().count == StaleFixture.stale.count + StaleFixture.fresh.count, "nothing changed")
    }

    @Test("the kernel re-checks the rule before it deletes: a judged entry that is no longer stale is kept")
    func ruleRecheckedAtDelete() throws {
        try withDataplane("recheck", options: StaleFixture.options) { t in
            try StaleFixture.stage(t)
            let stale = [
                "198.18.1.2:40000 198.19.0.10:161", "198.18.1.5:40000 198.19.0.10:161", "198.18.1.6:40000 198.18.9.9:53",
            ]
            let judge = StaleJudge(try t.dp.staleRules(holdingLock: false), now: Timestamp.monotonicNow())
            var judged: [(ctctl_ct_key, ctctl_ct_value, StaleReason)] = []
            try EntryScan(t.dp, filter: ConntrackFilter(), judge: judge).run { e, r in
                if stale.contains("\(e.entry.key.src) \(e.entry.key.dst)") { judged.append((e.key.pointee, e.value.pointee, r!)) }
            }
            #expect(judged.map(\.2).sorted { $0.rawValue < $1.rawValue } == [.expired, .halfPair, .missedNAT])
            // between the scan and the delete: the service of the missed-nat entry goes away, the
            // half pair's partner is back, the expired flow sees a packet
            try t.deleteService(StaleFixture.s1)
            let half = judged.first { $0.2 == .halfPair }!
            var rev = half.1
            rev.type = UInt8(CTCTL_CT_NAT_REV.rawValue)
            rev.partner = half.0
            try t.dp.ct.update(half.1.partner, rev)
            try t.rewrite(.udp, "198.18.1.6:40000", "198.18.9.9:53") { $0.last_seen_ns = Timestamp.monotonicNow() }

            var outcomes: [StaleReason: DeleteOutcome] = [:]
            let lock = try t.lock()
            let d = try t.dp.remover(lock: lock) { _, r, o in outcomes[r!] = o }
            for (k, v, r) in judged {
                try withUnsafePointer(to: k) { k in
                    try withUnsafePointer(to: v) { v in try d.add(ReferenceEntry(k, v), reason: r) }
                }
            }
            try d.flush()
            #expect(outcomes == [.missedNAT: .noLongerStale, .halfPair: .noLongerStale, .expired: .noLongerStale])
            #expect(d.counts.deleted == 0)
            for pair in stale {
                let p = pair.split(separator: " ").map(String.init)
                #expect(try t.entry(.udp, p[0], p[1]) != nil, "\(pair) kept")
            }
        }
    }

    @Test("a frontend with more backends than the limit: dropped and counted, flagged by nat list, its flows never judged")
    func overBackendLimit() throws {
        try withDataplane("overlimit", options: .epochOff) { t in
            // another writer (not ctctl, which refuses) gives a frontend 300 backends
            let svc = ServiceRef("198.19.0.40:53/udp")!
            let n = 300
            let backend = { (i: Int) in Endpoint("198.18.\(200 + i / 250).\(i % 250 + 1):53")! }
            for i in 0..<n { try t.dp.natBackend.update(ctctl_be_key(svc_id: 900, ordinal: UInt32(i)), backend(i).backendValue) }
            var fe = ctctl_fe_key()
            withUnsafeMutableBytes(of: &fe) { svc.vip.address.store(to: $0.baseAddress!) }
            fe.port = svc.vip.port.bigEndian
            fe.proto = svc.proto.number
            fe.family = 4
            try t.dp.natFrontend.update(fe, ctctl_fe_value(svc_id: 900, backend_count: UInt32(n), flags: 0, pad: 0))
            // live flows to ordinals below and above 256, written by an older datapath, and a
            // normal entry to the VIP
            let now = Timestamp.monotonicNow()
            for (i, ordinal) in [10, 280].enumerated() {
                let p = BenchFill.natPair(
                    svc, client: Endpoint("198.18.1.\(i + 2):40000")!, backend: backend(ordinal), created: now, lastSeen: now,
                    epoch: 2)
                try t.dp.ct.update(p.fwdKey, p.fwd)
                try t.dp.ct.update(p.revKey, p.rev)
            }
            #expect(try t.run(Packets.udp(Endpoint("198.18.1.9:40000")!, svc.vip)).verdict == TCRun.shot)
            #expect(try t.counter("drop_too_many_backends") == 1)
            #expect(try t.entries().count == 4, "the dropped packet created nothing")

            let stale = ctctl(["conntrack", "list", "--stale", "--pin-dir", t.pins.path])
            #expect(stale.status == 0)
            #expect(stale.out.isEmpty, "flows of a service over the limit are never judged: \(stale.out)")
            #expect(ctctl(["heal", "--once", "--pin-dir", t.pins.path]).status == 1)
            #expect(try t.entries().count == 4)
            let nat = ctctl(["nat", "list", "--pin-dir", t.pins.path])
            #expect(nat.out.contains("OVER LIMIT: 300 backends"), "\(nat.out)")
            #expect(nat.err.contains("1 OVER the limit of 256 backends"))
            let json =
                try JSONSerialization.jsonObject(
                    with: Data(ctctl(["nat", "list", "-o", "json", "--pin-dir", t.pins.path]).out.utf8)) as! [[String: Any]]
            #expect(json.first?["over_limit"] as? Bool == true && json.first?["backend_count"] as? Int == 300)
        }
    }

    @Test("a reader that does not hold the lock never keeps a view of the services that mixes two states")
    func consistentServiceView() throws {
        try withDataplane("seqcount") { t in
            let ref = ServiceRef("198.19.0.10:161/udp")!
            let (a, b, c) = (Endpoint("198.18.2.2:1161")!, Endpoint("198.18.3.2:1161")!, Endpoint("198.18.4.2:1161")!)
            func state(_ v: ReferenceServiceView) -> [Bool] {
                [a, b, c].map { v.isBackend($0.address, $0.port, of: ref.vip.address, ref.vip.port, ref.proto.number) }
            }
            try t.setService("\(ref)", ["\(a)", "\(b)"])
            let before = [true, true, false]
            let after = [false, false, true]
            for (from, to) in [([a, b], [c]), ([c], [a, b])] {
                try t.setService("\(ref)", from.map(\.description))
                var midWrite: Result<ReferenceServiceView, CtctlError>?
                try Services.set(t.dp, ref, backends: to, lock: t.lock()) {
                    midWrite = Result { () throws(CtctlError) in try ReferenceServiceView.read(t.dp, waitNs: 50_000_000) }
                }
                switch try #require(midWrite) {
                case .success(let v):
                    #expect([before, after].contains(state(v)), "a view read mid-write is one whole state: \(state(v))")
                case .failure(let e):
                    #expect(e.message.contains("are being written"), "\(e.message)")
                }
                #expect(state(try ReferenceServiceView.read(t.dp)) == (to == [c] ? after : before))
            }
            // a writer that died mid-write leaves the epoch odd: readers wait, then read the maps
            // as the datapath sees them; the next writer makes it even again
            try t.dp.beginServiceWrite()
            #expect(try t.dp.epoch() % 2 == 1)
            #expect(state(try ReferenceServiceView.read(t.dp, waitNs: 50_000_000)) == before)
            try t.setService("\(ref)", ["\(c)"])
            #expect(try t.dp.epoch() % 2 == 0)
        }
    }

    @Test("two CPUs creating the same flow: the loser writes nothing and uses the winner's pair", arguments: Plan.all)
    func pairRaceLoser(_ p: Plan) throws {
        // which backend the hash picks for this flow (a normal build, the same hash)
        let picked = try withDataplane("race-pick") { t in
            try t.setService(p.service, [p.backend1, p.backend2])
            return try #require(Packets.parse(try t.run(p.packet(p.client, p.vip)).packet)).dst
        }
        let winner = picked == p.ep(p.backend1) ? p.ep(p.backend2) : p.ep(p.backend1)
        // the test build's first lookup always misses: the packet meets, on its insert, the
        // pair another CPU wrote meanwhile (to the other backend)
        try withDataplane("race", testHooks: true) { t in
            try t.setService(p.service, [p.backend1, p.backend2])
            let now = Timestamp.monotonicNow()
            let pair = BenchFill.natPair(
                ServiceRef(p.service)!, client: p.ep(p.client), backend: winner, created: now, lastSeen: now,
                epoch: try t.dp.epoch())
            try t.dp.ct.update(pair.fwdKey, pair.fwd)
            try t.dp.ct.update(pair.revKey, pair.rev)
            let pkt = p.packet(p.client, p.vip)
            try expectFrame(try t.run(pkt), src: p.ep(p.client), dst: winner, payloadFrom: pkt)
            #expect(try t.counter("pair_race_lost") == 1)
            let entries = try t.entries()
            #expect(entries.count == 2, "the loser wrote no half of its own: \(entries.map(\.key))")
            let fwd = try #require(try t.entry(p.proto, p.client, p.vip))
            let rev = try #require(try t.entry(p.proto, "\(winner)", p.client))
            #expect(fwd.nat == winner && fwd.partner == rev.key && rev.partner == fwd.key && fwd.createdNs == rev.createdNs)
            #expect(fwd.packets == 11, "the loser's packet is accounted to the winner's entry")
        }
    }

    @Test("the watching heal follows a dataplane that is unloaded and loaded again, and heals the new one")
    func daemonFollowsReload() throws {
        let t = try TestDataplane("reload", options: .epochOff)
        defer { t.cleanup() }
        var config = HealDaemon.Config()
        config.intervalNs = 3_600_000_000_000
        config.pollNs = 10_000_000
        let logs = LockedStream()
        let daemon = try HealDaemon(
            .at(t.pins), config: config, logger: Logger(label: "test", factory: { _ in LogfmtHandler(stream: logs) }))
        let stop = Flag()
        let handed = Unchecked(daemon)  // runs on that thread only
        let thread = Thread { handed.value.run { stop.isSet } }
        thread.start()
        defer {
            stop.set()
            while !thread.isFinished { Thread.sleep(forTimeInterval: 0.01) }
        }
        #expect(logs.waitFor("trigger=start", seconds: 5), "\(logs.text)")

        try Loader.unload(t.pins)
        try Loader.load(t.pins, options: .epochOff)
        let fresh = try ReferenceDataplane(t.pins, readOnly: false)
        // the incident, in the new dataplane
        let client = Endpoint("198.18.1.2:40000")!
        let vip = Endpoint("198.19.0.10:161")!
        #expect(try fresh.runTC(Packets.udp(client, vip)).verdict == TCRun.ok)
        try Services.set(fresh, ServiceRef("\(vip)/udp")!, backends: [Endpoint("198.18.2.2:1161")!], lock: WriterLock(t.pins))
        let key = FlowKey(proto: .udp, src: client, dst: vip)
        let deadline = Date().addingTimeInterval(3)
        while try Conntrack.lookup(fresh, key) != nil && Date() < deadline { Thread.sleep(forTimeInterval: 0.01) }
        #expect(try Conntrack.lookup(fresh, key) == nil, "the stuck entry in the reloaded dataplane was healed: \(logs.text)")
        #expect(logs.text.contains("dataplane reloaded") || logs.text.contains("dataplane is back"), "\(logs.text)")
    }

    @Test("a writer that waited for the lock while the dataplane was reloaded writes nothing and says so")
    func writerAcrossReload() throws {
        let t = try TestDataplane("lockwait")
        defer { t.cleanup() }
        var held: WriterLock? = try t.lock()
        let result = Box<CommandResult>()
        let writer = Thread {
            result.value = ctctl([
                "service", "set", "198.19.0.10:161/udp", "--backend", "198.18.2.2:1161", "--pin-dir", t.pins.path,
            ])
        }
        writer.start()
        Thread.sleep(forTimeInterval: 0.3)  // the writer has opened the maps and waits for the lock
        // unloaded and loaded again while the lock is held (by a heal pass, say)
        for pin in Loader.allPins { unlink(t.pins.pin(pin)) }
        rmdir(t.pins.path)
        try Loader.load(t.pins, options: LoadOptions())
        held = nil
        let deadline = Date().addingTimeInterval(10)
        while !writer.isFinished && Date() < deadline { Thread.sleep(forTimeInterval: 0.01) }
        let r = try #require(result.value)
        #expect(r.status == 69, "\(r.err)")
        #expect(r.err.contains("loaded again") && r.err.contains("run the command again"), "\(r.err)")
        #expect(try Services.list(try ReferenceDataplane(t.pins, readOnly: true)).isEmpty, "the new dataplane has no service")
        _ = held
    }

    @Test("a stopped pass stops within one batch: no ledger resolved, no fallback scan, nothing judged after the stop")
    func stopWithinOneBatch() throws {
        var o = LoadOptions.epochOff
        o.ctSize = 65536
        try withDataplane("stopledger", options: o) { t in
            try t.setService("198.19.0.10:161/udp", ["198.18.2.2:1161"])
            // three batches of forward halves whose reverse half is gone, past the grace period
            let old = Timestamp.monotonicNow() - 60_000_000_000
            let svc = ServiceRef("198.19.0.10:161/udp")!
            for i in 0..<20_000 {
                let p = BenchFill.natPair(
                    svc, client: Endpoint("198.18.\(10 + i / 250).\(i % 250 + 1):40000")!, backend: Endpoint("198.18.2.2:1161")!,
                    created: old, lastSeen: Timestamp.monotonicNow(), epoch: try t.dp.epoch())
                try t.dp.ct.update(p.fwdKey, p.fwd)
            }
            let judge = StaleJudge(try t.dp.staleRules(holdingLock: false), now: Timestamp.monotonicNow())
            // a ledger this small overflows: without the stop, a second pass would find them all
            let full = EntryScan(t.dp, filter: ConntrackFilter(), judge: judge, ledgerBits: 6)
            var all = 0
            try full.run { _, _ in all += 1 }
            #expect(all == 20_000)

            let scan = EntryScan(t.dp, filter: ConntrackFilter(), judge: judge, ledgerBits: 6)
            var checks = 0
            var emitted = 0
            scan.shouldStop = {
                checks += 1
                return true  // a signal arrived during the first batch
            }
            try scan.run { _, _ in emitted += 1 }
            #expect(scan.stopped)
            #expect(checks == 1, "asked once, after the first batch, and stopped there")
            #expect(scan.totals.scanned <= 8192, "one batch read")
            #expect(emitted == 0, "half pairs are named only once the whole map is read")
        }
    }

    @Test(
        "a reverse half lost alone is restored by the next forward packet after a pause; replies stay translated",
        arguments: Plan.all)
    func reverseRestored(_ p: Plan) throws {
        try withDataplane("revrestore") { t in
            try t.setService(p.service, [p.backend1])
            _ = try t.run(p.packet(p.client, p.vip))
            let pair = try #require(try t.entry(p.proto, p.client, p.vip))
            // the flow pauses (a poll interval): the next forward packet checks its reverse half
            func pause() throws { try t.rewrite(p.proto, p.client, p.vip) { $0.last_seen_ns -= 20_000_000 } }
            // evicted (LRU) or deleted: the reverse half alone
            #expect(try t.dp.ct.delete(pair.partner!.raw))
            try pause()
            _ = try t.run(p.packet(p.client, p.vip))
            let rev = try #require(try t.entry(p.proto, p.backend1, p.client), "restored on the next forward packet")
            #expect(rev.type == .natReverse && rev.partner == pair.key && rev.createdNs == pair.createdNs, "the same pair")
            #expect(try t.counter("reverse_restored") == 1)
            let reply = p.packet(p.backend1, p.client)
            try expectFrame(try t.run(reply), src: p.ep(p.vip), dst: p.ep(p.client), payloadFrom: reply)

            // lost, and a reply came meanwhile: it left untranslated and made a normal entry on
            // the reverse key; the next forward packet replaces that with the reverse half
            #expect(try t.dp.ct.delete(pair.partner!.raw))
            _ = try t.run(reply)
            #expect(try t.entry(p.proto, p.backend1, p.client)?.type == .normal)
            try pause()
            _ = try t.run(p.packet(p.client, p.vip))
            #expect(try t.entry(p.proto, p.backend1, p.client)?.type == .natReverse)
            try expectFrame(try t.run(reply), src: p.ep(p.vip), dst: p.ep(p.client), payloadFrom: reply)
            #expect(try t.counter("reverse_restored") == 2)
            #expect(try t.entries().count == 2)

            // a busy flow (no pause) checks on every 8th packet
            #expect(try t.dp.ct.delete(pair.partner!.raw))
            for _ in 0..<8 { _ = try t.run(p.packet(p.client, p.vip)) }
            #expect(try t.counter("reverse_restored") == 3)
        }
    }

    @Test("a TCP connection that reuses a closed connection's ports is tracked anew, not in its closing state")
    func tcpPortsReused() throws {
        var o = LoadOptions()
        o.timeouts = try Timeouts(parsing: "tcp=1h,tcp-closing=2s")
        try withDataplane("tcpreuse", options: o) { t in
            let (c, v, b) = (LiveFlowTests.client, LiveFlowTests.vip, LiveFlowTests.backend)
            try t.setService("\(v)/tcp", ["\(b)"])
            // a connection that closed: both sides sent FIN
            for (s, d, f) in [
                (c, v, Packets.tcpSYN), (b, c, Packets.tcpSYN | Packets.tcpACK), (c, v, Packets.tcpFIN | Packets.tcpACK),
                (b, c, Packets.tcpFIN | Packets.tcpACK), (c, v, Packets.tcpACK),
            ] {
                #expect(try t.run(Packets.tcp(s, d, flags: f)).verdict == TCRun.ok)
            }
            let old = try #require(try t.entry(.tcp, "\(c)", "\(v)"))
            #expect(old.flagNames.contains("fin"))
            // the client's next connection gets the same ports (it was not the one in TIME_WAIT)
            #expect(try t.run(Packets.tcp(c, v, flags: Packets.tcpSYN)).verdict == TCRun.ok)
            let fwd = try #require(try t.entry(.tcp, "\(c)", "\(v)"))
            let rev = try #require(try t.entry(.tcp, "\(b)", "\(c)"))
            #expect(fwd.createdNs > old.createdNs, "a new pair")
            #expect(fwd.flagNames.isEmpty && rev.flagNames.isEmpty, "not closing: \(fwd.flagNames) \(rev.flagNames)")
            #expect(rev.partner == fwd.key && fwd.partner == rev.key && rev.createdNs == fwd.createdNs)
            #expect(try t.counter("tcp_reopened") == 1)
            // the new connection half-closes and pauses past the closing timeout: still live
            #expect(try t.run(Packets.tcp(b, c, flags: Packets.tcpSYN | Packets.tcpACK)).verdict == TCRun.ok)
            #expect(try t.run(Packets.tcp(c, v, flags: Packets.tcpFIN | Packets.tcpACK)).verdict == TCRun.ok)
            #expect(try t.run(Packets.tcp(b, c, flags: Packets.tcpACK)).verdict == TCRun.ok)
            for (s, d) in [(c, v), (b, c)] { try t.rewrite(.tcp, "\(s)", "\(d)") { $0.last_seen_ns -= 3_000_000_000 } }
            #expect(ctctl(["conntrack", "list", "--stale", "--count", "--pin-dir", t.pins.path]).out == "0\n")
            let seg = try t.run(Packets.tcp(b, c, flags: Packets.tcpACK))
            #expect(Packets.parse(seg.packet)?.src == v, "the server's answer after the pause is translated")
        }
    }
}

/// A stop flag shared with a thread.
final class Flag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    var isSet: Bool { lock.withLock { value } }
    func set() { lock.withLock { value = true } }
}

/// A value handed to another thread that alone uses it from then on.
struct Unchecked<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}

/// A value handed back by a thread.
final class Box<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: T?
    var value: T? {
        get { lock.withLock { stored } }
        set { lock.withLock { stored = newValue } }
    }
}

/// Log output captured from another thread.
final class LockedStream: TextStream, @unchecked Sendable {
    private let lock = NSLock()
    private var bytes: [UInt8] = []
    func write(_ s: String) { lock.withLock { bytes.append(contentsOf: s.utf8) } }
    func write(bytes b: UnsafeRawBufferPointer) { lock.withLock { bytes.append(contentsOf: b) } }
    func flush() {}
    var text: String { lock.withLock { String(decoding: bytes, as: UTF8.self) } }

    func waitFor(_ what: String, seconds: Double) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if text.contains(what) { return true }
            Thread.sleep(forTimeInterval: 0.01)
        }
        return false
    }
}
