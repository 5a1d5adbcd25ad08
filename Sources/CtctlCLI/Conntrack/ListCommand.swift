import ArgumentParser
import ConntrackKit

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
            It reads only: it takes no lock and works on a read-only bpffs.

            EXAMPLES:
              ctctl conntrack list --proto udp --dport 161
              ctctl conntrack list --src 198.18.1.2 --type normal -o wide
              ctctl conntrack list --service 198.19.0.10:161/udp
              ctctl conntrack list --stale -o json | jq -r '.[] | "\\(.reason) \\(.src):\\(.sport)"'
              ctctl conntrack list --count

            \(ExitStatus.helpTable)
            """)

    @OptionGroup var global: GlobalOptions
    @OptionGroup var scan: ThreadOptions
    @OptionGroup var judge: JudgeOptions
    @OptionGroup var filters: FilterOptions
    @OptionGroup var output: OutputOptions
    @Flag(help: "Only entries heal would delete, with the reason.") var stale = false
    @Flag(help: "Print only the number of entries.") var count = false

    func execute(_ console: Console) throws -> ExitStatus {
        var o = Operations.ListOptions()
        o.filter = try filters.filter()
        o.stale = stale
        o.mode = count ? .count : output.mode
        o.threads = scan.threads
        try Operations.list(try judge.apply(to: global.target), o, console: console)
        return .success
    }
}
