import CLibBPF
import Glibc
import Logging

/// `ctctl heal`: watches the service epoch (a load from shared memory every 100 ms) and
/// runs a pass as soon as services change, plus a full pass every interval (with
/// jitter). Stops between batches on SIGINT or SIGTERM.
public final class HealDaemon {
    public struct Config: Sendable {
        public var intervalNs: UInt64 = 10_000_000_000
        public var jitter = 0.1
        public var pollNs: UInt64 = 100_000_000
        public var metricsFile: String?
        public var options = HealOptions()
        public init() {}
    }

    let healer: Healer
    let config: Config
    let logger: Logger
    let metrics: HealMetrics?

    public init(_ target: SessionOptions, config: Config, logger: Logger) throws(CtctlError) {
        // A metrics path that cannot be written is an error now, not after the first pass.
        metrics = try config.metricsFile.map { p throws(CtctlError) in try HealMetrics(path: p) }
        var options = config.options
        // a node's background job: one thread unless told otherwise
        if options.threads == nil { options.threads = 1 }
        healer = try Healer(target, options: options, auditCommand: "heal")
        self.config = config
        self.logger = logger
    }

    func nextInterval() -> UInt64 {
        let span = Double(config.intervalNs) * config.jitter
        return UInt64(max(0, Double(config.intervalNs) + Double.random(in: -span...span)))
    }

    /// The pinned maps are checked against the ones opened (kernel ids: a BPF_OBJ_GET and an
    /// info query) every this many polls, once a second: most of an idle poll's cost. The epoch
    /// is read at every poll, and every pass checks all its maps anyway.
    static let pinCheckPolls = 10

    /// Runs until `stop()` is true; returns the number of passes run.
    @discardableResult
    public func run(stop: @escaping () -> Bool) -> Int {
        var passes = 0
        var lastEpoch: UInt64? = nil
        var nextFull = Timestamp.monotonicNow()
        var available = true
        logger.info(
            "heal started",
            metadata: [
                "pin_dir": "\(healer.pins.path)", "interval": "\(DurationText.format(nanoseconds: config.intervalNs))",
                "dry_run": "\(config.options.dryRun)",
            ])
        var pending: String? = nil  // a pass to run now whatever the epoch (after a reload)
        watchServices()
        var polls = 0
        while !stop() {
            defer { polls += 1 }
            let now = Timestamp.monotonicNow()
            if !available {
                // the dataplane was unloaded: look for it again at every poll (one stat)
                if follow("dataplane is back") {
                    available = true
                    pending = "reload"
                }
            } else if polls % HealDaemon.pinCheckPolls == 0 && !healer.dataplane.stillPinned() {
                // the epoch we watch lives in maps that are no longer pinned: unloaded, or
                // reloaded (new maps at the same paths, whose epoch we would never see move)
                available = follow("dataplane reloaded: following the new maps")
                pending = available ? "reload" : nil
                if !available {
                    logger.warning("dataplane unloaded: waiting for it", metadata: ["pin_dir": "\(healer.pins.path)"])
                }
            } else {
                let epoch = try? healer.dataplane.serviceVersion()
                var trigger = pending
                if trigger == nil, let epoch, let last = lastEpoch, epoch != last { trigger = "epoch" }
                if now >= nextFull { trigger = trigger ?? (passes == 0 ? "start" : "interval") }
                if let trigger {
                    pending = nil
                    // Remember the epoch the pass judged against (read at its start), not the
                    // one after it: a service change during the pass triggers the next one.
                    let (ok, judgedEpoch) = runPass(trigger: trigger, stop: stop)
                    passes += 1
                    lastEpoch = judgedEpoch ?? epoch
                    if trigger != "epoch" || now >= nextFull { nextFull = Timestamp.monotonicNow() + nextInterval() }
                    switch ok {
                    case .ok: break
                    case .unavailable: available = false
                    case .replaced:
                        // reloaded during the pass: follow at once, and judge the new maps
                        available = follow("dataplane reloaded during a pass: following the new maps")
                        pending = available ? "reload" : nil
                    }
                } else if lastEpoch == nil {
                    lastEpoch = epoch
                }
            }
            var ts = timespec(tv_sec: Int(config.pollNs / 1_000_000_000), tv_nsec: Int(config.pollNs % 1_000_000_000))
            nanosleep(&ts, nil)
        }
        logger.info("heal stopped", metadata: ["passes": "\(passes)"])
        return passes
    }

    /// Reopens the maps pinned now (after an unload, or a reload); logs and says if it worked.
    /// Sets up the dataplane's cheapest way to answer the polls, and logs which it got.
    func watchServices() {
        if let how = healer.dataplane.watchServices() { logger.info("\(how)", metadata: ["pin_dir": "\(healer.pins.path)"]) }
    }

    func follow(_ message: String) -> Bool {
        do {
            try healer.reopen()
            logger.info("\(message)", metadata: ["pin_dir": "\(healer.pins.path)"])
            watchServices()
            return true
        } catch {
            logger.debug("no dataplane yet", metadata: ["pin_dir": "\(healer.pins.path)", "error": "\(error.message)"])
            return false
        }
    }

    enum PassOutcome { case ok, unavailable, replaced }

    /// One pass, logged and counted: how it ended, and the service epoch it judged against.
    func runPass(trigger: String, stop: @escaping () -> Bool) -> (PassOutcome, UInt64?) {
        do {
            let r = try healer.pass(printer: nil, shouldStop: stop)
            var meta: Logger.Metadata = [
                "trigger": "\(trigger)", "scanned": "\(r.scanned)", "stale": "\(r.stale)", "deleted": "\(r.deleted)",
                "kept_changed": "\(r.changed)", "duration_ms": "\(String(format1: Double(r.durationNs) / 1e6))",
                "epoch": "\(r.epoch)",
            ]
            for reason in StaleReason.allCases {
                meta["deleted_" + String(reason.rawValue.map { $0 == "-" ? "_" : $0 })] = "\(r.deletedByReason[reason] ?? 0)"
            }
            if r.stopped { meta["stopped"] = "true" }
            // metrics first, the log line last: a logged pass has its metrics on disk
            metrics?.record(trigger: trigger, r, counters: (try? healer.dataplane.counters()) ?? [])
            try writeMetrics()
            logger.info("pass", metadata: meta)
            return (.ok, r.serviceVersion)
        } catch let e as CtctlError where e.status == .unavailable {
            logger.error("pass failed", metadata: ["trigger": "\(trigger)", "error": "\(e.message)"])
            metrics?.recordError()
            try? writeMetrics()
            return (e.cause == .dataplaneReplaced ? .replaced : .unavailable, nil)
        } catch {
            logger.error("pass failed", metadata: ["trigger": "\(trigger)", "error": "\(error)"])
            metrics?.recordError()
            try? writeMetrics()
            return (.ok, nil)
        }
    }

    func writeMetrics() throws {
        guard let metrics else { return }
        do { try metrics.write() } catch {
            logger.error("writing metrics failed", metadata: ["file": "\(metrics.path)", "error": "\(error)"])
        }
    }
}
