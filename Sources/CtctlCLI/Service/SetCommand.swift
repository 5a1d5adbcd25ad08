import ArgumentParser
import ConntrackKit

struct SetCommand: CtctlCommand {
    static let configuration = CommandConfiguration(
        commandName: "set",
        abstract: "Create or replace a service.",
        discussion: """
            Writes the backends and the frontend so that a packet never sees a frontend whose \
            backends are not all written (backends first when growing, the frontend first when \
            shrinking), then bumps the service epoch. Conntrack is not touched. A service with \
            no --backend drops its packets.

            EXAMPLES:
              ctctl service set 198.19.0.10:161/udp --backend 198.18.2.2:1161 --backend 198.18.3.2:1161
              ctctl service set [2001:db8::10]:53/udp --backend [2001:db8:2::2]:53

            \(ExitStatus.helpTable)
            """)

    @OptionGroup var global: GlobalOptions
    @Argument(help: ArgumentHelp("The frontend: VIP:PORT/PROTO.", valueName: "vip:port/proto")) var service: String
    @Option(name: .customLong("backend"), help: ArgumentHelp("A backend ADDRESS:PORT (repeat for more).", valueName: "ip:port"))
    var backends: [String] = []

    func execute(_ console: Console) throws -> ExitStatus {
        let ref = try Parse.service(service)
        let eps = try backends.map { try Parse.endpoint($0, what: "backend") }
        try Operations.setService(global.target, ref, backends: eps, console: console)
        return .success
    }
}
