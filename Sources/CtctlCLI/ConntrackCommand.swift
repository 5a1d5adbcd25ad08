import ArgumentParser
import ConntrackKit

struct ConntrackCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "conntrack",
        abstract: "List, inspect and remove conntrack entries.",
        discussion: ExitStatus.helpTable,
        subcommands: [ListCommand.self, GetCommand.self, RemoveCommand.self, StatsCommand.self]
    )
}

struct ListCommand: CtctlCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "List conntrack entries, filtered; or only the stale ones (--stale).",
        discussion: """
            Streams the map with batch lookups. Filters combine; --src/--dst/--sport/--dport always \
            mean the original direction of the flow (client -> service). One line an entry: a NAT \
            flow shows as its forward and its reverse half. A summary goes to stderr.

            --stale shows exactly what `ctctl heal` would delete and why (REASON): missed-nat (a \
            normal entry to what is now a service: the incident), orphan-nat (service or backend \
            gone), half-pair (partner missing, past a 10s grace), expired (idle past the timeout). \
            It takes the writers' lock (the partner check runs in the kernel through a shared stage).

            EXAMPLES:
              ctctl conntrack list --proto udp --dport 161
              ctctl conntrack list --src 198.18.1.2 --type normal -o wide
              ctctl conntrack list --service 198.19.0.10:161/udp
              ctctl conntrack list --stale -o json | jq -r '.[] | "\\(.reason) \\(.src):\\(.sport)"'
              ctctl conntrack list --count

            \(ExitStatus.helpTable)
            """)

    @OptionGroup var global: GlobalOptions
    @OptionGroup var filters: FilterOptions
    @OptionGroup var output: EntryOutputOptions
    @Flag(help: "Only entries heal would delete, with the reason.") var stale = false
    @Flag(help: "Print only the number of entries.") var count = false

    func execute(_ console: Console) throws -> ExitStatus {
        var o = Operations.ListOptions()
        o.filter = try filters.filter()
        o.stale = stale
        o.mode = count ? .count : output.mode
        try Operations.list(global.pins, o, console: console)
        return .success
    }
}

struct GetCommand: CtctlCommand {
    static let configuration = CommandConfiguration(
        commandName: "get",
        abstract: "Show every entry of one flow, looked up by key.",
        discussion: """
            Looks up the tuple, its reverse (a normal flow seen from the reply side) and the partner \
            of each NAT half found: no scan. --explain says what each entry means: which service and \
            backend it maps to, whether the next packet will be translated, and whether it is stale.

            EXAMPLES:
              ctctl conntrack get udp 198.18.1.2:40000 198.19.0.10:161 --explain
              ctctl conntrack get tcp [2001:db8:1::2]:50000 [2001:db8:ff::10]:80 -o json

            \(ExitStatus.helpTable)
            """)

    @OptionGroup var global: GlobalOptions
    @Argument(help: "Protocol: udp, tcp, or a number.") var proto: String
    @Argument(help: ArgumentHelp("Source ADDRESS:PORT.", valueName: "src:sport")) var src: String
    @Argument(help: ArgumentHelp("Destination ADDRESS:PORT.", valueName: "dst:dport")) var dst: String
    @Flag(help: "Explain what each entry means.") var explain = false
    @OptionGroup var output: EntryOutputOptions

    func execute(_ console: Console) throws -> ExitStatus {
        let p = try Parse.proto(proto)
        let s = try Parse.endpoint(src, what: "source")
        let d = try Parse.endpoint(dst, what: "destination")
        guard s.address.family == d.address.family else {
            throw ValidationError("\(s) and \(d) are not of the same address family")
        }
        try Operations.get(global.pins, FlowKey(proto: p, src: s, dst: d), mode: output.mode, explain: explain, console: console)
        return .success
    }
}

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
    @Argument(help: "Protocol: udp, tcp, or a number.") var proto: String
    @Argument(help: ArgumentHelp("Destination address (e.g. the VIP).", valueName: "dst")) var dst: String
    @Argument(help: ArgumentHelp("Source address (e.g. the client).", valueName: "src")) var src: String
    @Option(help: ArgumentHelp("Only entries whose port on the <dst> side is this.", valueName: "port")) var dport: String?
    @Option(help: ArgumentHelp("Only entries whose port on the <src> side is this.", valueName: "port")) var sport: String?
    @Flag(help: "Show what would be removed; change nothing.") var dryRun = false
    @OptionGroup var output: EntryOutputOptions
    @Option(help: ArgumentHelp("Append one JSON line per deleted entry to FILE.", valueName: "file")) var auditLog: String?

    func execute(_ console: Console) throws -> ExitStatus {
        let match = try Operations.PairMatch(
            proto: try Parse.proto(proto), dst: try Parse.address(dst, what: "destination"),
            src: try Parse.address(src, what: "source"),
            dport: try dport.map { try Parse.port($0, what: "--dport") },
            sport: try sport.map { try Parse.port($0, what: "--sport") })
        var o = Operations.DeleteOptions()
        o.dryRun = dryRun
        o.mode = output.mode
        o.auditLog = auditLog
        return try Operations.remove(global.pins, match, o, console: console)
    }
}

struct StatsCommand: CtctlCommand {
    static let configuration = CommandConfiguration(
        commandName: "stats",
        abstract: "Entries by type, protocol and family; occupancy; services; datapath counters.",
        discussion: """
            An LRU conntrack map that is close to full evicts live flows without telling anyone: \
            stats warns above 80%.

            EXAMPLES:
              ctctl conntrack stats
              ctctl conntrack stats -o json | jq .occupancy

            \(ExitStatus.helpTable)
            """)

    @OptionGroup var global: GlobalOptions
    @Option(name: .shortAndLong, help: "Output format: table or json.") var output: OutputFormat = .table

    func execute(_ console: Console) throws -> ExitStatus {
        let s = try ConntrackStats.gather(global.pins)
        console.out.write(output == .json ? s.json().render() + "\n" : s.renderText())
        return .success
    }
}
