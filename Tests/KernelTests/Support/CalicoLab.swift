import ConntrackKit
import Foundation
import NetLab
import Testing

/// Calico's own eBPF datapath, run by ../shared/calico/calico-lab on a private bpffs: maps
/// created as felix creates them, services written as felix writes them, packets through
/// Calico's programs (BPF_PROG_TEST_RUN). One lab a test, in its own directory, taken down
/// even when the test fails.
final class CalicoLab {
    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()
    static let script = repo.deletingLastPathComponent().appendingPathComponent("shared/calico/calico-lab").path

    /// Tests against Calico's datapath skip only where ../shared/calico is absent (CI has it).
    static var available: Bool { FileManager.default.isExecutableFile(atPath: script) }

    let dir: String
    let version: String
    var pins: PinDirectory { PinDirectory(dir + "/tc/globals") }

    /// A lab on a bpffs of its own under /tmp, or (`onHostBPFFS`) in a directory of the
    /// host's /sys/fs/bpf, where taking it down unpins its maps without unmounting anything,
    /// as felix re-pins them.
    init(_ name: String, version: String, onHostBPFFS: Bool = false) throws {
        self.version = version
        if onHostBPFFS {
            try PinDirectory("/sys/fs/bpf").ensureBPFFS()
            dir = "/sys/fs/bpf/ctctl-test-calico-\(name)-\(getpid())"
        } else {
            dir = "/tmp/ctctl-test-calico-\(name)-\(getpid())"
        }
        _ = try? CalicoLab.run(["down", "--bpffs", dir])
        try CalicoLab.run(["up", "--bpffs", dir, "--version", version])
    }

    /// Takes the lab down (every map and program goes), and the lock directory ctctl made
    /// for it beside it, if any.
    func down() {
        let lock = CalicoDataplane.lockDirectory(for: pins).path  // while the directory exists
        _ = try? CalicoLab.run(["down", "--bpffs", dir])
        if !lock.hasPrefix(dir + "/") {
            rmdir(lock)
            rmdir(String(lock[..<lock.lastIndex(of: "/")!]))  // only if no other lock is left there
        }
    }

    @discardableResult
    static func run(_ args: [String]) throws -> String { try sh([script] + args) }

    @discardableResult
    func lab(_ args: [String]) throws -> String {
        try CalicoLab.run([args[0], "--bpffs", dir] + args.dropFirst())
    }

    /// What Calico's program did with one packet.
    struct Out {
        let line: String
        /// "dnat", "snat", "dnat+snat" or "no-nat".
        var nat: String { String(line.split(separator: "(")[1].split(separator: ")")[0]) }
        /// Where the packet went: "ADDR:PORT" after "->".
        var to: String { String(line.split(separator: " ")[4]) }
        var dropped: Bool { line.contains("verdict=drop") }
    }

    /// A packet from a workload through Calico's from-workload program.
    @discardableResult
    func packet(_ proto: String, _ src: String, _ dst: String, flags: String? = nil) throws -> Out {
        Out(
            line: try lab(["packet", proto, src, dst] + (flags.map { ["--tcp-flags", $0] } ?? [])).trimmingCharacters(
                in: .newlines))
    }

    /// A packet towards a workload through the to-workload program (a backend's reply).
    @discardableResult
    func reply(_ proto: String, _ src: String, _ dst: String) throws -> Out {
        Out(line: try lab(["reply", proto, src, dst]).trimmingCharacters(in: .newlines))
    }

    func setService(_ svc: String, _ backends: [String]) throws { try lab(["service", "set", svc] + backends) }
    func deleteService(_ svc: String) throws { try lab(["service", "delete", svc]) }

    /// The lab's decoding of every conntrack entry (Calico's structs), one line each.
    func entries(family: Int? = nil) throws -> [String] {
        try lab(["ct"] + (family.map { ["-\($0)"] } ?? [])).split(separator: "\n").map(String.init)
    }
}

/// Runs `body` with a lab of each version, taken down afterwards whatever happens.
func withCalicoLab(_ name: String, version: String, onHostBPFFS: Bool = false, _ body: (CalicoLab) throws -> Void) throws {
    let lab = try CalicoLab(name, version: version, onHostBPFFS: onHostBPFFS)
    defer { lab.down() }
    try body(lab)
}
