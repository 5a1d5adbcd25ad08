import ConntrackKit
import Foundation
import NetLab

/// `make demo`: the incident, end to end, on real kernel networking (see
/// Sources/NetLab/Incident.swift). Creates its own network namespaces, dataplane and
/// service, and removes them at the end or on Ctrl-C.
///   --fast   short phases (CI)
///   --keep   leave everything in place for exploring (prints how to remove it)
let args = Set(CommandLine.arguments.dropFirst())
if args.contains("--help") || args.contains("-h") {
    print("usage: ctctl-demo [--fast] [--keep]\n  --fast  short phases (CI)\n  --keep  leave the setup in place afterwards")
    exit(0)
}
guard args.isSubset(of: ["--fast", "--keep"]) else {
    FileHandle.standardError.write("ctctl-demo: unknown option (usage: ctctl-demo [--fast] [--keep])\n".data(using: .utf8)!)
    exit(64)
}
guard getuid() == 0 else {
    FileHandle.standardError.write(
        "ctctl-demo: run as root (it creates network namespaces and loads BPF programs)\n".data(using: .utf8)!)
    exit(77)
}
var config = Incident.Config(
    ctctl: URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("ctctl").path)
config.phaseSeconds = args.contains("--fast") ? 1.5 : 3
config.color = isatty(1) == 1
config.keep = args.contains("--keep")
do {
    try Incident(config).run()
    if !config.keep { print("\nRemoved every namespace, link and pin the demo created.") }
} catch {
    FileHandle.standardError.write("ctctl-demo: \(error)\n".data(using: .utf8)!)
    exit(1)
}
