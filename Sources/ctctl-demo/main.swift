import ConntrackKit
import Foundation
import NetLab

/// `make demo`: loads the dataplane into a throwaway pin directory, attaches it
/// between network namespaces it creates, shows `ctctl dataplane status`, and
/// removes everything it created, on Ctrl-C too.
struct Demo {
    let ctctl: String
    let pinDir = "/sys/fs/bpf/ctctl-demo-\(getpid())"
    let bold = isatty(1) == 1
    let cleanup = Cleanup()

    func say(_ s: String) { print(bold ? "\u{1b}[1m\(s)\u{1b}[0m" : s) }

    /// Runs ctctl as an operator would, showing the command and its output.
    @discardableResult
    func run(_ args: [String]) throws -> Int32 {
        print("$ ctctl " + args.joined(separator: " "))
        let r = try runCommand([ctctl] + args + ["--pin-dir", pinDir])
        print(r.out + r.err, terminator: "")
        return r.status
    }

    func main() throws {
        cleanup.onSignals()
        defer { cleanup.runAll() }

        say("1. Load the dataplane into a throwaway pin directory")
        try sh([ctctl, "dataplane", "load", "--pin-dir", pinDir])
        cleanup.add { [ctctl, pinDir] in _ = try? sh([ctctl, "dataplane", "unload", "--pin-dir", pinDir], allowFailure: true) }
        print("loaded at \(pinDir)")

        say("\n2. Create test hosts: a client, a node and two backends, each in its own network namespace")
        let topo = try Topology("demo")
        cleanup.add { topo.cleanup() }
        print("   \(topo.client)  \(topo.node)  \(topo.backend1)  \(topo.backend2)")

        say("\n3. Attach the dataplane to the node's interfaces")
        for ifname in ["nc", "nb1", "nb2"] {
            try run(["dataplane", "attach", ifname, "--netns", topo.node])
            cleanup.add { [ctctl, pinDir] in
                _ = try? sh([ctctl, "dataplane", "detach", ifname, "--netns", topo.node, "--pin-dir", pinDir], allowFailure: true)
            }
        }

        say("\n4. Status")
        try run(["dataplane", "status"])
        say("\n5. Clean up")
    }
}

guard getuid() == 0 else {
    FileHandle.standardError.write("ctctl-demo: run as root (it creates network namespaces and loads BPF programs)\n".data(using: .utf8)!)
    exit(77)
}
let binDir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
do {
    try Demo(ctctl: binDir.appendingPathComponent("ctctl").path).main()
    print("removed every namespace, link and pin the demo created")
} catch {
    FileHandle.standardError.write("ctctl-demo: \(error)\n".data(using: .utf8)!)
    exit(1)
}
