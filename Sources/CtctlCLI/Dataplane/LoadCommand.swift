import ArgumentParser
import ConntrackKit

struct LoadCommand: CtctlCommand {
    static let configuration = CommandConfiguration(
        commandName: "load",
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
        try Operations.load(global.target, options, console: console)
        return .success
    }
}
