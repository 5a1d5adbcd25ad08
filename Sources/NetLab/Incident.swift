import ConntrackKit
import Foundation

/// The incident ctctl exists for, played on real kernel networking: a UDP service is
/// deleted and recreated while a client keeps sending from one fixed source port; the
/// entry created while the service was gone has no NAT, so the flow never reaches a
/// backend again. Then each fix, timed. Shared by `make demo` and the e2e test.
public final class Incident {
    public struct Config: Sendable {
        public var ctctl: String
        /// How long each phase is watched.
        public var phaseSeconds = 3.0
        public var sendIntervalMs = 20
        /// Print what happens (the demo); false for tests.
        public var narrate = true
        public var color = false
        /// Leave the namespaces, the dataplane and the service in place at the end.
        public var keep = false
        /// Clean up on SIGINT/SIGTERM (the demo; not inside a test process).
        public var handleSignals = true

        public init(ctctl: String) { self.ctctl = ctctl }
    }

    /// One scenario's outcome, for the summary table and the test.
    public struct Result: Sendable {
        public let scenario: String
        /// Seconds from the start of the fix command (for automatic fixes: of the command
        /// that brought the service back) to the first datagram that reached a backend;
        /// nil if none did. Includes the command's own run time.
        public let recoverySeconds: Double?
        /// Datagrams sent after the service came back that reached no backend.
        public let lost: Int
        /// Datagrams delivered while the flow was stuck (must be 0).
        public let deliveredWhileStuck: Int
        /// The first datagram sent after the fix took effect was delivered (epoch fix:
        /// recovery within one send interval).
        public let firstPacketDelivered: Bool
        /// How long the demo watched the stuck flow before fixing it.
        public let stuckSeconds: Double
    }

    public static let client = Endpoint("198.18.1.2:40000")!
    public static let vip = Endpoint("198.19.0.10:161")!
    public static let service = "198.19.0.10:161/udp"
    public static let backends = ["198.18.2.2:1161", "198.18.3.2:1161"]

    let config: Config
    let pinDir: String
    public let cleanup = Cleanup()
    var topology: Topology!
    var flow: UDPFlow!
    public private(set) var results: [Result] = []
    /// Per-phase delivered/sent, for tests: (phase name, sent, delivered).
    public private(set) var phases: [(String, Int, Int)] = []

    public init(_ config: Config) {
        self.config = config
        pinDir = "/sys/fs/bpf/ctctl-demo-\(getpid())-\(UInt32.random(in: 0..<UInt32.max))"
    }

    // MARK: narration

    func bold(_ s: String) -> String { config.color ? "\u{1b}[1m\(s)\u{1b}[0m" : s }
    func red(_ s: String) -> String { config.color ? "\u{1b}[31m\(s)\u{1b}[0m" : s }
    func green(_ s: String) -> String { config.color ? "\u{1b}[32m\(s)\u{1b}[0m" : s }
    func dim(_ s: String) -> String { config.color ? "\u{1b}[2m\(s)\u{1b}[0m" : s }

    let out = FDStream(fd: 1, bufferSize: 0)

    func say(_ s: String) {
        guard config.narrate else { return }
        out.line(s)
    }

    func step(_ n: Int, _ title: String) { say("\n" + bold("\(n). \(title)")) }

    /// Runs ctctl as the operator would (the pin directory comes from $CTCTL_PIN_DIR).
    @discardableResult
    func ctctl(_ args: [String], show: Bool = true) throws -> CommandResult {
        if show { say(dim("$ ") + "ctctl " + args.joined(separator: " ")) }
        let r = try runCommand([config.ctctl] + args, environment: env)
        if show {
            let text = (r.out + r.err).split(separator: "\n", omittingEmptySubsequences: false)
            for line in text.dropLast(text.last == "" ? 1 : 0) { say("  " + line) }
        }
        return r
    }

    func must(_ args: [String], show: Bool = true) throws {
        let r = try ctctl(args, show: show)
        guard r.status == 0 else {
            throw TopologyError(message: "ctctl \(args.joined(separator: " ")) failed (\(r.status)): \(r.err)")
        }
    }

    static func seconds(_ ns: UInt64) -> Double { Double(ns) / 1e9 }

    /// Watches delivery for `seconds`, a line per second (per half second in short phases).
    @discardableResult
    func watch(_ name: String, seconds: Double) -> (sent: Int, delivered: Int) {
        let start = UDPFlow.now()
        let tick = seconds >= 3 ? 1.0 : 0.5
        var t = 0.0
        while t < seconds - 1e-9 {
            let from = start + UInt64(t * 1e9)
            let step = min(tick, seconds - t)
            Thread.sleep(forTimeInterval: step)
            let w = flow.window(from: from, to: from + UInt64(step * 1e9))
            let per = flow.perBackend(from: from, to: from + UInt64(step * 1e9))
            let rate = Int((Double(w.delivered) / step).rounded())
            let label = w.delivered == 0 ? red("delivered 0/s") : green("delivered \(rate)/s")
            say(String(format: "   %5.1fs  %@  (sent %d, backend-1 %d, backend-2 %d)", t + step, label, w.sent, per[0], per[1]))
            t += step
        }
        // count the phase once its last datagrams have had time to land (a datagram sent
        // just before the end may still be on its way)
        let end = UDPFlow.now()
        Thread.sleep(forTimeInterval: 0.05)
        let w = flow.window(from: start, to: end)
        phases.append((name, w.sent, w.delivered))
        return w
    }

    // MARK: the story

    /// ctctl finds the pin directory here, so commands read as an operator types them.
    var env: [String: String] { [PinDirectory.environmentVariable: pinDir] }

    public func run() throws {
        if config.handleSignals { cleanup.onSignals() }
        defer { if !config.keep { cleanup.runAll() } }

        say(bold("ctctl demo: a UDP service is deleted and recreated while a client keeps polling it"))
        say(
            "client 198.18.1.2:40000 (fixed source port, one datagram every \(config.sendIntervalMs) ms) -> service \(Incident.service)"
        )
        say("backends \(Incident.backends.joined(separator: ", ")); the node in between runs the reference dataplane")

        try setUp(serviceEpoch: false)
        step(1, "The service is up: the client's datagrams reach a backend")
        try must(["service", "set", Incident.service] + Incident.backends.flatMap { ["--backend", $0] })
        flow = try UDPFlow(
            clientNetns: topology.client, from: Incident.client, to: Incident.vip,
            receivers: [(topology.backend1, Endpoint("0.0.0.0:1161")!), (topology.backend2, Endpoint("0.0.0.0:1161")!)],
            intervalMs: config.sendIntervalMs, maxSeconds: 600)
        flow.start()
        cleanup.add { [flow] in flow?.stop() }
        watch("up", seconds: config.phaseSeconds)
        try must(["conntrack", "list", "--dport", "161"])

        step(2, "The service is deleted: delivery stops, as it should")
        try must(["service", "delete", Incident.service])
        watch("deleted", seconds: config.phaseSeconds)

        step(3, "The service is recreated, the epoch fix is off: delivery stays at zero (the bug)")
        var stuck = try recreateAndWatch()
        try must(["conntrack", "list", "--stale"])
        try must(["conntrack", "get", "udp", Incident.client.description, Incident.vip.description, "--explain"])

        step(4, "The runbook fix: remove the stuck entry")
        results.append(
            try manualFix(
                "ctctl conntrack remove", stuck,
                ["conntrack", "remove", "udp", Incident.vip.address.description, Incident.client.address.description]))
        say("\n" + bold("   ...and again, fixed with a one-shot heal pass:"))
        stuck = try outage()
        results.append(try manualFix("ctctl heal --once", stuck, ["heal", "--once"]))

        step(5, "The same outage with a running `ctctl heal`: it recovers by itself")
        results.append(try withRunningHeal())

        step(6, "The same outage with the datapath's epoch fix on: it recovers on the next packet")
        try reload(serviceEpoch: true)
        results.append(try automaticFix("epoch fix (datapath)"))

        flow.stop()
        summary()
        if config.keep { keepMessage() }
    }

    func setUp(serviceEpoch: Bool) throws {
        try must(["dataplane", "load"] + (serviceEpoch ? [] : ["--no-service-epoch"]), show: false)
        cleanup.add { [config, pinDir] in _ = try? runCommand([config.ctctl, "dataplane", "unload", "--pin-dir", pinDir]) }
        if topology == nil {
            topology = try Topology("demo")
            cleanup.add { [topology] in topology?.cleanup() }
        }
        for ifname in ["nc", "nb1", "nb2"] {
            try must(["dataplane", "attach", ifname, "--netns", topology.node], show: false)
            cleanup.add { [config, pinDir, topology] in
                _ = try? runCommand([config.ctctl, "dataplane", "detach", ifname, "--netns", topology!.node, "--pin-dir", pinDir])
            }
        }
        say(
            dim(
                "(set up: namespaces \(topology.client), \(topology.node), \(topology.backend1), \(topology.backend2); dataplane at \(pinDir), epoch fix \(serviceEpoch ? "on" : "off"))"
            ))
    }

    func reload(serviceEpoch: Bool) throws {
        for ifname in ["nc", "nb1", "nb2"] { try must(["dataplane", "detach", ifname, "--netns", topology.node], show: false) }
        try must(["dataplane", "unload"], show: false)
        try must(["dataplane", "load"] + (serviceEpoch ? [] : ["--no-service-epoch"]))
        try must(["service", "set", Incident.service] + Incident.backends.flatMap { ["--backend", $0] }, show: false)
        for ifname in ["nc", "nb1", "nb2"] { try must(["dataplane", "attach", ifname, "--netns", topology.node], show: false) }
        _ = flow.waitForDelivery(sentAfter: UDPFlow.now(), timeout: 5)
    }

    /// Recreates the service (it was deleted) and watches the flow stay stuck. Returns
    /// when the command started: clocks run from there (a conservative measure).
    func recreateAndWatch() throws -> UInt64 {
        let back = UDPFlow.now()
        try must(["service", "set", Incident.service] + Incident.backends.flatMap { ["--backend", $0] })
        watch("stuck", seconds: config.phaseSeconds)
        return back
    }

    /// Delete, wait, recreate: the client's datagrams meanwhile made a normal entry.
    func outage() throws -> UInt64 {
        try must(["service", "delete", Incident.service])
        Thread.sleep(forTimeInterval: max(0.3, config.phaseSeconds / 3))
        return try recreateAndWatch()
    }

    func manualFix(_ name: String, _ back: UInt64, _ args: [String]) throws -> Result {
        let stuckWindow = flow.window(from: back + 100_000_000, to: UDPFlow.now())
        let fixAt = UDPFlow.now()
        try must(args)
        let first = flow.waitForDelivery(sentAfter: fixAt, timeout: 5)
        watch(name, seconds: min(1.0, config.phaseSeconds))
        return result(name, back: back, fixAt: fixAt, fixDone: fixAt, first: first, stuck: stuckWindow.delivered)
    }

    /// `back`: the recreate command started; `fixAt`: the fix started (recovery runs from
    /// here); `fixDone`: the fix had taken effect (the first datagram sent after it must
    /// arrive, for an automatic fix).
    func result(
        _ name: String, back: UInt64, fixAt: UInt64, fixDone: UInt64, first: (seq: Int, sent: UInt64, received: UInt64)?,
        stuck: Int
    ) -> Result {
        let recovery = first.map { Incident.seconds($0.received > fixAt ? $0.received - fixAt : 0) }
        let lost = first.map { flow.window(from: back, to: $0.sent).sent } ?? flow.window(from: back, to: UDPFlow.now()).sent
        let firstSent = flow.firstSent(after: fixDone)
        let line =
            recovery.map {
                green(
                    String(
                        format: "   recovered %.3fs after %@, %d datagrams lost since the service came back", $0,
                        name == "epoch fix (datapath)" || name == "running ctctl heal"
                            ? "the command that brought the service back started" : "the fix started", lost))
            }
            ?? red("   not recovered")
        say(line)
        let firstAfter = firstSent.map { seq in flow.firstDelivery(sentAfter: fixDone).map { $0.seq == seq } ?? false } ?? false
        return Result(
            scenario: name, recoverySeconds: recovery, lost: lost, deliveredWhileStuck: stuck,
            firstPacketDelivered: firstAfter, stuckSeconds: Incident.seconds(fixAt - back))
    }

    func withRunningHeal() throws -> Result {
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("ctctl-demo-heal-\(getpid()).log").path
        FileManager.default.createFile(atPath: log, contents: nil)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: config.ctctl)
        p.arguments = ["heal", "--interval", "10s"]
        p.environment = ProcessInfo.processInfo.environment.merging(env) { $1 }
        p.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        p.standardOutput = FileHandle.nullDevice
        say(dim("$ ") + "ctctl heal --interval 10s &")
        try p.run()
        let stopHeal = {
            if p.isRunning {
                p.interrupt()
                p.waitUntilExit()
            }
        }
        cleanup.add(stopHeal)
        defer {
            stopHeal()
            try? FileManager.default.removeItem(atPath: log)
        }
        Thread.sleep(forTimeInterval: 0.3)
        let r = try automaticFix("running ctctl heal")
        stopHeal()
        let lines = ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").split(separator: "\n")
        for l in lines where l.contains("trigger=epoch") && !l.contains("deleted=0") { say(dim("  heal: ") + l) }
        return r
    }

    /// Recreates the service and measures how long until datagrams arrive on their own.
    func automaticFix(_ name: String) throws -> Result {
        try must(["service", "delete", Incident.service])
        Thread.sleep(forTimeInterval: max(0.3, config.phaseSeconds / 3))
        let back = UDPFlow.now()
        try must(["service", "set", Incident.service] + Incident.backends.flatMap { ["--backend", $0] })
        let done = UDPFlow.now()
        let first = flow.waitForDelivery(sentAfter: back, timeout: 5)
        watch(name, seconds: min(1.0, config.phaseSeconds))
        return result(name, back: back, fixAt: back, fixDone: done, first: first, stuck: 0)
    }

    func summary() {
        guard let stuck = phases.first(where: { $0.0 == "stuck" }) else { return }
        say("\n" + bold("Summary"))
        var t = TextTable(["SCENARIO", "RECOVERY", "LOST"])
        t.add([
            "service recreated, no fix", "never (\(stuck.2) of \(stuck.1) delivered in \(String(format1: config.phaseSeconds))s)",
            "all",
        ])
        for r in results {
            let from = r.scenario.hasPrefix("ctctl") ? "after the fix command" : "after `service set`"
            t.add([r.scenario, r.recoverySeconds.map { String(format: "%.3fs %@", $0, from) } ?? "never", String(r.lost)])
        }
        say(t.render(indent: "  "))
        say("RECOVERY: from the start of the command to the first datagram a backend received (command run")
        say("time included). LOST: datagrams sent from the start of `service set` that reached no backend;")
        say(
            "the manual fixes include the \(String(format1: config.phaseSeconds))s the flow was watched while stuck. One datagram every \(config.sendIntervalMs) ms."
        )
    }

    func keepMessage() {
        say("\n" + bold("Kept for exploring") + " (CTCTL_PIN_DIR=\(pinDir)):")
        say("  export CTCTL_PIN_DIR=\(pinDir)")
        say("  ctctl dataplane status; ctctl conntrack list; ctctl nat list")
        say("  nsenter --net=/run/netns/\(topology.client) ip addr      # the client's namespace")
        say("To remove it all:")
        say("  for i in nc nb1 nb2; do ctctl dataplane detach $i --netns \(topology.node); done; ctctl dataplane unload")
        say(
            "  ip netns del \(topology.client); ip netns del \(topology.node); ip netns del \(topology.backend1); ip netns del \(topology.backend2)"
        )
    }
}
