import ArgumentParser
import ConntrackKit

struct RemoveCommand: CtctlCommand {
    static let configuration = CommandConfiguration(
        commandName: "remove",
        abstract: "Remove the entries between two addresses, with their NAT partners.",
        discussion: """
            Matches the address pair in either direction for that protocol, all ports (as \
            `calico-node -bpf conntrack remove` does), narrowed by --dport (the port on the <dst> \
            side) and --sport (the <src> side). Unlike Calico, each matched NAT entry's partner goes \
            too, so no half flow is left. Each delete is re-checked in the kernel: an entry the \
            datapath re-created since it was read (another created time) is kept. Prints each entry \
            and a summary; exits 1 if nothing matched.

            EXAMPLES:
              ctctl conntrack remove udp 198.19.0.10 198.18.1.2
              ctctl conntrack remove udp 198.19.0.10 198.18.1.2 --dport 161 --sport 40000 --dry-run
              ctctl conntrack remove tcp 2001:db8:ff::10 2001:db8:1::2 --audit-log /var/log/ctctl-audit.jsonl

            \(ExitStatus.helpTable)
            """)

    @OptionGroup var global: GlobalOptions
    @OptionGroup var scan: ThreadOptions
    @Argument(help: "Protocol: udp, tcp, or a number.") var proto: String
    @Argument(help: ArgumentHelp("Destination address (e.g. the VIP).", valueName: "dst")) var dst: String
    @Argument(help: ArgumentHelp("Source address (e.g. the client).", valueName: "src")) var src: String
    @Option(help: ArgumentHelp("Only entries whose port on the <dst> side is this.", valueName: "port")) var dport: String?
    @Option(help: ArgumentHelp("Only entries whose port on the <src> side is this.", valueName: "port")) var sport: String?
    @Flag(help: "Show what would be removed; change nothing.") var dryRun = false
    @OptionGroup var output: OutputOptions
    @Option(help: ArgumentHelp("Append one JSON line per deleted entry to FILE.", valueName: "file")) var auditLog: String?

    func execute(_ console: Console) throws -> ExitStatus {
        let match = try PairMatch(
            proto: try Parse.proto(proto), dst: try Parse.address(dst, what: "destination"),
            src: try Parse.address(src, what: "source"),
            dport: try dport.map { try Parse.port($0, what: "--dport") },
            sport: try sport.map { try Parse.port($0, what: "--sport") })
        var o = Operations.DeleteOptions()
        o.dryRun = dryRun
        o.mode = output.mode
        o.auditLog = auditLog
        o.threads = scan.threads
        return try Operations.remove(global.target, match, o, console: console)
    }
}
