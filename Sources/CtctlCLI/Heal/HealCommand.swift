import ArgumentParser
import ConntrackKit
import Logging

struct HealCommand: CtctlCommand {
    static let configuration = CommandConfiguration(
        commandName: "heal",
        abstract: "Delete stale conntrack entries: once, or as a daemon that reacts to service changes.",
        discussion: """
            A pass judges every entry against one consistent view of the services (under the \
            writers' lock) and deletes the stale ones, each with its NAT partner:
              missed-nat  a normal entry to what is now a service with backends (the incident)
              orphan-nat  a NAT entry whose service is gone or whose backend was removed
              half-pair   a NAT entry whose partner is gone, older than --grace
              expired     idle past the timeout (a NAT pair: both halves idle)
            Deletes are checked in the kernel against the identity (type, created time) the scan \
            read: a stuck flow refreshed every few ms is still healed; a flow the datapath \
            re-created meanwhile survives. `conntrack list --stale` shows what a pass would delete.

            Without --once, heal runs until SIGINT or SIGTERM: it reads the service epoch every \
            100 ms and runs a pass as soon as services change, plus a full pass every --interval \
            (with 10% jitter). Structured log lines (logfmt) go to stderr; --metrics-file writes \
            Prometheus text for node_exporter's textfile collector after every pass.

            --check is a liveness probe for a running heal: it reads --metrics-file and exits 0 \
            if a pass succeeded within --max-age, 70 otherwise.

            EXAMPLES:
              ctctl heal --once --dry-run
              ctctl heal --once -o json --audit-log /var/log/ctctl-audit.jsonl
              ctctl heal --once --proto udp --dst 198.19.0.10
              ctctl heal --interval 10s --metrics-file /var/lib/node_exporter/textfile/ctctl.prom
              ctctl heal --check --metrics-file /var/lib/node_exporter/textfile/ctctl.prom --max-age 60s

            \(ExitStatus.helpTable)
            """)

    @OptionGroup var global: GlobalOptions
    @OptionGroup var scan: ThreadOptions
    @OptionGroup var judge: JudgeOptions
    @Flag(help: "Run one pass and exit (0: something was healed, 1: nothing was stale).") var once = false
    @Flag(help: "Judge and report, delete nothing.") var dryRun = false
    @OptionGroup var filters: FilterOptions
    @OptionGroup var output: OutputOptions
    @Option(help: ArgumentHelp("Append one JSON line per deleted entry to FILE.", valueName: "file")) var auditLog: String?
    @Option(help: ArgumentHelp("Daemon: a full pass this often.", valueName: "duration")) var interval = "10s"
    @Option(help: ArgumentHelp("Daemon: write Prometheus text metrics here after each pass.", valueName: "file")) var metricsFile:
        String?
    @Option(help: ArgumentHelp("How old a NAT half must be before a missing partner makes it stale.", valueName: "duration"))
    var grace = "10s"
    @Option(help: ArgumentHelp("Daemon log level: debug, info, warning, error.", valueName: "level")) var logLevel = "info"
    @Flag(help: "Liveness probe: exit 0 if the heal writing --metrics-file succeeded within --max-age.") var check = false
    @Option(help: ArgumentHelp("With --check: how old the last successful pass may be.", valueName: "duration")) var maxAge =
        "60s"

    func execute(_ console: Console) throws -> ExitStatus {
        if check {
            guard let metricsFile else {
                throw ValidationError("--check needs --metrics-file (the file the running heal writes)")
            }
            let max = try Parse.duration(maxAge, what: "--max-age", example: "60s")
            return try Operations.healCheck(metricsFile: metricsFile, maxAgeNs: max, console: console)
        }
        var o = HealOptions()
        o.filter = try filters.filter()
        o.dryRun = dryRun
        o.auditLog = auditLog
        o.graceNs = try Parse.duration(grace, what: "--grace")
        o.threads = scan.threads
        if once {
            return try Operations.healOnce(try judge.apply(to: global.target), o, mode: output.mode, console: console)
        }
        guard let i = DurationText.parseNanoseconds(interval), i >= 100_000_000 else {
            throw ValidationError("bad --interval '\(interval)': a duration of at least 100ms, e.g. 10s")
        }
        guard let level = Logger.Level(rawValue: logLevel) else {
            throw ValidationError("bad --log-level '\(logLevel)': debug, info, warning or error")
        }
        var config = HealDaemon.Config()
        config.intervalNs = i
        config.metricsFile = metricsFile
        config.options = o
        return try Operations.heal(try judge.apply(to: global.target), config, logLevel: level, console: console)
    }
}
