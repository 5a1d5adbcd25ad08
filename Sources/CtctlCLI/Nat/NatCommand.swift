import ArgumentParser
import ConntrackKit

struct NatCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "nat",
        abstract: "Show the NAT frontends and backends.",
        discussion: ExitStatus.helpTable,
        subcommands: [NatListCommand.self]
    )
}
