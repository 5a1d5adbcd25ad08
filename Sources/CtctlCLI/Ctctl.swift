import ArgumentParser
import ConntrackKit
import Glibc

public let ctctlVersion = "0.1.0"

struct Ctctl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ctctl",
        abstract: "Inspect and repair the conntrack and service NAT maps of an eBPF dataplane.",
        discussion: """
            ctctl reads the dataplane's pinned BPF maps (conntrack, NAT frontends, NAT backends) \
            and finds, explains and removes conntrack entries, above all the stale ones that keep \
            a flow from reaching its service after the service was deleted and recreated. It reads \
            ctctl's own reference dataplane and Calico's eBPF maps (v3.29 to today, IPv4 and \
            IPv6; --layout).

            EXAMPLES:
              ctctl dataplane status
              ctctl conntrack list --proto udp --dport 161
              ctctl conntrack list --stale -o json | jq .
              ctctl conntrack remove udp 198.19.0.10 198.18.0.2
              ctctl heal --once
              ctctl --pin-dir /sys/fs/bpf/tc/globals conntrack list --stale     # a Calico node

            Every command takes --pin-dir DIR (or $CTCTL_PIN_DIR; default /sys/fs/bpf/ctctl, else \
            Calico's /sys/fs/bpf/tc/globals) and --layout (or $CTCTL_LAYOUT; default auto), before \
            or after the subcommand.

            \(ExitStatus.helpTable)
            """,
        version: "ctctl \(ctctlVersion) (map ABI \(mapABIVersion))",
        subcommands: [DataplaneCommand.self, ServiceCommand.self, NatCommand.self, ConntrackCommand.self, HealCommand.self]
    )

    @OptionGroup var global: GlobalOptions
}

/// A leaf command: parses its arguments (ArgumentParser), then makes one library call
/// (ConntrackKit's Operations), writing to an injected console, and returns an exit status.
protocol CtctlCommand: ParsableCommand {
    func execute(_ console: Console) throws -> ExitStatus
}

extension CtctlCommand {
    mutating func run() throws {
        let console = Console.standard()
        let status = try execute(console)
        console.flush()
        if status != .success { throw ExitCode(status.rawValue) }
    }
}

public enum CLI {
    /// Runs one ctctl invocation in-process: the entry point for main and for tests.
    public static func run(_ arguments: [String], console: Console) -> Int32 {
        defer { console.flush() }
        var leaf: CtctlCommand?
        do {
            var command = try Ctctl.parseAsRoot(arguments)
            if let command = command as? CtctlCommand {
                leaf = command
                return try command.execute(console).rawValue
            }
            // Groups and the built-in help command throw a help request, rendered below.
            try command.run()
            return ExitStatus.success.rawValue
        } catch let error as CtctlError {
            console.err.line("ctctl: error: \(error.message)")
            if error.status == .usage, let leaf { usage(of: type(of: leaf), console) }
            return error.status.rawValue
        } catch let error as ValidationError where leaf != nil {
            // thrown while running (input checked against more than one argument): the
            // command's own usage, as for errors found while parsing
            console.err.line("Error: \(error.message)")
            usage(of: type(of: leaf!), console)
            return ExitStatus.usage.rawValue
        } catch {
            let code = Ctctl.exitCode(for: error)
            let message = Ctctl.fullMessage(for: error)
            if code == .success {
                console.out.line(message)
                return 0
            }
            // ArgumentParser reports validation errors with EX_USAGE (64).
            console.err.line(message)
            return code.rawValue == ExitCode.validationFailure.rawValue ? ExitStatus.usage.rawValue : code.rawValue
        }
    }

    /// "Usage: ctctl conntrack remove ..." and where the help is, as ArgumentParser prints them.
    static func usage(of leaf: ParsableCommand.Type, _ console: Console) {
        let usage = Ctctl.usageString(for: leaf)
        console.err.line("Usage: \(usage)")
        let path = usage.split(separator: " ").prefix { !$0.hasPrefix("[") && !$0.hasPrefix("<") && !$0.hasPrefix("-") }
        console.err.line("  See '\(path.joined(separator: " ")) --help' for more information.")
    }
}

extension CLI {
    /// The process entry point: arguments from the command line, stdout and stderr.
    public static func main() -> Never {
        signal(SIGPIPE, SIG_IGN)
        exit(run(Array(CommandLine.arguments.dropFirst()), console: Console.standard()))
    }
}
