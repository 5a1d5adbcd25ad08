import ArgumentParser
import ConntrackKit

struct UnloadCommand: CtctlCommand {
    static let configuration = CommandConfiguration(
        commandName: "unload",
        abstract: "Unpin the dataplane (refused while it is attached).",
        discussion: """
            Removes exactly the pins `load` created and the pin directory.

            \(ExitStatus.helpTable)
            """)

    @OptionGroup var global: GlobalOptions

    func execute(_ console: Console) throws -> ExitStatus {
        try Operations.unload(global.target, console: console)
        return .success
    }
}
