import ConntrackKit
import Testing
@testable import ctctl

func run(_ args: [String]) -> (status: Int32, out: String, err: String) {
    let console = Console.captured()
    let status = CLI.run(args, console: console)
    return (status, (console.out as! CapturedStream).text, (console.err as! CapturedStream).text)
}

@Suite("command line")
struct CLITests {
    @Test("--help reads like a man page: what it does, examples, exit codes", arguments: [
        [], ["dataplane"], ["dataplane", "load"], ["dataplane", "attach"], ["dataplane", "status"],
    ])
    func help(_ path: [String]) {
        let r = run(path + ["--help"])
        #expect(r.status == 0)
        #expect(r.out.contains("USAGE:"))
        #expect(r.out.contains("EXIT STATUS:"))
        #expect(r.out.contains("--pin-dir") || path.isEmpty || path == ["dataplane"])
    }

    @Test("--version names the map ABI")
    func version() {
        let r = run(["--version"])
        #expect(r.status == 0)
        #expect(r.out.contains("map ABI \(mapABIVersion)"))
    }

    @Test("usage errors exit 64 with the problem on stderr", arguments: [
        ["dataplane", "frobnicate"], ["dataplane", "load", "--ct-size", "many"], ["dataplane", "status", "-o", "yaml"],
        ["dataplane", "attach"], ["--no-such-flag"],
    ])
    func usage(_ args: [String]) {
        let r = run(args)
        #expect(r.status == 64)
        #expect(r.out.isEmpty)
        #expect(!r.err.isEmpty)
    }
}
