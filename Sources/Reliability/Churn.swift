import CLibBPF
import ConntrackKit
import Foundation
import Glibc
import NetLab

/// Churn: real traffic between namespaces through the reference dataplane while `heal` runs
/// passes back to back, and services change under it.
///
/// Clients on several addresses open new flows at a steady rate (`FlowGenerator`, open
/// loop), and half-closed TCP connections (the client sends FIN, the server answers after a
/// pause longer than the closing timeout: the client's half is past its timeout, the
/// server's is not). Stable services never change; on two others, backends are added and
/// removed and the service is deleted and made again during the run. A flow is **broken by
/// ctctl** if it failed (no reply, no connection, a lost datagram, no answer after FIN)
/// although its service and its backend existed throughout its life (`unstable`): the drill
/// fails on the first.
public final class ChurnDrill: @unchecked Sendable {
    public struct Config: Sendable {
        public var seconds = 60.0
        public var flowsPerSecond = 2100
        public var clientAddresses = 4
        public var halfClosed = 40
        public var seed: UInt64 = 1
        public var ctSize: UInt32 = 1 << 18
        public init() {}
    }

    public struct KindStats: Sendable {
        public var started = 0
        public var ok = 0
        public var failed = 0
        /// failed while its service or backend changed (not counted against ctctl)
        public var failedExcused = 0
        /// time from the first socket call to the answer, of the flows delivered
        public var deliveredNanos: UInt64 = 0
        public var slowest: UInt64 = 0
    }

    public struct Report: Sendable {
        public var seconds = 0.0
        public var kinds: [String: KindStats] = [:]
        public var flowsPerSecond = 0.0
        /// flows started in each second of the run
        public var startedPerSecond: [Int] = []
        public var passes = 0
        public var deletedByReason: [String: Int] = [:]
        public var keptChanged = 0
        public var keptNoLongerStale = 0
        public var serviceChanges = 0
        public var peakEntries = 0
        public var ctSize: UInt32 = 0
        public var brokenByCtctl = 0
        public var failures: [String] = []
        public var clientAddresses = 0
        /// The datapath's counters at the end of the run (name: value), non-zero ones.
        public var counters: [String: UInt64] = [:]
        /// The backends' kernel TCP counters that say a test server, not the datapath, lost a
        /// connection (TcpExt ListenOverflows, ListenDrops), summed over both backends.
        public var serverDrops: [String: UInt64] = [:]
        /// Flows the generator could not start (no socket or no local port: errno -> count).
        public var notStarted: [Int32: Int] = [:]
    }

    let config: Config
    let lock = NSLock()
    var report = Report()
    var stop = false
    /// service -> its live backends over time: (time of a write, the backends it left; none
    /// when the service was deleted or left with no backend). Before the first write a
    /// service has all its backends.
    var timeline: [String: [(at: UInt64, backends: [Endpoint])]] = [:]
    var flowID = 0
    /// when the traffic started (monotonic ns)
    var trafficStart: UInt64 = 0

    static let udpStable = ServiceRef("198.19.0.10:161/udp")!
    static let tcpStable = ServiceRef("198.19.0.20:80/tcp")!
    static let oneWay = ServiceRef("198.19.0.50:514/udp")!
    static let udpChurn = ServiceRef("198.19.0.30:53/udp")!
    static let tcpChurn = ServiceRef("198.19.0.40:81/tcp")!
    static let backendHosts = ["198.18.2.2", "198.18.3.2"]

    static func backends(_ port: UInt16) -> [Endpoint] {
        backendHosts.map { Endpoint(address: IPAddress($0)!, port: port) }
    }

    static let ports: [String: UInt16] = [
        udpStable.description: 1161, tcpStable.description: 8080, oneWay.description: 1514, udpChurn.description: 5353,
        tcpChurn.description: 8081,
    ]

    public init(_ config: Config) { self.config = config }

    var stopping: Bool { lock.withLock { stop } }

    func now() -> UInt64 { Timestamp.monotonicNow() }

    /// Runs `write` on `svc` and puts the service's state before and after it on its
    /// timeline (the state after read back from the maps).
    func change(_ svc: ServiceRef, _ dp: ReferenceDataplane, _ write: () -> Void) {
        let live = { (try? Services.get(dp, svc))?.liveBackends ?? [] }
        let before = live()
        lock.withLock { timeline[svc.description, default: []].append((now(), before)) }
        write()
        let after = live()
        lock.withLock { timeline[svc.description, default: []].append((now(), after)) }
    }

    /// Could the service itself have failed a flow that lived in [from, to]? Yes if it was
    /// written during the flow's life (give or take 100 ms: a write and the packet that sees
    /// it), or if the state it was in all that time had no backend, or not the flow's
    /// backend (a service left with no backend drops new flows until its next write).
    func unstable(_ svc: ServiceRef, backend: Endpoint?, _ from: UInt64, _ to: UInt64) -> Bool {
        lock.withLock {
            let writes = timeline[svc.description] ?? []
            let grace: UInt64 = 100_000_000
            if writes.contains(where: { $0.at + grace >= from && $0.at <= to + grace }) { return true }
            guard let state = writes.last(where: { $0.at < from })?.backends else { return false }
            return state.isEmpty || backend.map { !state.contains($0) } == true
        }
    }

    func record(_ kind: String, ok: Bool, svc: ServiceRef, backend: Endpoint?, from: UInt64, detail: @autoclosure () -> String) {
        let to = now()
        let excused = !ok && unstable(svc, backend: backend, from, to)
        lock.withLock {
            report.kinds[kind, default: KindStats()].started += 1
            let second = Int((from &- trafficStart) / 1_000_000_000)
            if from >= trafficStart && second < report.startedPerSecond.count { report.startedPerSecond[second] += 1 }
            if ok {
                report.kinds[kind]!.ok += 1
                report.kinds[kind]!.deliveredNanos += to - from
                report.kinds[kind]!.slowest = max(report.kinds[kind]!.slowest, to - from)
            } else if excused {
                report.kinds[kind]!.failed += 1
                report.kinds[kind]!.failedExcused += 1
            } else {
                report.kinds[kind]!.failed += 1
                report.brokenByCtctl += 1
                if report.failures.count < 20 { report.failures.append("\(kind) to \(svc): \(detail())") }
            }
        }
    }

    func notStarted(_ e: Int32) { lock.withLock { report.notStarted[e, default: 0] += 1 } }

    func nextID() -> Int {
        lock.withLock {
            flowID += 1
            return flowID
        }
    }

    // MARK: servers (in the backend namespaces)

    func startServers(_ topo: Topology, _ threads: inout [Thread]) {
        for (i, ns) in [topo.backend1, topo.backend2].enumerated() {
            let id = "be\(i + 1)"
            for port in [UInt16(1161), 5353, 1514] {
                let t = Thread { [self] in
                    guard (try? Net.enter(ns)) != nil else { return }
                    let fd = Net.socket(Int32(SOCK_DGRAM.rawValue), bind: Endpoint(address: IPAddress("0.0.0.0")!, port: port))
                    guard fd >= 0 else { return }
                    defer { close(fd) }
                    Net.timeout(fd, seconds: 0.2)
                    var buf = [UInt8](repeating: 0, count: 512)
                    var ss = sockaddr_storage()
                    while !stopping {
                        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
                        let n = withUnsafeMutablePointer(to: &ss) { p in
                            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(fd, &buf, buf.count, 0, $0, &len) }
                        }
                        guard n > 0 else { continue }
                        if port == 1514 {
                            sinkReceived(String(decoding: buf[..<n], as: UTF8.self))
                            continue
                        }
                        let reply = Array("ok \(id)".utf8)
                        _ = withUnsafePointer(to: &ss) { p in
                            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                                reply.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, 0, sa, len) }
                            }
                        }
                    }
                }
                threads.append(t)
            }
            for port in [UInt16(8080), 8081] {
                let t = Thread { [self] in
                    guard (try? Net.enter(ns)) != nil else { return }
                    let fd = Net.socket(Int32(SOCK_STREAM.rawValue), bind: Endpoint(address: IPAddress("0.0.0.0")!, port: port))
                    guard fd >= 0, listen(fd, 512) == 0 else { return }
                    defer { close(fd) }
                    Net.timeout(fd, seconds: 0.2)
                    while !stopping {
                        let c = accept(fd, nil, nil)
                        guard c >= 0 else { continue }
                        Net.timeout(c, seconds: 10)
                        guard let line = Net.readLine(c) else {
                            close(c)
                            continue
                        }
                        if line.hasPrefix("HALF ") {
                            // the client half-closes; answer after a pause, on a thread of its own
                            let pause = Double(line.split(separator: " ")[1]) ?? 3
                            let h = Thread {
                                _ = Net.readToEnd(c)  // until the client's FIN
                                Thread.sleep(forTimeInterval: pause)
                                _ = Net.sendAll(c, Array("done \(id)\n".utf8))
                                close(c)
                            }
                            h.start()
                        } else {
                            _ = Net.sendAll(c, Array("ok \(id)\n".utf8))
                            close(c)
                        }
                    }
                }
                threads.append(t)
            }
        }
    }

    // one-way flows: flow id -> datagrams the sink got
    var sink: [Int: Int] = [:]

    func sinkCount(_ id: Int) -> Int { lock.withLock { sink[id] ?? 0 } }

    func sinkReceived(_ text: String) {
        let parts = text.split(separator: " ")
        guard parts.count == 3, parts[0] == "oneway", let id = Int(parts[1]) else { return }
        lock.withLock { sink[id, default: 0] += 1 }
    }

    // MARK: clients (in the client namespace)

    /// The client sends FIN at once; the server answers after `pause` seconds.
    func halfClosedFlow(_ svc: ServiceRef, from addr: IPAddress, pause: Double) {
        let start = now()
        let fd = Net.socket(Int32(SOCK_STREAM.rawValue), bind: Endpoint(address: addr, port: 0))
        guard fd >= 0 else { return notStarted(errno) }
        defer { close(fd) }
        Net.timeout(fd, seconds: pause + 5)
        guard Net.connect(fd, svc.vip), Net.sendAll(fd, Array("HALF \(pause)\n".utf8)), shutdown(fd, Int32(SHUT_WR)) == 0 else {
            let e = errno
            return record(
                "tcp half-closed", ok: false, svc: svc, backend: nil, from: start,
                detail: "from \(addr):\(Net.localPort(fd)): connect: errno \(e)")
        }
        let reply = Net.readToEnd(fd).map { String(decoding: $0, as: UTF8.self) } ?? "errno \(errno)"
        record(
            "tcp half-closed", ok: reply.hasPrefix("done"), svc: svc,
            backend: ChurnDrill.backends(ChurnDrill.ports[svc.description]!)[reply.contains("be1") ? 0 : 1], from: start,
            detail: "from \(addr):\(Net.localPort(fd)), after FIN and a \(pause)s pause: \(reply)")
    }

    // MARK: running

    /// `ctctl`: unused here (heal runs in-process, back to back); the pins are made fresh.
    public func run(log: ((String) -> Void)? = nil) throws -> Report {
        let topo = Unchecked(try Topology("churn"))
        defer { topo.value.cleanup() }
        let clients = (0..<config.clientAddresses).map { IPAddress("198.18.1.\(2 + $0)")! }
        for a in clients.dropFirst() { try sh(["ip", "-n", topo.value.client, "addr", "add", "\(a)/24", "dev", "eth0"]) }
        var o = LoadOptions()
        o.serviceEpoch = false  // heal does all the repairing
        o.ctSize = config.ctSize
        o.timeouts = try Timeouts(parsing: "udp=4s,tcp=60s,tcp-closing=2s,other=10s")
        let pins = PinDirectory("/sys/fs/bpf/ctctl-churn-\(getpid())-\(UInt32.random(in: 0..<UInt32.max))")
        try Loader.load(pins, options: o)
        defer {
            if let dp = try? ReferenceDataplane(pins, readOnly: false), let l = try? WriterLock(pins) {
                for a in (try? Attachments.list(dp)) ?? [] {
                    _ = try? Attachments.detach(dp, ifname: a.ifname, netns: a.netns, lock: l)
                }
            }
            try? Loader.unload(pins)
        }
        let dp = try ReferenceDataplane(pins, readOnly: false)
        for ifname in ["nc", "nb1", "nb2"] {
            try Attachments.attach(dp, ifname: ifname, netns: topo.value.node, lock: WriterLock(pins))
        }
        for svc in [ChurnDrill.udpStable, ChurnDrill.tcpStable, ChurnDrill.oneWay, ChurnDrill.udpChurn, ChurnDrill.tcpChurn] {
            try Services.set(dp, svc, backends: ChurnDrill.backends(ChurnDrill.ports[svc.description]!), lock: WriterLock(pins))
        }
        report.ctSize = config.ctSize
        report.clientAddresses = clients.count

        var threads: [Thread] = []
        startServers(topo.value, &threads)
        for t in threads { t.start() }
        Thread.sleep(forTimeInterval: 0.3)

        let started = Date()
        lock.withLock {
            trafficStart = now()
            report.startedPerSecond = Array(repeating: 0, count: Int(config.seconds))
        }
        let endAt = trafficStart + UInt64(config.seconds * 1e9)
        var workers: [Thread] = []
        // flows at a steady rate, open loop: one generator per client address
        let perAddress = Double(config.flowsPerSecond) / Double(clients.count)
        for (i, addr) in clients.enumerated() {
            workers.append(
                Thread { [self] in
                    guard (try? Net.enter(topo.value.client)) != nil else { return }
                    let g = FlowGenerator(self, from: addr)
                    g.run(rate: perAddress, seed: config.seed &+ UInt64(i), until: endAt)
                })
        }
        // half-closed connections, spread over the run
        let halfEvery = config.seconds / Double(max(config.halfClosed, 1))
        workers.append(
            Thread { [self] in
                var launched: [Thread] = []
                for i in 0..<config.halfClosed where now() < endAt {
                    let addr = clients[i % clients.count]
                    let h = Thread { [self] in
                        guard (try? Net.enter(topo.value.client)) != nil else { return }
                        halfClosedFlow(ChurnDrill.tcpStable, from: addr, pause: 3)
                    }
                    h.start()
                    launched.append(h)
                    Thread.sleep(forTimeInterval: halfEvery)
                }
                while launched.contains(where: { !$0.isFinished }) { Thread.sleep(forTimeInterval: 0.05) }
            })
        // services change under the traffic
        workers.append(
            Thread { [self] in
                var rng = SeededRandom(seed: config.seed &+ 99)
                while now() < endAt && !stopping {
                    Thread.sleep(forTimeInterval: 1.5)
                    let svc = rng.chance(50) ? ChurnDrill.udpChurn : ChurnDrill.tcpChurn
                    let all = ChurnDrill.backends(ChurnDrill.ports[svc.description]!)
                    guard let lockHeld = try? WriterLock(pins) else { continue }
                    let current = (try? Services.get(dp, svc))?.liveBackends ?? []
                    switch rng.below(3) {
                    case 0:
                        // one backend removed (or added back); removing the last one leaves
                        // the service with none, dropping new flows until its next write
                        let b = rng.pick(all)
                        let next = current.contains(b) ? current.filter { $0 != b } : current + [b]
                        change(svc, dp) { _ = try? Services.set(dp, svc, backends: next, lock: lockHeld) }
                    case 1:
                        // deleted, and made again half a second later
                        change(svc, dp) { _ = try? Services.delete(dp, svc, lock: lockHeld) }
                        Thread.sleep(forTimeInterval: 0.5)
                        change(svc, dp) { _ = try? Services.set(dp, svc, backends: all, lock: lockHeld) }
                    default:
                        change(svc, dp) { _ = try? Services.set(dp, svc, backends: all, lock: lockHeld) }
                    }
                    lock.withLock { report.serviceChanges += 1 }
                }
            })
        // heal, back to back (20 ms apart: flock is not fair, and a pass that locks again at
        // once would keep the service writers out)
        let audit = "/tmp/ctctl-churn-audit-\(getpid()).jsonl"
        defer { unlink(audit) }
        workers.append(
            Thread { [self] in
                var o = HealOptions()
                o.auditLog = audit
                guard let healer = try? Healer(.at(pins), options: o, auditCommand: "heal") else { return }
                while now() < endAt + 1_000_000_000 && !stopping {
                    defer { usleep(20_000) }
                    guard let r = try? healer.pass(printer: nil) else { continue }
                    lock.withLock {
                        report.passes += 1
                        for (k, v) in r.deletedByReason { report.deletedByReason[k.rawValue, default: 0] += v }
                        report.keptChanged += r.changed
                        report.keptNoLongerStale += r.noLongerStale
                        report.peakEntries = max(report.peakEntries, r.scanned)
                    }
                }
            })
        for t in workers { t.start() }
        var lastLog = Date()
        while workers.contains(where: { !$0.isFinished }) && Date().timeIntervalSince(started) < config.seconds + 30 {
            Thread.sleep(forTimeInterval: 0.2)
            if Date().timeIntervalSince(lastLog) > 10 {
                lastLog = Date()
                log?(
                    lock.withLock {
                        "churn: \(Int(Date().timeIntervalSince(started)))s, \(report.kinds.values.reduce(0) { $0 + $1.started }) flows, \(report.passes) passes"
                    })
            }
        }
        lock.withLock { stop = true }
        for t in threads + workers { while !t.isFinished { Thread.sleep(forTimeInterval: 0.01) } }
        lock.withLock {
            report.seconds = Date().timeIntervalSince(started)
            let flows = report.kinds.values.reduce(0) { $0 + $1.started }
            report.flowsPerSecond = Double(flows) / config.seconds
        }
        for ns in [topo.value.backend1, topo.value.backend2] {
            let drops = Net.tcpExt(in: ns).filter { ["ListenOverflows", "ListenDrops"].contains($0.key) }
            lock.withLock { for (k, v) in drops { report.serverDrops[k, default: 0] += v } }
        }
        if let counters = try? dp.counters() {
            lock.withLock { for c in counters where c.value > 0 { report.counters[c.name] = c.value } }
        }
        // what heal deleted of each flow that failed (its client port, from the audit log)
        let auditLines = ((try? String(contentsOfFile: audit, encoding: .utf8)) ?? "").split(separator: "\n")
        lock.withLock {
            report.failures = report.failures.map { f in
                // the flow's own entries: its client address and port, on either side of a key
                guard let r = f.range(of: #"from [0-9.]+:\d+"#, options: .regularExpression) else { return f }
                let endpoint = f[r].dropFirst(5).split(separator: ":")
                let (addr, port) = (endpoint[0], endpoint[1])
                let hits = auditLines.filter {
                    $0.contains("\"src\":\"\(addr)\",\"sport\":\(port),") || $0.contains("\"dst\":\"\(addr)\",\"dport\":\(port)}")
                }
                return f
                    + (hits.isEmpty ? "; heal deleted none of its entries" : "; heal deleted: " + hits.joined(separator: " | "))
            }
        }
        return lock.withLock { report }
    }

    static let oneWayDatagrams = 6
}
