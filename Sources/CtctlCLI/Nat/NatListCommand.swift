import ArgumentParser
import ConntrackKit

struct NatListCommand: CtctlCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "List each service with its backends; flag backends missing from the backend map.",
        discussion: """
            EXAMPLES:
              ctctl nat list
              ctctl nat list -o json | jq '.[] | select(.backends | length == 0)'

            \(ExitStatus.helpTable)
            """)

    @OptionGroup var global: GlobalOptions
    @OptionGroup var output: OutputOptions

    func validate() throws { try output.require([.table, .json], by: "nat list") }

    func execute(_ console: Console) throws -> ExitStatus {
        try Operations.natList(global.target, json: output.json, console: console)
        return .success
    }
}
