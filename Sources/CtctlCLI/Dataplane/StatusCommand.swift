import ArgumentParser
import ConntrackKit

struct StatusCommand: CtctlCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show the maps, their occupancy, where the dataplane is attached, and its counters.",
        discussion: """
            EXAMPLES:
              ctctl dataplane status
              ctctl dataplane status -o json | jq .counters

            \(ExitStatus.helpTable)
            """)

    @OptionGroup var global: GlobalOptions
    @OptionGroup var output: OutputOptions

    func validate() throws { try output.require([.table, .json], by: "dataplane status") }

    func execute(_ console: Console) throws -> ExitStatus {
        try Operations.status(global.target, json: output.json, console: console)
        return .success
    }
}
