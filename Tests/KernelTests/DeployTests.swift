import ConntrackKit
import Foundation
import NetLab
import Testing

/// What the DaemonSet claims, checked for real: heal needs no more than CAP_BPF, and the
/// liveness probe tells a live heal from a dead one.
@Suite("deploying the watching heal")
struct DeployTests {
    /// root, with every capability dropped except `keep` (e.g. "+bpf"), as the DaemonSet runs it
    static func limited(_ keep: String?) -> [String] {
        let caps = "-all" + (keep.map { ",\($0)" } ?? "")
        return ["/usr/bin/setpriv", "--bounding-set=\(caps)", "--inh-caps=\(caps)", "--ambient-caps=\(caps)", "--"]
    }

    /// A stuck flow for heal to repair: sent while the service did not exist, then the service.
    static func stuck(_ t: TestDataplane, port: Int) throws -> (String, String) {
        let flow = ("198.18.1.2:\(port)", "198.19.0.10:161")
        try StaleFixture.send(t, .udp, flow.0, flow.1)
        return flow
    }

    @Test("heal works as root with CAP_BPF alone (and, on Linux 6.5 and later, with no capability at all)")
    func onlyCapBPF() throws {
        try withDataplane("capbpf", options: .epochOff) { t in
            let a = try DeployTests.stuck(t, port: 40000)
            let b = try DeployTests.stuck(t, port: 40001)
            try t.setService(StaleFixture.s1, ["198.18.2.2:1161"])
            let bpf = try runCommand(
                DeployTests.limited("+bpf") + [
                    ctctlBinary(), "heal", "--once", "--dport", "161", "--sport", "40000", "--pin-dir", t.pins.path,
                ])
            #expect(bpf.status == 0, "\(bpf.err)")
            #expect(try t.entry(.udp, a.0, a.1) == nil, "healed with CAP_BPF alone")
            // Since Linux 6.5, unprivileged_bpf_disabled guards only the creation of maps,
            // programs and BTF: commands on pinned objects need file permissions, not
            // capabilities. Kernels before 6.5 refuse bpf() to a process without CAP_BPF,
            // which is why the DaemonSet keeps it.
            let none = try runCommand(DeployTests.limited(nil) + [ctctlBinary(), "heal", "--once", "--pin-dir", t.pins.path])
            #expect(none.status == 0, "\(none.err)")
            #expect(try t.entry(.udp, b.0, b.1) == nil)
        }
    }

    @Test("heal --check: healthy while heal runs, unhealthy when its metrics go stale or are missing")
    func liveness() throws {
        try withDataplane("check") { t in
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent(
                "ctctl-check-\(getpid())-\(UInt32.random(in: 0..<UInt32.max))")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: false)
            defer { try? FileManager.default.removeItem(at: dir) }
            let metrics = dir.appendingPathComponent("ctctl.prom").path
            #expect(ctctl(["heal", "--check", "--metrics-file", metrics, "--pin-dir", t.pins.path]).status == 70, "no file yet")

            let p = Process()
            p.executableURL = URL(fileURLWithPath: ctctlBinary())
            p.arguments = ["heal", "--interval", "200ms", "--metrics-file", metrics, "--pin-dir", t.pins.path]
            p.standardError = FileHandle.nullDevice
            p.standardOutput = FileHandle.nullDevice
            try p.run()
            defer { if p.isRunning { kill(p.processIdentifier, SIGKILL) } }
            let deadline = Date().addingTimeInterval(5)
            while !FileManager.default.fileExists(atPath: metrics) && Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
            let ok = ctctl(["heal", "--check", "--metrics-file", metrics, "--max-age", "5s"])
            #expect(ok.status == 0, "\(ok.err)")
            #expect(ok.out.hasPrefix("healthy"))
            p.interrupt()
            p.waitUntilExit()
            Thread.sleep(forTimeInterval: 1.1)
            let stale = ctctl(["heal", "--check", "--metrics-file", metrics, "--max-age", "1s"])
            #expect(stale.status == 70)
            #expect(stale.err.contains("the last successful heal pass was"))
            #expect(ctctl(["heal", "--check"]).status == 64, "--check needs --metrics-file")
        }
    }

    @Test(
        "on Calico's maps, heal works with CAP_BPF alone and says the BTF was not checked",
        .enabled(if: CalicoLab.available, "../shared/calico is absent"))
    func calicoOnlyCapBPF() throws {
        try withCalicoLab("deploy", version: "head") { lab in
            let n = CalicoReadTests.Net(v6: false)
            try CalicoWriteTests.incident(lab, n, client: n.stuck)
            let bpf = try runCommand(
                DeployTests.limited("+bpf") + [
                    ctctlBinary(), "heal", "--once", "--layout", "calico", "--pin-dir", lab.pins.path,
                ])
            #expect(bpf.status == 0, "\(bpf.err)")
            #expect(bpf.err.contains("BTF not checked"), "\(bpf.err)")
            #expect(try lab.packet("udp", n.stuck, n.vip).nat == "dnat", "healed with CAP_BPF alone")
            // the watching heal: its in-kernel watch is a TC program (CAP_NET_ADMIN); without
            // it, heal reads the services in full every poll and says why
            let watching = try runCommand(
                ["/usr/bin/timeout", "-s", "INT", "2"] + DeployTests.limited("+bpf") + [
                    ctctlBinary(), "heal", "--interval", "3600s", "--layout", "calico", "--pin-dir", lab.pins.path,
                ])
            #expect(watching.err.contains("watching Calico's services by reading them in full every poll"), "\(watching.err)")
            #expect(watching.err.contains("needs CAP_NET_ADMIN as well as CAP_BPF"), "\(watching.err)")
        }
    }
}
