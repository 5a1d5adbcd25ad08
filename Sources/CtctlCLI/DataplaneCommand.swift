import ArgumentParser
import ConntrackKit

struct DataplaneCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dataplane",
        abstract: "Load, attach, inspect and unload ctctl's reference eBPF dataplane.",
        discussion: """
            The reference dataplane does service NAT with conntrack over the maps ctctl reads, \
            the way Calico's eBPF mode does: conntrack first, NAT only on a miss.

            \(ExitStatus.helpTable)
            """,
        subcommands: [Load.self, Attach.self, Detach.self, Unload.self, Status.self]
    )

    struct Load: CtctlCommand {
        static let configuration = CommandConfiguration(
            abstract: "Load the dataplane and pin its maps and programs.",
            discussion: """
                Mounts bpffs at /sys/fs/bpf if it is missing. Refuses a pin directory that already \
                holds a dataplane. A failed load leaves nothing pinned.

                EXAMPLES:
                  ctctl dataplane load
                  ctctl dataplane load --ct-size 1048576 --timeout udp=30s,tcp=2h
                  ctctl dataplane load --no-service-epoch    # reproduce the incident

                \(ExitStatus.helpTable)
                """)

        @OptionGroup var global: GlobalOptions

        @Option(help: "Conntrack map size in entries (LRU: size it well above the flows you expect).")
        var ctSize: UInt32 = mapDefaultCTEntries

        @Flag(help: "Switch off the service-epoch re-check (the fix), reproducing the Calico bug.")
        var noServiceEpoch = false

        @Option(
            help: ArgumentHelp("Idle timeouts, e.g. udp=60s,tcp=1h,tcp-closing=30s,other=10m.", valueName: "name=duration,..."))
        var timeout: String?

        func execute(_ console: Console) throws -> ExitStatus {
            var options = LoadOptions()
            options.ctSize = ctSize
            options.serviceEpoch = !noServiceEpoch
            if let timeout { options.timeouts = try Timeouts(parsing: timeout) }
            try Loader.load(global.pins, options: options)
            console.out.line(
                "loaded the dataplane at \(global.pins.path) (conntrack \(ctSize) entries, epoch re-check \(noServiceEpoch ? "off" : "on"))"
            )
            return .success
        }
    }

    struct Attach: CtctlCommand {
        static let configuration = CommandConfiguration(
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
            let dp = try Dataplane(global.pins, readOnly: false)
            try Attachments.attach(dp, ifname: ifname, netns: netns, lock: WriterLock(dp.pinDir))
            console.out.line("attached to \(ifname)\(netns.map { " in network namespace \($0)" } ?? "") (clsact ingress)")
            return .success
        }
    }

    struct Detach: CtctlCommand {
        static let configuration = CommandConfiguration(
            abstract: "Detach the dataplane from an interface.",
            discussion: """
                Removes ctctl's TC filter and the record. The clsact qdisc stays (other filters may use it).

                \(ExitStatus.helpTable)
                """)

        @OptionGroup var global: GlobalOptions
        @Argument(help: "Interface name.") var ifname: String
        @Option(help: "Network namespace name (under /run/netns).") var netns: String?

        func execute(_ console: Console) throws -> ExitStatus {
            let dp = try Dataplane(global.pins, readOnly: false)
            let detached = try Attachments.detach(dp, ifname: ifname, netns: netns, lock: WriterLock(dp.pinDir))
            console.out.line(detached ? "detached from \(ifname)" : "\(ifname) is gone; forgot its record")
            return .success
        }
    }

    struct Unload: CtctlCommand {
        static let configuration = CommandConfiguration(
            abstract: "Unpin the dataplane (refused while it is attached).",
            discussion: """
                Removes exactly the pins `load` created and the pin directory.

                \(ExitStatus.helpTable)
                """)

        @OptionGroup var global: GlobalOptions

        func execute(_ console: Console) throws -> ExitStatus {
            try Loader.unload(global.pins)
            console.out.line("unloaded the dataplane at \(global.pins.path)")
            return .success
        }
    }

    struct Status: CtctlCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show the maps, their occupancy, where the dataplane is attached, and its counters.",
            discussion: """
                EXAMPLES:
                  ctctl dataplane status
                  ctctl dataplane status -o json | jq .counters

                \(ExitStatus.helpTable)
                """)

        @OptionGroup var global: GlobalOptions
        @Option(name: .shortAndLong, help: "Output format: table or json.") var output: OutputFormat = .table

        func execute(_ console: Console) throws -> ExitStatus {
            let dp = try Dataplane(global.pins, readOnly: true)
            let status = try DataplaneStatus.gather(dp)
            console.out.write(output == .json ? status.json().render() + "\n" : status.renderText())
            return .success
        }
    }
}
