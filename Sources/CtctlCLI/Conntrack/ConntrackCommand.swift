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
