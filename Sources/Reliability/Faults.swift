import CLibBPF
import ConntrackKit
import Foundation
import NetLab
import TestSupport

/// Faults: heal passes killed at random moments, writers killed mid-write, maps at capacity,
/// and a dataplane reloaded under a running heal.
public struct FaultDrill: Sendable {
    public let ctctl: String
    public let seed: UInt64

    public init(ctctl: String, seed: UInt64) {
        self.ctctl = ctctl
        self.seed = seed
    }

    // MARK: heal passes killed

    public struct KillReport: Sendable {
        public var entries = 0
        public var stalePerFill = 0
        public var iterations = 0
        public var sigkill = 0
        public var sigint = 0
        /// How the killed passes ended (exit status, or 128+signal).
        public var killedExits: [Int32: Int] = [:]
        public var passSeconds = 0.0
        public var maxNextPassSeconds = 0.0
        public var failures: [String] = []
    }

    /// Counts of what is in the map: all entries, stale ones (as heal judges), and NAT halves
    /// whose partner is missing.
    static func census(_ dp: ReferenceDataplane) throws -> (all: Int, stale: Int, halfPairs: Int) {
        var all = 0
        try dp.scan { batch in
            all += batch.count
            return true
        }
        let judge = StaleJudge(try dp.staleRules(holdingLock: false), now: Timestamp.monotonicNow(), graceNs: 0)
        var stale = 0
        var half = 0
        try EntryScan(dp, filter: ConntrackFilter(), judge: judge).run { _, r in
            stale += 1
            if r == .halfPair { half += 1 }
        }
        return (all, stale, half)
    }

    /// Fills a map of `entries` (10% stale) and, `iterations` times: refills it, starts
    /// `ctctl heal --once`, kills it (SIGKILL or SIGINT) at a random moment of its pass,
    /// and checks that nothing that was not stale is gone; then runs a whole pass and checks
    /// that no stale entry and no half pair is left, and that it did not wait for a lock.
    public func killPasses(entries: Int, iterations: Int, log: ((String) -> Void)? = nil) throws -> KillReport {
        var report = KillReport()
        var rng = SeededRandom(seed: seed)
        var o = LoadOptions()
        o.ctSize = UInt32(1 << Int(ceil(log2(Double(entries * 2)))))
        let pins = PinDirectory("/sys/fs/bpf/ctctl-kill-\(getpid())-\(UInt32.random(in: 0..<UInt32.max))")
        try Loader.load(pins, options: o)
        defer { try? Loader.unload(pins) }
        let dp = try ReferenceDataplane(pins, readOnly: false)
        let fill = BenchFill(entries: entries)
        try fill.createServices(dp, lock: WriterLock(pins))
        // how long a whole pass takes here
        let counts = try fill.write(dp, now: Timestamp.monotonicNow())
        report.entries = counts.entries
        report.stalePerFill = counts.stale
        let t0 = Date()
        _ = try runBounded([ctctl, "heal", "--once", "--pin-dir", pins.path], seconds: 120)
        report.passSeconds = Date().timeIntervalSince(t0)
        for i in 0..<iterations {
            try fill.write(dp, now: Timestamp.monotonicNow())
            let before = try FaultDrill.census(dp)
            let signal = rng.chance(50) ? SIGKILL : SIGINT
            if signal == SIGKILL { report.sigkill += 1 } else { report.sigint += 1 }
            let p = Process()
            p.executableURL = URL(fileURLWithPath: ctctl)
            p.arguments = ["heal", "--once", "--pin-dir", pins.path]
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            try p.run()
            usleep(useconds_t(Double(rng.below(1000)) / 1000 * report.passSeconds * 1e6))
            kill(p.processIdentifier, signal)
            p.waitUntilExit()
            let status = p.terminationReason == .uncaughtSignal ? 128 + p.terminationStatus : p.terminationStatus
            report.killedExits[status, default: 0] += 1
            let after = try FaultDrill.census(dp)
            if before.all - before.stale != after.all - after.stale {
                report.failures.append(
                    "iteration \(i) (signal \(signal)): \(before.all - before.stale) entries were not stale, \(after.all - after.stale) are left"
                )
            }
            // the next pass takes the lock at once and leaves nothing stale, no half pair
            let t1 = Date()
            let next = try runBounded([ctctl, "heal", "--once", "--pin-dir", pins.path], seconds: 120)
            let took = Date().timeIntervalSince(t1)
            report.maxNextPassSeconds = max(report.maxNextPassSeconds, took)
            if next.status > 1 { report.failures.append("iteration \(i): the next pass exited \(next.status): \(next.err)") }
            let end = try FaultDrill.census(dp)
            if end.stale != 0 || end.halfPairs != 0 {
                report.failures.append(
                    "iteration \(i): after the next pass \(end.stale) stale entries, \(end.halfPairs) half pairs")
            }
            report.iterations += 1
            if i % 10 == 9 { log?("faults: \(i + 1) of \(iterations) passes killed") }
        }
        return report
    }

    // MARK: writers killed

    public struct WriterReport: Sendable {
        public var kills = 0
        /// Kills after which the epoch was odd: the writer died mid-write.
        public var midWrite = 0
        public var maxNextWriteSeconds = 0.0
        public var failures: [String] = []
    }

    /// `service set` processes killed at random moments; each time the next writer must
    /// succeed at once and leave the epoch even, and a reader must get a view.
    public func killWriters(iterations: Int) throws -> WriterReport {
        var report = WriterReport()
        var rng = SeededRandom(seed: seed &+ 1)
        let pins = PinDirectory("/sys/fs/bpf/ctctl-killw-\(getpid())-\(UInt32.random(in: 0..<UInt32.max))")
        try Loader.load(pins, options: LoadOptions())
        defer { try? Loader.unload(pins) }
        let dp = try ReferenceDataplane(pins, readOnly: true)
        let many = (0..<200).flatMap { ["--backend", "198.18.\(2 + $0 / 250).\($0 % 250 + 1):53"] }
        for i in 0..<iterations {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: ctctl)
            p.arguments =
                ["service", "set", "198.19.0.10:161/udp"] + many.prefix(2 * (1 + rng.below(200))) + ["--pin-dir", pins.path]
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            try p.run()
            usleep(useconds_t(rng.below(30_000)))
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
            report.kills += 1
            if try dp.epoch() % 2 == 1 { report.midWrite += 1 }
            let t0 = Date()
            let next = try runBounded(
                [ctctl, "service", "set", "198.19.0.10:161/udp", "--backend", "198.18.9.1:53", "--pin-dir", pins.path],
                seconds: 60)
            report.maxNextWriteSeconds = max(report.maxNextWriteSeconds, Date().timeIntervalSince(t0))
            if next.status != 0 { report.failures.append("iteration \(i): the next writer exited \(next.status): \(next.err)") }
            if try dp.epoch() % 2 != 0 { report.failures.append("iteration \(i): the epoch is odd after a writer finished") }
            let list = try runBounded([ctctl, "nat", "list", "-o", "json", "--pin-dir", pins.path], seconds: 10)
            if list.status != 0 || !list.out.contains("198.18.9.1") {
                report.failures.append("iteration \(i): nat list after it: \(list.status) \(list.err)")
            }
        }
        return report
    }

    // MARK: maps full

    public struct FullReport: Sendable {
        public var ctSize: UInt32 = 0
        public var ctEntries = 0
        public var commands: [String: Int32] = [:]
        public var statsWarned = false
        public var frontends = 0
        public var setWhenFull: Int32 = 0
        public var setWhenFullMessage = ""
        public var failures: [String] = []
    }

    /// The conntrack map (LRU) at capacity: reading, stats and heal still work, and stats
    /// warns. The frontend map full: `service set` fails clearly and changes nothing.
    public func mapsFull() throws -> FullReport {
        var report = FullReport()
        var o = LoadOptions()
        o.ctSize = 16384
        let pins = PinDirectory("/sys/fs/bpf/ctctl-full-\(getpid())-\(UInt32.random(in: 0..<UInt32.max))")
        try Loader.load(pins, options: o)
        defer { try? Loader.unload(pins) }
        let dp = try ReferenceDataplane(pins, readOnly: false)
        let fill = BenchFill(entries: 40_000)
        try fill.createServices(dp, lock: WriterLock(pins))
        try fill.write(dp, now: Timestamp.monotonicNow())
        report.ctSize = dp.ct.info.maxEntries
        report.ctEntries = try Conntrack.all(dp).count
        for args in [
            ["conntrack", "list", "--count"], ["conntrack", "list", "--stale", "--count"], ["conntrack", "stats"],
            ["heal", "--once"], ["dataplane", "status"],
        ] {
            let r = try runBounded([ctctl] + args + ["--pin-dir", pins.path], seconds: 60)
            report.commands[args.joined(separator: " ")] = r.status
            if r.status > 1 { report.failures.append("\(args) with the conntrack map full: exit \(r.status): \(r.err)") }
            if args == ["conntrack", "stats"] { report.statsWarned = r.out.contains("warning") }
        }
        if !report.statsWarned { report.failures.append("stats did not warn with the conntrack map full") }
        // the frontend map full (another writer filled it)
        var k = ctctl_fe_key()
        var n = 0
        while true {
            withUnsafeMutableBytes(of: &k.addr) { IPAddress("198.20.\(n / 256).\(n % 256)")!.store(to: $0.baseAddress!) }
            k.port = UInt16(53).bigEndian
            k.proto = 17
            k.family = 4
            do { try dp.natFrontend.update(k, ctctl_fe_value(svc_id: 1_000_000, backend_count: 0, flags: 0, pad: 0)) } catch {
                break
            }
            n += 1
        }
        report.frontends = n
        let before = try CLIFuzz.snapshot(pins)
        let r = try runBounded(
            [ctctl, "service", "set", "198.19.99.1:53/udp", "--backend", "198.18.2.2:53", "--pin-dir", pins.path], seconds: 30)
        report.setWhenFull = r.status
        report.setWhenFullMessage = r.err.split(separator: "\n").first.map(String.init) ?? ""
        if r.status != 70 || !r.err.contains("full") {
            report.failures.append("service set with the frontend map full: \(r.status) \(r.err)")
        }
        // the backends it wrote before the frontend failed are taken back; nothing else moved
        let after = try CLIFuzz.snapshot(pins)
        let epochs = (before.filter { $0.hasPrefix("epoch") }, after.filter { $0.hasPrefix("epoch") })
        if before.filter({ !$0.hasPrefix("epoch") }) != after.filter({ !$0.hasPrefix("epoch") }) {
            report.failures.append("a failed service set changed the maps")
        }
        _ = epochs
        return report
    }

    // MARK: reloaded under a running heal

    public struct ReloadReport: Sendable {
        public var reloads = 0
        public var healedAfter: [Double] = []
        public var failures: [String] = []
    }

    /// A running `ctctl heal`; the dataplane is unloaded and loaded again `times` times, the
    /// incident staged in each new one: heal follows and repairs it.
    public func reloadUnderHeal(times: Int) throws -> ReloadReport {
        var report = ReloadReport()
        var o = LoadOptions()
        o.serviceEpoch = false
        let pins = PinDirectory("/sys/fs/bpf/ctctl-reload-\(getpid())-\(UInt32.random(in: 0..<UInt32.max))")
        try Loader.load(pins, options: o)
        defer { try? Loader.unload(pins) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: ctctl)
        p.arguments = ["heal", "--interval", "1h", "--pin-dir", pins.path]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        defer {
            if p.isRunning {
                p.terminate()
                p.waitUntilExit()
            }
        }
        Thread.sleep(forTimeInterval: 0.5)
        let client = Endpoint("198.18.1.2:40000")!
        let vip = Endpoint("198.19.0.10:161")!
        for i in 0..<times {
            try Loader.unload(pins)
            try Loader.load(pins, options: o)
            let dp = try ReferenceDataplane(pins, readOnly: false)
            _ = try TCProgram(dp).run(Packets.udp(client, vip))
            let t0 = Date()
            try Services.set(
                dp, ServiceRef(vip: vip, proto: .udp), backends: [Endpoint("198.18.2.2:1161")!], lock: WriterLock(pins))
            let key = FlowKey(proto: .udp, src: client, dst: vip)
            while try Conntrack.lookup(dp, key) != nil && Date().timeIntervalSince(t0) < 5 { usleep(5000) }
            if try Conntrack.lookup(dp, key) != nil {
                report.failures.append("reload \(i): the incident was not healed in 5 s")
            } else {
                report.healedAfter.append(Date().timeIntervalSince(t0))
            }
            report.reloads += 1
        }
        if !p.isRunning { report.failures.append("the heal exited (\(p.terminationStatus))") }
        return report
    }
}
