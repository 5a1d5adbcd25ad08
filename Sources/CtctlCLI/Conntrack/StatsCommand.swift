import ArgumentParser
import ConntrackKit

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
    @OptionGroup var scan: ThreadOptions
    @OptionGroup var output: OutputOptions

    func validate() throws { try output.require([.table, .json], by: "conntrack stats") }

    func execute(_ console: Console) throws -> ExitStatus {
        let s = try ConntrackStats.gather(global.target, threads: scan.threads, console: console)
        console.out.write(output.json ? s.json().render() + "\n" : s.renderText())
        return .success
    }
}
