import ArgumentParser
import ConntrackKit

struct ServiceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "service",
        abstract: "Create, replace and delete services (the reference dataplane's control plane).",
        discussion: ExitStatus.helpTable,
        subcommands: [SetCommand.self, DeleteCommand.self]
    )
}
