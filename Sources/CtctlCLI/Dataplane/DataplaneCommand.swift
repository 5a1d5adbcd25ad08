import ArgumentParser
import ConntrackKit

struct DataplaneCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dataplane",
        abstract: "Load, attach, inspect and unload ctctl's reference eBPF dataplane.",
        discussion: """
            The reference dataplane does service NAT with conntrack over the maps ctctl reads, \
            the way Calico's eBPF mode does: conntrack first, NAT only on a miss. `status` also \
            shows another layout's maps (Calico's); load, unload, attach and detach refuse them.

            \(ExitStatus.helpTable)
            """,
        subcommands: [LoadCommand.self, AttachCommand.self, DetachCommand.self, UnloadCommand.self, StatusCommand.self]
    )
}
