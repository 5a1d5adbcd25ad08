import ConntrackKit
import Foundation
import NetLab

@testable import CtctlCLI

/// One ctctl invocation, run in-process with captured output.
func ctctl(_ args: [String]) -> CommandResult {
    let console = Console.captured()
    let status = CLI.run(args, console: console)
    return CommandResult(status: status, out: (console.out as! CapturedStream).text, err: (console.err as! CapturedStream).text)
}

/// The built ctctl binary, beside the test bundle (for tests that need a separate process).
func ctctlBinary() -> String {
    let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? ""
    return URL(fileURLWithPath: exe).deletingLastPathComponent().appendingPathComponent("ctctl").path
}
