import Glibc
import Logging
import Synchronization

/// SIGINT and SIGTERM, turned into a flag a long-running command polls between batches.
enum StopSignal {
    static let requested = Atomic<Bool>(false)

    /// Installs the handlers and returns the poll.
    static func install() -> @Sendable () -> Bool {
        requested.store(false, ordering: .relaxed)
        signal(SIGINT) { _ in StopSignal.requested.store(true, ordering: .relaxed) }
        signal(SIGTERM) { _ in StopSignal.requested.store(true, ordering: .relaxed) }
        // A parent may have started us with these blocked (the mask is inherited): unblock them.
        var signals = sigset_t()
        sigemptyset(&signals)
        sigaddset(&signals, SIGINT)
        sigaddset(&signals, SIGTERM)
        sigprocmask(SIG_UNBLOCK, &signals, nil)
        return { StopSignal.requested.load(ordering: .relaxed) }
    }
}

extension Operations {
    /// `heal` without --once: the watching heal, logging logfmt to stderr, until SIGINT or
    /// SIGTERM.
    public static func heal(_ target: SessionOptions, _ config: HealDaemon.Config, logLevel: Logger.Level, console: Console)
        throws -> ExitStatus
    {
        var handler = LogfmtHandler(stream: console.err)
        handler.logLevel = logLevel
        let daemon = try HealDaemon(target, config: config, logger: Logger(label: "ctctl.heal", factory: { _ in handler }))
        daemon.run(stop: StopSignal.install())
        return .success
    }
}
