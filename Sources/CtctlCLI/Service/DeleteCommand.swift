import ArgumentParser
import ConntrackKit

struct DeleteCommand: CtctlCommand {
    static let configuration = CommandConfiguration(
        commandName: "delete",
        abstract: "Delete a service and its NAT conntrack entries.",
        discussion: """
            Removes the frontend, bumps the service epoch, removes the backends, then deletes the \
            NAT conntrack entries of the service, both halves, as Calico does. Normal entries \
            addressed to the VIP are left: packets that arrive while the service is gone create \
            them, and they are what `heal` repairs once it is back.

            EXAMPLES:
              ctctl service delete 198.19.0.10:161/udp
              ctctl service delete 198.19.0.10:161/udp --dry-run

            \(ExitStatus.helpTable)
            """)

    @OptionGroup var global: GlobalOptions
    @Argument(help: ArgumentHelp("The frontend: VIP:PORT/PROTO.", valueName: "vip:port/proto")) var service: String
    @Flag(help: "Show what would be deleted; change nothing.") var dryRun = false
    @OptionGroup var output: OutputOptions
    @Option(help: ArgumentHelp("Append one JSON line per deleted entry to FILE.", valueName: "file")) var auditLog: String?

    func execute(_ console: Console) throws -> ExitStatus {
        var o = Operations.DeleteOptions()
        o.dryRun = dryRun
        o.mode = output.mode
        o.auditLog = auditLog
        return try Operations.deleteService(global.target, try Parse.service(service), o, console: console)
    }
}
