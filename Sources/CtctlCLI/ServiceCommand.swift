import ArgumentParser
import ConntrackKit

struct ServiceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "service",
        abstract: "Create, replace and delete services (the reference dataplane's control plane).",
        discussion: ExitStatus.helpTable,
        subcommands: [Set.self, Delete.self]
    )

    struct Set: CtctlCommand {
        static let configuration = CommandConfiguration(
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
        @Option(
            name: .customLong("backend"), help: ArgumentHelp("A backend ADDRESS:PORT (repeat for more).", valueName: "ip:port"))
        var backends: [String] = []

        func execute(_ console: Console) throws -> ExitStatus {
            let ref = try Parse.service(service)
            let eps = try backends.map { try Parse.endpoint($0, what: "backend") }
            try Services.validate(ref, backends: eps)
            let dp = try Dataplane(global.pins, readOnly: false)
            let created = try Services.set(dp, ref, backends: eps, lock: WriterLock(global.pins))
            console.out.line(
                "\(created ? "created" : "replaced") service \(ref) with \(eps.count) backend\(eps.count == 1 ? "" : "s") (service epoch now \(try dp.epoch()))"
            )
            return .success
        }
    }

    struct Delete: CtctlCommand {
        static let configuration = CommandConfiguration(
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
        @OptionGroup var output: EntryOutputOptions
        @Option(help: ArgumentHelp("Append one JSON line per deleted entry to FILE.", valueName: "file")) var auditLog: String?

        func execute(_ console: Console) throws -> ExitStatus {
            var o = Operations.DeleteOptions()
            o.dryRun = dryRun
            o.mode = output.mode
            o.auditLog = auditLog
            return try Operations.deleteService(global.pins, try Parse.service(service), o, console: console)
        }
    }
}

struct NatCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "nat",
        abstract: "Show the NAT frontends and backends.",
        discussion: ExitStatus.helpTable,
        subcommands: [List.self]
    )

    struct List: CtctlCommand {
        static let configuration = CommandConfiguration(
            abstract: "List each service with its backends; flag backends missing from the backend map.",
            discussion: """
                EXAMPLES:
                  ctctl nat list
                  ctctl nat list -o json | jq '.[] | select(.backends | length == 0)'

                \(ExitStatus.helpTable)
                """)

        @OptionGroup var global: GlobalOptions
        @Option(name: .shortAndLong, help: "Output format: table or json.") var output: OutputFormat = .table

        func execute(_ console: Console) throws -> ExitStatus {
            try Operations.natList(global.pins, json: output == .json, console: console)
            return .success
        }
    }
}
