import ConntrackKit
import Foundation
import NetLab
import TestSupport
import Testing

@testable import Reliability

/// The short forms of the reliability drills (docs/RELIABILITY.md has the full ones, from
/// `make soak`): each fails on the first problem it finds.
@Suite("reliability drills, short forms")
struct ReliabilityTests {
    static func sandbox(_ tag: String) throws -> String {
        let dir = "/tmp/ctctl-drill-\(getpid())-\(tag)-\(UInt32.random(in: 0..<UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    @Test("datapath fuzzing: 20,000 packets, every translated frame whole and every checksum that held still holding")
    func datapathFuzz() throws {
        var fuzz = DatapathFuzz(seed: 20_261_129, packets: 20_000)
        let r = try fuzz.run()
        #expect(r.failureCount == 0, "\(r.failures.joined(separator: "\n"))")
        #expect(r.translated > 1000, "the mix translates")
        #expect(
            r.classes.keys.contains { $0.hasPrefix("drop") } && r.classes.keys.contains { $0.contains("icmp_error_translated") })
    }

    @Test("CLI fuzzing in-process: 1,000 vectors, documented exit codes, one clear error line")
    func cliFuzzInProcess() throws {
        let box = try ReliabilityTests.sandbox("cli")
        defer { try? FileManager.default.removeItem(atPath: box) }
        var fuzz = CLIFuzz(seed: 7, sandbox: box)
        let r = fuzz.runInProcess(count: 1_000)
        #expect(r.failureCount == 0, "\(r.failures.joined(separator: "\n"))")
        #expect(r.byStatus[64, default: 0] > 100 && r.byStatus[69, default: 0] > 20, "\(r.byStatus)")
    }

    @Test("CLI fuzzing as processes: 150 vectors against a loaded dataplane, maps unchanged around every failure")
    func cliFuzzProcesses() throws {
        let box = try ReliabilityTests.sandbox("cliproc")
        defer { try? FileManager.default.removeItem(atPath: box) }
        let pins = PinDirectory("/sys/fs/bpf/" + TestDataplane.uniqueName("cliproc"))
        defer { try? Loader.unload(pins) }
        var fuzz = CLIFuzz(seed: 11, sandbox: box)
        let r = try fuzz.runProcesses(count: 150, ctctl: ctctlBinary(), pins: pins) { try CLIDrillStage.stage($0) }
        #expect(r.failureCount == 0, "\(r.failures.joined(separator: "\n"))")
        #expect(r.comparedUnchanged > 50, "\(r.processByStatus)")
    }

    @Test("churn: 8 s of real traffic, services changing, heal back to back: no live flow broken by ctctl")
    func churn() throws {
        var c = ChurnDrill.Config()
        c.seconds = 8
        c.flowsPerSecond = 600
        c.halfClosed = 8
        let r = try ChurnDrill(c).run()
        #expect(r.brokenByCtctl == 0, "\(r.failures.joined(separator: "\n"))")
        #expect(r.kinds.values.reduce(0) { $0 + $1.ok } > 3000, "\(r.kinds)")
        #expect(r.passes > 20 && r.deletedByReason["expired", default: 0] > 0, "heal passes ran and deleted")
        #expect(r.kinds["tcp half-closed"]?.ok == 8 && r.kinds["udp one-way"].map { $0.ok > 0 } == true)
    }

    /// Regression: the drill counted a flow against ctctl when its service had been left
    /// with no backend by a write before the flow started (the datapath drops such flows
    /// until the service's next write), because it looked only for writes during the flow.
    @Test("churn: a failed flow is excused by a write during its life or a service state without its backend, nothing else")
    func churnExcuses() {
        let drill = ChurnDrill(ChurnDrill.Config())
        let svc = ChurnDrill.tcpChurn
        let (b1, b2) = (ChurnDrill.backends(8081)[0], ChurnDrill.backends(8081)[1])
        let s: UInt64 = 1_000_000_000
        drill.timeline[svc.description] = [(10 * s, [b1, b2]), (10 * s + 1, [b1]), (20 * s, [b1]), (20 * s + 1, [])]
        // before any write, or with both backends up: the service was whole
        #expect(!drill.unstable(svc, backend: nil, 2 * s, 5 * s))
        #expect(!drill.unstable(ChurnDrill.tcpStable, backend: nil, 2 * s, 5 * s))
        // a write during the flow's life, or within 100 ms of it
        #expect(drill.unstable(svc, backend: nil, 9 * s, 10 * s + s / 20))
        #expect(drill.unstable(svc, backend: nil, 10 * s + s / 20, 11 * s))
        // one backend left: a flow that could have gone to it was not excused ...
        #expect(!drill.unstable(svc, backend: nil, 12 * s, 15 * s))
        #expect(!drill.unstable(svc, backend: b1, 12 * s, 15 * s))
        // ... one answered by the backend that had left was
        #expect(drill.unstable(svc, backend: b2, 12 * s, 15 * s))
        // no backend at all, written long before the flow: excused
        #expect(drill.unstable(svc, backend: nil, 25 * s, 28 * s))
    }

    @Test("faults: heal passes killed mid-pass lose nothing that was not stale and leave no half pair")
    func killedPasses() throws {
        let r = try FaultDrill(ctctl: ctctlBinary(), seed: 3).killPasses(entries: 50_000, iterations: 4)
        #expect(r.failures.isEmpty, "\(r.failures.joined(separator: "\n"))")
        #expect(r.iterations == 4)
    }

    @Test("faults: a writer killed mid-write never blocks the next one")
    func killedWriters() throws {
        let r = try FaultDrill(ctctl: ctctlBinary(), seed: 5).killWriters(iterations: 6)
        #expect(r.failures.isEmpty, "\(r.failures.joined(separator: "\n"))")
        #expect(r.maxNextWriteSeconds < 5)
    }

    @Test("faults: with the conntrack map at capacity commands work and stats warns; a full frontend map changes nothing")
    func mapsFull() throws {
        let r = try FaultDrill(ctctl: ctctlBinary(), seed: 7).mapsFull()
        #expect(r.failures.isEmpty, "\(r.failures.joined(separator: "\n"))")
        #expect(r.statsWarned && r.setWhenFull == 70)
    }

    @Test("faults: a running heal follows two reloads and heals the new dataplane each time")
    func reloads() throws {
        let r = try FaultDrill(ctctl: ctctlBinary(), seed: 9).reloadUnderHeal(times: 2)
        #expect(r.failures.isEmpty, "\(r.failures.joined(separator: "\n"))")
        #expect(r.healedAfter.count == 2 && r.healedAfter.allSatisfy { $0 < 2 })
    }

    @Test("concurrency: writers, removes and heal passes at once: no deadlock, no lost update, every delete audited")
    func concurrency() throws {
        let box = try ReliabilityTests.sandbox("conc")
        defer { try? FileManager.default.removeItem(atPath: box) }
        let r = try ConcurrencyDrill(ctctl: ctctlBinary(), workers: 4, opsPerWorker: 8, seed: 13).run(sandbox: box)
        #expect(r.failures.isEmpty, "\(r.failures.joined(separator: "\n"))")
        #expect(r.processes == 32 && r.lostUpdates == 0 && r.halfPairsLeft == 0)
        #expect(r.auditLines > 0 && r.maxSeconds < 35)
    }
}
