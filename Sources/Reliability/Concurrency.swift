import CLibBPF
import ConntrackKit
import Foundation
import NetLab
import TestSupport

/// Concurrency: many ctctl processes at once on one dataplane — `service set` and
/// `service delete` (each worker on a service of its own, so what it last wrote is known),
/// `conntrack remove` and `heal --once` — with no traffic running. Checks: every process
/// ends (no deadlock) within the lock's bound, and with a success code; no update is lost
/// (each worker's service is what its last successful write made it); every entry that
/// left the map is in an audit log; no half pair is left; the epoch is even.
public struct ConcurrencyDrill: Sendable {
    public struct Report: Sendable {
        public var workers = 0
        public var processes = 0
        public var byCommand: [String: [Int32: Int]] = [:]
        public var maxSeconds = 0.0
        public var entriesBefore = 0
        public var entriesAfter = 0
        public var auditLines = 0
        public var lostUpdates = 0
        public var halfPairsLeft = 0
        public var failures: [String] = []
        public var seconds = 0.0
    }

    public let ctctl: String
    public let workers: Int
    public let opsPerWorker: Int
    public let seed: UInt64

    public init(ctctl: String, workers: Int, opsPerWorker: Int, seed: UInt64) {
        self.ctctl = ctctl
        self.workers = workers
        self.opsPerWorker = opsPerWorker
        self.seed = seed
    }

    static func vip(_ w: Int) -> Endpoint { Endpoint("198.19.1.\(w + 1):53")! }
    static func service(_ w: Int) -> ServiceRef { ServiceRef(vip: vip(w), proto: .udp) }
    static func backend(_ i: Int) -> Endpoint { Endpoint("198.18.2.\(2 + i):53")! }
    static func client(_ w: Int, _ c: Int) -> Endpoint { Endpoint("198.18.\(10 + w).\(c + 1):40000")! }

    public func run(sandbox: String) throws -> Report {
        var report = Report()
        report.workers = workers
        var o = LoadOptions()
        o.serviceEpoch = false
        let pins = PinDirectory("/sys/fs/bpf/ctctl-conc-\(getpid())-\(UInt32.random(in: 0..<UInt32.max))")
        try Loader.load(pins, options: o)
        defer { try? Loader.unload(pins) }
        let dp = try ReferenceDataplane(pins, readOnly: false)
        let prog = try TCProgram(dp)
        // stale and live entries for everyone: a normal entry to each VIP before its
        // service exists (missed-nat), then NAT pairs to it
        for w in 0..<workers {
            for c in 0..<20 { _ = try prog.run(Packets.udp(ConcurrencyDrill.client(w, c), ConcurrencyDrill.vip(w))) }
            try Services.set(
                dp, ConcurrencyDrill.service(w), backends: [ConcurrencyDrill.backend(0), ConcurrencyDrill.backend(1)],
                lock: WriterLock(pins))
            for c in 20..<60 { _ = try prog.run(Packets.udp(ConcurrencyDrill.client(w, c), ConcurrencyDrill.vip(w))) }
        }
        report.entriesBefore = try Conntrack.all(dp).count

        let results = Results()
        let start = Date()
        var threads: [Thread] = []
        for w in 0..<workers {
            let t = Thread { [self] in
                var rng = SeededRandom(seed: seed &+ UInt64(w))
                let log = "\(sandbox)/audit-\(w).jsonl"
                var last: [Endpoint]? = [ConcurrencyDrill.backend(0), ConcurrencyDrill.backend(1)]  // nil: deleted
                let svc = ConcurrencyDrill.service(w).description
                for _ in 0..<opsPerWorker {
                    let args: [String]
                    var wrote: [Endpoint]?? = .none
                    switch rng.below(4) {
                    case 0:
                        let bs = (0..<4).filter { _ in rng.chance(50) }.map(ConcurrencyDrill.backend)
                        args = ["service", "set", svc] + bs.flatMap { ["--backend", $0.description] }
                        wrote = .some(bs)
                    case 1:
                        args = ["service", "delete", svc, "--audit-log", log]
                        wrote = .some(nil)
                    case 2:
                        args = [
                            "conntrack", "remove", "udp", ConcurrencyDrill.vip(w).address.description,
                            "198.18.\(10 + w).\(1 + rng.below(60))", "--audit-log", log,
                        ]
                    default:
                        args = ["heal", "--once", "--audit-log", log]
                    }
                    let t0 = Date()
                    let r =
                        (try? runBounded([ctctl] + args + ["--pin-dir", pins.path], seconds: 60))
                        ?? CommandResult(status: -1, out: "", err: "did not start")
                    let took = Date().timeIntervalSince(t0)
                    // set and delete: a delete of a service that is not there exits 1
                    if r.status == 0, case .some(let w) = wrote { last = w }
                    if r.status == 1 && args[1] == "delete" { last = nil }
                    results.add(
                        args[0] + " " + args[1], status: r.status, seconds: took, error: r.status > 1 ? "\(args): \(r.err)" : nil)
                }
                results.final(w, last)
            }
            threads.append(t)
        }
        for t in threads { t.start() }
        for t in threads { while !t.isFinished { Thread.sleep(forTimeInterval: 0.01) } }
        report.seconds = Date().timeIntervalSince(start)
        (report.processes, report.byCommand, report.maxSeconds, report.failures) = results.summary()

        // no lost update: each worker's service is what its last successful write made it
        let services = try Services.list(dp)
        for w in 0..<workers {
            let got = services.first { $0.ref == ConcurrencyDrill.service(w) }.map { Set($0.liveBackends) }
            let want = results.finals[w]!.map(Set.init)
            if got != want {
                report.lostUpdates += 1
                report.failures.append(
                    "worker \(w): service is \(got.map { "\($0)" } ?? "absent"), last write made it \(want.map { "\($0)" } ?? "absent")"
                )
            }
        }
        let ids = services.map(\.id)
        if Set(ids).count != ids.count { report.failures.append("two services share an id: \(ids)") }
        if try dp.epoch() % 2 != 0 { report.failures.append("the epoch is odd after every writer finished") }
        // every entry that left is in an audit log (deleted entries and their partners)
        let entries = try Conntrack.all(dp)
        report.entriesAfter = entries.count
        for w in 0..<workers {
            let text = (try? String(contentsOfFile: "\(sandbox)/audit-\(w).jsonl", encoding: .utf8)) ?? ""
            report.auditLines += text.split(separator: "\n").count
        }
        if report.entriesBefore - report.entriesAfter != report.auditLines {
            report.failures.append(
                "\(report.entriesBefore - report.entriesAfter) entries left the map, \(report.auditLines) audit lines")
        }
        // no half pair left
        let byKey = Dictionary(entries.map { ($0.key, $0) }, uniquingKeysWith: { a, _ in a })
        report.halfPairsLeft =
            entries.filter { e in
                e.type != .normal && (byKey[e.partner!].map { $0.createdNs != e.createdNs || $0.partner != e.key } ?? true)
            }.count
        if report.halfPairsLeft > 0 { report.failures.append("\(report.halfPairsLeft) half pairs left") }
        return report
    }
}

/// What the workers report, from their threads.
final class Results: @unchecked Sendable {
    private let lock = NSLock()
    private var byCommand: [String: [Int32: Int]] = [:]
    private var processes = 0
    private var maxSeconds = 0.0
    private var failures: [String] = []
    private(set) var finals: [Int: [Endpoint]?] = [:]

    func add(_ command: String, status: Int32, seconds: Double, error: String?) {
        lock.withLock {
            processes += 1
            byCommand[command, default: [:]][status, default: 0] += 1
            maxSeconds = max(maxSeconds, seconds)
            if let error, failures.count < 20 { failures.append(error) }
        }
    }

    func final(_ w: Int, _ backends: [Endpoint]?) { lock.withLock { finals[w] = backends } }

    func summary() -> (Int, [String: [Int32: Int]], Double, [String]) {
        lock.withLock { (processes, byCommand, maxSeconds, failures) }
    }
}
