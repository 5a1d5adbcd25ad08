import ConntrackKit
import Foundation
import Reliability

/// `make soak`: the reliability drills in full. Prints the figures and, with --write-doc,
/// writes them into docs/RELIABILITY.md (after its `<!-- results -->` marker). Exits 1 if
/// any drill found a problem. Needs root.
struct Options {
    var ctctl = ""
    var writeDoc: String?
    var seed: UInt64 = 20_261_129
    var only: Set<String> = []
}

func usage() -> Never {
    FileHandle.standardError.write(
        "usage: ctctl-soak --ctctl PATH [--write-doc docs/RELIABILITY.md] [--seed N] [--only churn,faults,fuzz,cli,concurrency]\n"
            .data(using: .utf8)!)
    exit(64)
}

var opts = Options()
var it = CommandLine.arguments.dropFirst().makeIterator()
while let a = it.next() {
    switch a {
    case "--ctctl": opts.ctctl = it.next() ?? ""
    case "--write-doc": opts.writeDoc = it.next()
    case "--seed": opts.seed = UInt64(it.next() ?? "") ?? opts.seed
    case "--only": opts.only = Set((it.next() ?? "").split(separator: ",").map(String.init))
    default: usage()
    }
}
if opts.ctctl.isEmpty { usage() }
guard getuid() == 0 else {
    FileHandle.standardError.write("ctctl-soak: run as root\n".data(using: .utf8)!)
    exit(77)
}

var out = ""
var problems: [String] = []
@MainActor func emit(_ s: String = "") {
    print(s)
    out += s + "\n"
}
@MainActor func progress(_ s: String) { FileHandle.standardError.write((s + "\n").data(using: .utf8)!) }
@MainActor func wants(_ drill: String) -> Bool { opts.only.isEmpty || opts.only.contains(drill) }
@MainActor func failures(_ drill: String, _ fs: [String]) {
    for f in fs {
        problems.append("\(drill): \(f)")
        emit("  - FAILED: \(f)")
    }
}
@MainActor func fmt(_ x: Double, _ digits: Int = 1) -> String { String(format: "%.\(digits)f", x) }

let machine: String = {
    let cpu =
        ((try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? "").split(separator: "\n")
        .first { $0.hasPrefix("model name") }.map { String($0.split(separator: ":").last!.trimmingCharacters(in: .whitespaces)) }
        ?? "?"
    var u = utsname()
    uname(&u)
    let release = withUnsafeBytes(of: u.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    return
        "Linux \(release), \(ProcessInfo.processInfo.activeProcessorCount) cores (\(cpu)), \(ProcessInfo.processInfo.physicalMemory >> 30) GiB"
}()
emit("Machine: \(machine)")
emit("Date: \(Timestamp.rfc3339(UInt64(time(nil))))")
emit("Command: `make soak` (ctctl-soak --seed \(opts.seed)), release build")
let started = Date()

do {
    if wants("churn") {
        progress("churn...")
        var c = ChurnDrill.Config()
        c.seed = opts.seed
        let r = try ChurnDrill(c).run(log: progress)
        emit()
        emit("### Churn")
        emit()
        emit(
            "\(fmt(r.seconds, 0)) s of real traffic through the reference dataplane (epoch re-check off: heal does all the repairing), \(r.clientAddresses) client addresses, a conntrack map of \(r.ctSize) entries (peak \(r.peakEntries) entries seen by a pass: \(fmt(Double(r.ctSize) / Double(max(r.peakEntries, 1)))) times the peak), `heal` passes back to back (20 ms apart) in the same run: \(r.passes) passes, \(r.serviceChanges) service changes under the traffic."
        )
        emit()
        emit(
            "| flows | started | delivered | mean time to answer, slowest (ms) | failed | of which excused: service written during the flow, or without its backend |"
        )
        emit("| --- | --- | --- | --- | --- | --- |")
        for (k, s) in r.kinds.sorted(by: { $0.key < $1.key }) {
            let mean = Double(s.deliveredNanos) / Double(max(s.ok, 1)) / 1e6
            emit(
                "| \(k) | \(s.started) | \(s.ok) | \(fmt(mean, 1)), \(fmt(Double(s.slowest) / 1e6, 0)) | \(s.failed) | \(s.failedExcused) |"
            )
        }
        let total = r.kinds.values.reduce(0) { $0 + $1.started }
        emit()
        emit(
            "- new flows: \(total) (\(fmt(r.flowsPerSecond, 0)) a second; fewest started in one second: \(r.startedPerSecond.min() ?? 0), most: \(r.startedPerSecond.max() ?? 0))"
        )
        emit(
            "- entries deleted by heal, partners included: "
                + r.deletedByReason.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
                + "; kept at delete time: \(r.keptChanged) re-created, \(r.keptNoLongerStale) no longer stale")
        emit(
            "- datapath counters at the end: "
                + r.counters.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        emit(
            "- the test servers' own losses (backends' TcpExt counters): "
                + r.serverDrops.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        if !r.notStarted.isEmpty {
            emit(
                "- flows the generator could not start: "
                    + r.notStarted.sorted { $0.key < $1.key }.map { "\($0.value) (\(Errno($0.key)))" }.joined(separator: ", "))
        }
        progress("churn: flows started per second: \(r.startedPerSecond)")
        emit("- **live flows broken by ctctl: \(r.brokenByCtctl)**")
        if r.flowsPerSecond < 2000 { problems.append("churn: \(fmt(r.flowsPerSecond, 0)) new flows a second, fewer than 2000") }
        failures("churn", r.failures)
    }

    if wants("faults") {
        progress("faults: heal passes killed...")
        let f = FaultDrill(ctctl: opts.ctctl, seed: opts.seed)
        let k = try f.killPasses(entries: 1_000_000, iterations: 100, log: progress)
        emit()
        emit("### Faults")
        emit()
        emit(
            "**Heal passes killed.** A map of \(k.entries) entries (\(k.stalePerFill) stale), filled afresh \(k.iterations) times; each time `ctctl heal --once` was killed at a random moment of its pass (a whole pass: \(fmt(k.passSeconds, 2)) s): SIGKILL \(k.sigkill) times, SIGINT \(k.sigint) times (the killed passes ended: \(k.killedExits.sorted { $0.key < $1.key }.map { "exit \($0.key) ×\($0.value)" }.joined(separator: ", "))). After each: every entry that was not stale was still there; the next pass took the lock at once (longest pass \(fmt(k.maxNextPassSeconds, 2)) s) and left no stale entry and no half pair."
        )
        failures("faults", k.failures)
        progress("faults: writers killed...")
        let w = try f.killWriters(iterations: 50)
        emit()
        emit(
            "**Writers killed.** `ctctl service set` (up to 200 backends) killed \(w.kills) times at a random moment (\(w.midWrite) of them mid-write: the epoch left odd); the next writer each time succeeded (longest \(fmt(w.maxNextWriteSeconds, 2)) s), left the epoch even, and `nat list` read its service."
        )
        failures("faults", w.failures)
        progress("faults: maps full...")
        let m = try f.mapsFull()
        emit()
        emit(
            "**Maps full.** A conntrack map of \(m.ctSize) entries filled with 40,000 (LRU at capacity: \(m.ctEntries) held): "
                + m.commands.sorted { $0.key < $1.key }.map { "`\($0.key)` exit \($0.value)" }.joined(separator: ", ")
                + "; stats \(m.statsWarned ? "warned" : "did NOT warn"). The frontend map filled (\(m.frontends) frontends): `service set` of a new service exits \(m.setWhenFull) (\"\(m.setWhenFullMessage)\") and changes nothing."
        )
        failures("faults", m.failures)
        progress("faults: reloads under a running heal...")
        let rl = try f.reloadUnderHeal(times: 10)
        emit()
        emit(
            "**Reloaded under a running heal.** `ctctl dataplane unload` and `load` \(rl.reloads) times under one `ctctl heal`, the incident staged in each new dataplane: healed every time, after \(rl.healedAfter.map { fmt($0, 2) }.joined(separator: ", ")) s."
        )
        failures("faults", rl.failures)
    }

    if wants("fuzz") {
        progress("datapath fuzzing...")
        var fz = DatapathFuzz(seed: opts.seed, packets: 1_000_000)
        let r = try fz.run { i in if i % 100_000 == 0 { progress("fuzz: \(i)") } }
        emit()
        emit("### Datapath fuzzing")
        emit()
        emit(
            "\(r.packets) packets (seed \(r.seed), \(fmt(r.seconds, 0)) s): \(r.translated) left translated, each checked from scratch: whole, no byte outside the translated fields changed, every checksum that held still holding. **Problems: \(r.failureCount).** Verdict classes (pass/drop, translated or not, and the datapath counters the packet moved):"
        )
        emit()
        emit("| packets | class |")
        emit("| --- | --- |")
        for (k, v) in r.classes.sorted(by: { $0.value > $1.value }) { emit("| \(v) | \(k) |") }
        failures("fuzz", r.failures)
    }

    if wants("cli") {
        progress("CLI fuzzing...")
        let box = "/tmp/ctctl-soak-cli-\(getpid())"
        try FileManager.default.createDirectory(atPath: box, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: box) }
        var cf = CLIFuzz(seed: opts.seed, sandbox: box)
        let r = cf.runInProcess(count: 100_000)
        let pins = PinDirectory("/sys/fs/bpf/ctctl-soak-cli-\(getpid())")
        let p = try cf.runProcesses(count: 2000, ctctl: opts.ctctl, pins: pins) { pins in try CLIDrillStage.stage(pins) }
        try? Loader.unload(pins)
        emit()
        emit("### CLI fuzzing")
        emit()
        emit(
            "\(r.vectors) random and malformed argument vectors parsed and run in-process (\(fmt(r.seconds, 0)) s), exits: \(r.byStatus.sorted { $0.key < $1.key }.map { "\($0.key) ×\($0.value)" }.joined(separator: ", ")); never a crash, every exit documented, every failure one clear error line first."
        )
        emit(
            "\(p.processes) run as processes against a loaded dataplane (\(fmt(p.seconds, 0)) s), exits: \(p.processByStatus.sorted { $0.key < $1.key }.map { "\($0.key) ×\($0.value)" }.joined(separator: ", ")); the maps compared byte for byte around every non-zero exit: \(p.comparedUnchanged) unchanged. **Problems: \(r.failureCount + p.failureCount).**"
        )
        failures("cli", r.failures + p.failures)
    }

    if wants("concurrency") {
        progress("concurrency...")
        let box = "/tmp/ctctl-soak-conc-\(getpid())"
        try FileManager.default.createDirectory(atPath: box, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: box) }
        let r = try ConcurrencyDrill(ctctl: opts.ctctl, workers: 8, opsPerWorker: 40, seed: opts.seed).run(sandbox: box)
        emit()
        emit("### Concurrency")
        emit()
        emit(
            "\(r.workers) workers, \(r.processes) ctctl processes on one dataplane at once (\(fmt(r.seconds, 0)) s): "
                + r.byCommand.sorted { $0.key < $1.key }.map { c in
                    "`\(c.key)` "
                        + c.value.sorted { $0.key < $1.key }.map { "exit \($0.key) ×\($0.value)" }.joined(separator: ", ")
                }.joined(separator: "; ")
                + ". Longest wait for a process: \(fmt(r.maxSeconds, 2)) s. Lost updates: \(r.lostUpdates). Entries \(r.entriesBefore) -> \(r.entriesAfter), audit lines \(r.auditLines). Half pairs left: \(r.halfPairsLeft)."
        )
        failures("concurrency", r.failures)
    }
} catch {
    problems.append("the soak stopped: \(error)")
    emit("- FAILED: the soak stopped: \(error)")
}

emit()
emit(
    "Total: \(fmt(Date().timeIntervalSince(started) / 60, 1)) minutes; \(problems.isEmpty ? "no problem found" : "\(problems.count) PROBLEMS")."
)
if let path = opts.writeDoc, opts.only.isEmpty {
    let doc = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
    let marker = "<!-- results -->"
    let head = doc.components(separatedBy: marker).first ?? doc
    try? (head + marker + "\n\n" + out).write(toFile: path, atomically: true, encoding: .utf8)
    progress("wrote \(path)")
}
exit(problems.isEmpty ? 0 : 1)
