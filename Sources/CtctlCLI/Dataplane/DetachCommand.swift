import ArgumentParser
import ConntrackKit

struct DetachCommand: CtctlCommand {
    static let configuration = CommandConfiguration(
        commandName: "detach",
        abstract: "Detach the dataplane from an interface.",
        discussion: """
            Removes ctctl's TC filter and the record. The clsact qdisc stays (other filters may use it).

            \(ExitStatus.helpTable)
            """)

    @OptionGroup var global: GlobalOptions
    @Argument(help: "Interface name.") var ifname: String
    @Option(help: "Network namespace name (under /run/netns).") var netns: String?

    func execute(_ console: Console) throws -> ExitStatus {
        try Operations.detach(global.target, ifname: ifname, netns: netns, console: console)
        return .success
    }
}
