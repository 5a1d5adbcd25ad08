import Foundation
import Testing

let deployDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("docs/deploy")
/// The DaemonSets: ctctl's own dataplane, and Calico's maps.
let manifests = ["ctctl-heal-daemonset.yaml", "ctctl-heal-calico-daemonset.yaml"].map {
    deployDirectory.appendingPathComponent($0).path
}

/// docs/deploy/: the DaemonSet validates against the Kubernetes schemas and asks for no more
/// privilege than heal needs.
@Suite("the DaemonSet (no kernel)")
struct DeployManifestTests {
    static let manifest = deployDirectory.appendingPathComponent("ctctl-heal-daemonset.yaml").path
    static let calico = deployDirectory.appendingPathComponent("ctctl-heal-calico-daemonset.yaml").path

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

    @Test("it validates against the Kubernetes schemas", arguments: manifests)
    func validates(_ path: String) throws {
        let (status, text) = try validate(path)
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

    @Test(
        "no privileged mode; every capability dropped but BPF; the bpffs and textfile mounts; a liveness check",
        arguments: manifests)
    func leastPrivilege(_ path: String) throws {
        let text = try String(contentsOfFile: path, encoding: .utf8)
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

    @Test("the Calico DaemonSet names Calico's maps and layout")
    func calico() throws {
        let text = try String(contentsOfFile: DeployManifestTests.calico, encoding: .utf8)
        #expect(text.contains("- --layout=calico") && text.contains("- --pin-dir=/sys/fs/bpf/tc/globals"))
        #expect(!text.contains("SYS_ADMIN\"]"), "BTF checks are documented, not granted")
    }
}
