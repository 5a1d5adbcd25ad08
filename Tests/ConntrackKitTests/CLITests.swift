import ConntrackKit
import Testing

@testable import CtctlCLI

func run(_ args: [String]) -> (status: Int32, out: String, err: String) {
    let console = Console.captured()
    let status = CLI.run(args, console: console)
    return (status, (console.out as! CapturedStream).text, (console.err as! CapturedStream).text)
}

@Suite("command line")
struct CLITests {
    @Test(
        "--help reads like a man page: what it does, examples, exit codes",
        arguments: [
            [], ["dataplane"], ["dataplane", "load"], ["dataplane", "attach"], ["dataplane", "status"], ["service", "set"],
            ["service", "delete"], ["nat", "list"], ["conntrack"], ["conntrack", "list"], ["conntrack", "get"],
            ["conntrack", "remove"], ["conntrack", "stats"], ["heal"], ["service"], ["nat"], ["dataplane", "detach"],
            ["dataplane", "unload"],
        ])
    func help(_ path: [String]) {
        let r = run(path + ["--help"])
        #expect(r.status == 0)
        #expect(r.out.contains("USAGE:"))
        #expect(r.out.contains("EXIT STATUS:"))
        #expect(r.out.contains("--pin-dir") || path.count < 2)
        #expect(
            r.out.contains("EXAMPLES:") || path.count < 2 || path == ["dataplane", "detach"] || path == ["dataplane", "unload"])
    }

    @Test("--version names the map ABI")
    func version() {
        let r = run(["--version"])
        #expect(r.status == 0)
        #expect(r.out.contains("map ABI \(mapABIVersion)"))
    }

    @Test(
        "usage errors exit 64 with the problem on stderr",
        arguments: [
            ["dataplane", "frobnicate"], ["dataplane", "load", "--ct-size", "many"], ["dataplane", "status", "-o", "yaml"],
            ["dataplane", "attach"], ["--no-such-flag"],
        ])
    func usage(_ args: [String]) {
        let r = run(args)
        #expect(r.status == 64)
        #expect(r.out.isEmpty)
        #expect(!r.err.isEmpty)
    }

    /// Bad input is refused before any map is opened: these run with no dataplane at all
    /// (a pin directory that does not exist), and must say 64, not 69.
    @Test(
        "malformed input exits 64 with one line naming the problem, before touching any map",
        arguments: [
            (["conntrack", "list", "--src", "198.18.1"], "bad --src '198.18.1'"),
            (["conntrack", "list", "--dst", "198.18.0.0/33"], "bad --dst"),
            (["conntrack", "list", "--dport", "70000"], "a port is a number 0-65535"),
            (["conntrack", "list", "--sport", "-1"], "--sport"),
            (["conntrack", "list", "--proto", "icmpx"], "bad protocol 'icmpx'"),
            (["conntrack", "list", "--type", "nat"], "bad --type 'nat'"),
            (["conntrack", "list", "--family", "5"], "bad --family '5'"),
            (["conntrack", "list", "--service", "198.19.0.10:161"], "bad service"),
            (["conntrack", "list", "--src", "198.18.1.2", "--dst", "2001:db8::1"], "different address families"),
            (["conntrack", "list", "--family", "6", "--src", "198.18.1.2"], "contradicts"),
            (["conntrack", "get", "udp", "198.18.1.2:1", "[2001:db8::1]:2"], "not of the same address family"),
            (["conntrack", "get", "udp", "198.18.1.2", "198.18.1.3:2"], "write ADDRESS:PORT"),
            (["conntrack", "get", "sctpx", "198.18.1.2:1", "198.18.1.3:2"], "bad protocol"),
            (["conntrack", "remove", "udp", "198.19.0.10", "2001:db8::2"], "not of the same address family"),
            (["conntrack", "remove", "udp", "198.19.0.300", "198.18.1.2"], "not an IPv4 or IPv6 address"),
            (["conntrack", "remove", "udp", "198.19.0.10", "198.18.1.2", "--dport", "http"], "a port is a number"),
            (["service", "set", "198.19.0.10:161/udp", "--backend", "[2001:db8::2]:161"], "not of the same address family"),
            (["service", "set", "198.19.0.10:161/udp", "--backend", "198.18.2.2"], "write ADDRESS:PORT"),
            (
                ["service", "set", "198.19.0.10:161/udp", "--backend", "198.18.2.2:1", "--backend", "198.18.2.2:1"],
                "listed twice"
            ),
            (["service", "delete", "198.19.0.10/udp"], "bad service"),
        ])
    func badInput(_ args: [String], _ message: String) {
        let r = run(args + ["--pin-dir", "/sys/fs/bpf/ctctl-unit-no-such-dir"])
        #expect(r.status == 64, "\(args): \(r.err)")
        #expect(r.err.contains(message), "\(args): \(r.err)")
        #expect(r.out.isEmpty)
    }

    @Test("--pin-dir and --layout work before the subcommand as after it")
    func globalOptionsFirst() {
        let dir = "/sys/fs/bpf/ctctl-unit-global-first"
        for args in [
            ["--pin-dir", dir, "conntrack", "list"], ["conntrack", "list", "--pin-dir", dir],
            ["conntrack", "--pin-dir", dir, "list"], ["--layout", "ctctl", "conntrack", "list", "--pin-dir", dir],
        ] {
            let r = run(args)
            #expect(r.status == 69, "\(args): \(r.err)")
            #expect(r.err.contains(dir), "\(args): the error names the directory given: \(r.err)")
        }
    }

    @Test(
        "a format a command does not have is refused, not ignored (exit 64)",
        arguments: [["conntrack", "stats"], ["dataplane", "status"], ["nat", "list"]])
    func unsupportedFormat(_ path: [String]) {
        let r = run(path + ["-o", "wide", "--pin-dir", "/sys/fs/bpf/ctctl-unit-no-such-dir"])
        #expect(r.status == 64)
        #expect(r.err.contains("has no -o wide"), "\(r.err)")
        #expect(r.err.contains("Usage: ctctl \(path.joined(separator: " "))"), "\(r.err)")
    }

    @Test("a usage error found while running prints that command's usage, not the root's")
    func leafUsage() {
        let r = run(["conntrack", "remove", "udp", "198.19.0.10", "2001:db8::2", "--pin-dir", "/sys/fs/bpf/ctctl-unit-x"])
        #expect(r.status == 64)
        #expect(r.err.contains("Usage: ctctl conntrack remove"), "\(r.err)")
        #expect(r.err.contains("See 'ctctl conntrack remove --help'"), "\(r.err)")
        let g = run(["conntrack", "get", "udp", "198.18.1.2", "198.18.1.3:2", "--pin-dir", "/sys/fs/bpf/ctctl-unit-x"])
        #expect(g.status == 64 && g.err.contains("Usage: ctctl conntrack get"), "\(g.err)")
    }

    @Test(
        "an empty --pin-dir or an unknown --layout is a usage error",
        arguments: [
            ["conntrack", "list", "--pin-dir", ""], ["conntrack", "list", "--layout", "cilium"],
            ["--layout", "nope", "nat", "list"],
        ])
    func badGlobal(_ args: [String]) {
        let r = run(args)
        #expect(r.status == 64, "\(args): \(r.err)")
        #expect(r.err.contains("--pin-dir is empty") || r.err.contains("bad --layout"), "\(r.err)")
    }
}
