import ArgumentParser
import ConntrackKit

struct AttachCommand: CtctlCommand {
    static let configuration = CommandConfiguration(
        commandName: "attach",
        abstract: "Attach the dataplane to an interface's TC clsact ingress.",
        discussion: """
            With --netns, ctctl enters /run/netns/NAME for the attach itself (no `ip netns exec`, \
            which would hide bpffs). The attachment is recorded in the pin directory.

            EXAMPLES:
              ctctl dataplane attach eth0
              ctctl dataplane attach veth-client --netns node

            \(ExitStatus.helpTable)
            """)

    @OptionGroup var global: GlobalOptions
    @Argument(help: "Interface name.") var ifname: String
    @Option(help: "Network namespace name (under /run/netns).") var netns: String?

    func execute(_ console: Console) throws -> ExitStatus {
        try Operations.attach(global.target, ifname: ifname, netns: netns, console: console)
        return .success
    }
}
