import CLibBPF
import ConntrackKit
import CtctlCLI
import Foundation
import NetLab
import TestSupport

/// CLI fuzzing: random and malformed argument vectors.
///
/// - In-process (CLI.run, as the tests run it): never a crash or a trap, always one of the
///   documented exit codes, and on failure one clear error line first on stderr (then
///   usage). These run against a pin directory that is not on bpffs, so every command
///   converts and checks its arguments and then stops with 69 before touching any map.
/// - As processes against a loaded dataplane: the conntrack, NAT and attachment maps and the
///   service epoch are compared byte for byte before and after every run that exited
///   non-zero: a command that failed changed nothing.
public struct CLIFuzz {
    public struct Report: Sendable {
        public var seed: UInt64 = 0
        public var vectors = 0
        public var byStatus: [Int32: Int] = [:]
        public var processes = 0
        public var processByStatus: [Int32: Int] = [:]
        /// Non-zero runs whose maps were compared (all must be unchanged).
        public var comparedUnchanged = 0
        public var failures: [String] = []
        public var failureCount = 0
        public var seconds = 0.0

        mutating func fail(_ s: String) {
            failureCount += 1
            if failures.count < 20 { failures.append(s) }
        }
    }

    public static let documented: Set<Int32> = Set(ExitStatus.allCases.map(\.rawValue))

    static let paths: [[String]] = [
        [], ["conntrack"], ["conntrack", "list"], ["conntrack", "get"], ["conntrack", "remove"], ["conntrack", "stats"],
        ["dataplane"], ["dataplane", "load"], ["dataplane", "status"], ["dataplane", "attach"], ["dataplane", "detach"],
        ["dataplane", "unload"], ["service"], ["service", "set"], ["service", "delete"], ["nat"], ["nat", "list"], ["heal"],
        ["help"], ["help", "conntrack"], ["bogus"], ["conntrack", "bogus"],
    ]
    static let flags = [
        "--proto", "--src", "--dst", "--sport", "--dport", "--type", "--service", "--family", "-o", "--output", "--stale",
        "--count", "--explain", "--dry-run", "--audit-log", "--backend", "--ct-size", "--timeout", "--no-service-epoch",
        "--netns", "--once", "--interval", "--metrics-file", "--grace", "--log-level", "--check", "--max-age", "--help", "-h",
        "--version", "--generate-completion-script", "--bogus", "--", "-", "--pin-dir", "-x", "--stale=1", "--proto=udp",
    ]
    static let values = [
        "198.18.1.2", "198.19.0.10", "2001:db8::1", "2001:db8:ff::10", "999.1.1.1", "::ffff:198.18.1.2", "1.2.3", "", " ",
        "[2001:db8::1]:53", "198.18.1.2:40000", "198.19.0.10:161", "198.18.1.2:99999", "[2001:db8::1]", "[::1]:", ":53",
        "198.18.0.0/15", "198.18.0.0/33", "2001:db8::/129", "0.0.0.0/0", "-1", "0", "1", "65535", "65536", "00080", "+1", "udp",
        "tcp", "UDP", "17", "6", "255", "256", "icmp", "normal", "nat-fwd", "nat-rev", "json", "wide", "table", "yaml", "4", "6",
        "5", "10s", "100ms", "1ms", "0s", "1h", "-5s", "1e9", "99999999999999999999h", "udp=1s,tcp=1h", "udp=0", "udp",
        "tcp-closing=1s", "=", ",", "198.19.0.10:161/udp", "[2001:db8:ff::10]:53/udp", "198.19.0.10:161/sctp", "1.2.3.4:5/",
        "debug", "info", "loud", "bash", "zsh", "fish", "powershell", "é", "\u{202e}", "x=y", "--", "%n%s", "\\", "'", "\"",
        String(repeating: "a", count: 300), String(repeating: "9", count: 40), "nonexistent0", "veth-fuzz", "ctctl-fuzz-ns",
        "1024", "1048576", "4294967296",
    ]

    let seed: UInt64
    var rng: SeededRandom
    /// Where --audit-log and --metrics-file may write (removed by the caller).
    let sandbox: String

    public init(seed: UInt64, sandbox: String) {
        self.seed = seed
        rng = SeededRandom(seed: seed)
        self.sandbox = sandbox
    }

    /// One argument vector. `pinDir` is put first after the command words, and every
    /// --pin-dir, --audit-log and --metrics-file value the fuzzer writes stays where it may.
    mutating func vector(pinDir: String) -> [String] {
        let path = rng.pick(CLIFuzz.paths)
        var args = path + ["--pin-dir", pinDir]
        for _ in 0..<rng.below(7) {
            switch rng.below(10) {
            case 0..<5:
                let flag = rng.pick(CLIFuzz.flags)
                args.append(flag)
                if rng.chance(80) {
                    switch flag {
                    case "--pin-dir": args.append(rng.pick([pinDir, sandbox + "/not-bpffs", "relative", "/proc"]))
                    case "--audit-log", "--metrics-file":
                        args.append(rng.pick([sandbox + "/out", sandbox + "/no/such/dir/f", sandbox]))
                    default: args.append(rng.pick(CLIFuzz.values))
                    }
                }
            case 5..<9: args.append(rng.pick(CLIFuzz.values))
            default: args.append(String(decoding: rng.bytes(1 + rng.below(12)).map { $0 == 0 ? 0x41 : $0 }, as: UTF8.self))
            }
        }
        return args
    }

    /// The error lines a failed run printed: exactly one, first, and naming something.
    static func errorLines(_ err: String) -> String? {
        let lines = err.split(separator: "\n", omittingEmptySubsequences: true)
        let errors = lines.filter { $0.lowercased().contains("error:") }
        guard errors.count == 1, let first = lines.first, first == errors[0], first.count > "Error: ".count + 3 else {
            return "not one clear error line first: \(err.prefix(300))"
        }
        return nil
    }

    /// Parses and runs `count` vectors in-process against a pin directory not on bpffs.
    public mutating func runInProcess(count: Int) -> Report {
        var report = Report()
        report.seed = seed
        let start = Date()
        let nowhere = sandbox + "/not-bpffs"
        try? FileManager.default.createDirectory(atPath: nowhere, withIntermediateDirectories: true)
        for i in 0..<count {
            var args = vector(pinDir: nowhere)
            // the watching heal would run forever if its dataplane were there; it is not
            if args.first == "heal" && !args.contains("--once") && !args.contains("--check") { args.append("--once") }
            let console = Console.captured()
            let status = CLI.run(args, console: console)
            report.vectors += 1
            report.byStatus[status, default: 0] += 1
            let err = (console.err as! CapturedStream).text
            if !CLIFuzz.documented.contains(status) {
                report.fail("vector \(i) \(args): exit \(status), not a documented code")
            } else if status != 0, let why = CLIFuzz.errorLines(err) {
                report.fail("vector \(i) \(args): exit \(status): \(why)")
            }
        }
        report.seconds = Date().timeIntervalSince(start)
        return report
    }

    /// The maps' contents, to compare before and after a run.
    static func snapshot(_ pins: PinDirectory) throws -> [String] {
        let dp = try ReferenceDataplane(pins, readOnly: true)
        var rows: [String] = []
        func dump<K, V>(_ map: BPFMap, _: K.Type, _: V.Type) throws {
            let r = BatchReader<K, V>(capacity: 4096)
            try r.read(map) { n in
                for i in 0..<n {
                    let k = Data(bytes: r.keys + i, count: MemoryLayout<K>.size)
                    let v = Data(bytes: r.values + i, count: MemoryLayout<V>.size)
                    rows.append(map.pin + " " + k.base64EncodedString() + " " + v.base64EncodedString())
                }
                return true
            }
        }
        try dump(dp.ct, ctctl_ct_key.self, ctctl_ct_value.self)
        try dump(dp.natFrontend, ctctl_fe_key.self, ctctl_fe_value.self)
        try dump(dp.natBackend, ctctl_be_key.self, ctctl_be_value.self)
        try dump(dp.attachments, ctctl_attach_key.self, ctctl_attach_value.self)
        rows.append("epoch \(try dp.epoch())")
        return rows.sorted()
    }

    /// Runs `count` vectors as ctctl processes against the dataplane at `pins`, which
    /// `stage` (re)loads and fills; compares the maps around every non-zero exit.
    public mutating func runProcesses(
        count: Int, ctctl: String, pins: PinDirectory, stage: (PinDirectory) throws -> Void
    ) throws -> Report {
        var report = Report()
        report.seed = seed
        let start = Date()
        try stage(pins)
        for i in 0..<count {
            var args = vector(pinDir: pins.path)
            // never the host's interfaces or namespaces
            if args.starts(with: ["dataplane", "attach"]) || args.starts(with: ["dataplane", "detach"]) {
                args = args.map { $0 == "lo" ? "nonexistent0" : $0 }
            }
            if !FileManager.default.fileExists(atPath: pins.pin(CTCTL_PIN_CONFIG)) { try stage(pins) }
            let before = try CLIFuzz.snapshot(pins)
            let r = try runBounded([ctctl] + args, seconds: 3)
            report.processes += 1
            report.processByStatus[r.status, default: 0] += 1
            if !CLIFuzz.documented.contains(r.status) {
                report.fail("process \(i) \(args): exit \(r.status), not a documented code; \(r.err.prefix(200))")
            } else if r.status != 0 {
                if let why = CLIFuzz.errorLines(r.err) { report.fail("process \(i) \(args): \(why)") }
                guard FileManager.default.fileExists(atPath: pins.pin(CTCTL_PIN_CONFIG)) else {
                    report.fail("process \(i) \(args): exit \(r.status), and the dataplane is gone")
                    continue
                }
                if try CLIFuzz.snapshot(pins) != before {
                    report.fail("process \(i) \(args): exit \(r.status), but the maps changed")
                } else {
                    report.comparedUnchanged += 1
                }
            }
        }
        report.seconds = Date().timeIntervalSince(start)
        return report
    }
}

/// Runs a command for at most `seconds`, then SIGTERM (the watching heal exits 0 on it),
/// then SIGKILL a second later. A status of 128+N means killed by signal N.
func runBounded(_ args: [String], seconds: Double) throws -> CommandResult {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: args[0])
    p.arguments = Array(args.dropFirst())
    let out = Pipe()
    let err = Pipe()
    p.standardOutput = out
    p.standardError = err
    try p.run()
    let collected = Collected()
    let group = DispatchGroup()
    for (i, pipe) in [out, err].enumerated() {
        group.enter()
        DispatchQueue.global().async {
            collected.set(i, pipe.fileHandleForReading.readDataToEndOfFile())
            group.leave()
        }
    }
    let deadline = Date().addingTimeInterval(seconds)
    while p.isRunning && Date() < deadline { usleep(2000) }
    if p.isRunning {
        kill(p.processIdentifier, SIGTERM)
        let hard = Date().addingTimeInterval(1)
        while p.isRunning && Date() < hard { usleep(2000) }
        if p.isRunning { kill(p.processIdentifier, SIGKILL) }
    }
    p.waitUntilExit()
    group.wait()
    let status = p.terminationReason == .uncaughtSignal ? 128 + p.terminationStatus : p.terminationStatus
    return CommandResult(status: status, out: collected.text(0), err: collected.text(1))
}

/// What two reader threads collected.
final class Collected: @unchecked Sendable {
    private let lock = NSLock()
    private var data: [Int: Data] = [:]
    func set(_ i: Int, _ d: Data) { lock.withLock { data[i] = d } }
    func text(_ i: Int) -> String { lock.withLock { String(decoding: data[i] ?? Data(), as: UTF8.self) } }
}

/// The dataplane the CLI processes run against: loaded (again, if a run unloaded it), two
/// services, NAT and normal entries through the datapath.
public enum CLIDrillStage {
    public static func stage(_ pins: PinDirectory) throws {
        if !FileManager.default.fileExists(atPath: pins.pin(CTCTL_PIN_CONFIG)) {
            if FileManager.default.fileExists(atPath: pins.path) { try? FileManager.default.removeItem(atPath: pins.path) }
            var o = LoadOptions()
            o.serviceEpoch = false
            try Loader.load(pins, options: o)
        }
        let dp = try ReferenceDataplane(pins, readOnly: false)
        let prog = try TCProgram(dp)
        _ = try prog.run(Packets.udp(Endpoint("198.18.1.2:40000")!, Endpoint("198.19.0.10:161")!))
        try Services.set(
            dp, ServiceRef("198.19.0.10:161/udp")!, backends: [Endpoint("198.18.2.2:1161")!, Endpoint("198.18.3.2:1161")!],
            lock: WriterLock(pins))
        try Services.set(
            dp, ServiceRef("[2001:db8:ff::10]:53/udp")!, backends: [Endpoint("[2001:db8:2::2]:53")!], lock: WriterLock(pins))
        for c in 1...6 {
            _ = try prog.run(Packets.udp(Endpoint("198.18.1.\(c + 2):40000")!, Endpoint("198.19.0.10:161")!))
            _ = try prog.run(Packets.udp(Endpoint("198.18.1.\(c + 2):40001")!, Endpoint("198.18.9.9:53")!))
            _ = try prog.run(Packets.udp(Endpoint("[2001:db8:1::\(c + 2)]:40000")!, Endpoint("[2001:db8:ff::10]:53")!))
        }
    }
}
