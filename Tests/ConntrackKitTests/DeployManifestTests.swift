import Foundation
import Testing

/// docs/deploy/: the DaemonSet validates against the Kubernetes schemas and asks for no more
/// privilege than heal needs.
@Suite("the DaemonSet (no kernel)")
struct DeployManifestTests {
    static let manifest = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("docs/deploy/ctctl-heal-daemonset.yaml").path

    func validate(_ path: String) throws -> (Int32, String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["kubernetes-validate", "--strict", path]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        try p.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        return (p.terminationStatus, text)
    }

    @Test("it validates against the Kubernetes schemas")
    func validates() throws {
        let (status, text) = try validate(DeployManifestTests.manifest)
        #expect(status == 0, "\(text)")
    }

    @Test("the validator bites: a wrong field type is refused")
    func validatorBites() throws {
        let bad = FileManager.default.temporaryDirectory.appendingPathComponent(
            "ctctl-bad-\(getpid())-\(UInt32.random(in: 0..<UInt32.max)).yaml")
        let text = try String(contentsOfFile: DeployManifestTests.manifest, encoding: .utf8)
            .replacingOccurrences(of: "terminationGracePeriodSeconds: 10", with: "terminationGracePeriodSeconds: ten")
        try text.write(to: bad, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: bad) }
        #expect(try validate(bad.path).0 != 0)
    }

    @Test("no privileged mode; every capability dropped but BPF; the bpffs and textfile mounts; a liveness check")
    func leastPrivilege() throws {
        let text = try String(contentsOfFile: DeployManifestTests.manifest, encoding: .utf8)
        #expect(text.contains("privileged: false"))
        #expect(!text.contains("privileged: true"))
        #expect(text.contains(#"drop: ["ALL"]"#))
        #expect(text.contains(#"add: ["BPF"]"#))
        #expect(text.contains("hostNetwork: true"))
        #expect(text.contains("path: /sys/fs/bpf"))
        #expect(text.contains("--metrics-file=/var/lib/node_exporter/textfile_collector/ctctl.prom"))
        #expect(text.contains("livenessProbe:") && text.contains("- --check"))
        #expect(text.contains("limits:") && text.contains("requests:"))
    }
}
