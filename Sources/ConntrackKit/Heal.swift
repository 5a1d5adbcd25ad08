import CLibBPF
import Glibc
import Logging

/// What one heal pass is asked to do.
public struct HealOptions: Sendable {
    public var filter = ConntrackFilter()
    public var dryRun = false
    public var graceNs = StaleJudge.defaultGraceNs
    public var auditLog: String?
    public init() {}
}

/// What one heal pass did.
public struct PassResult: Sendable {
    public var scanned = 0
    public var stale = 0
    public var staleByReason: [StaleReason: Int] = [:]
    /// Entries deleted, NAT partners included.
    public var deleted = 0
    public var deletedByReason: [StaleReason: Int] = [:]
    /// Kept because the datapath re-created them between the read and the delete.
    public var changed = 0
    /// Kept because the rule they were judged by no longer held at delete time.
    public var noLongerStale = 0
    public var wouldDelete = 0
    public var wouldDeleteByReason: [StaleReason: Int] = [:]
    public var durationNs: UInt64 = 0
    /// Stopped early by a signal (between batches).
    public var stopped = false
    public var epoch: UInt32 = 0
    public var ctMaxEntries: UInt32 = 0
}

/// One heal pass: under the writers' lock, judge every entry against one consistent view
/// of the services, and delete the stale ones (with their NAT partners) through the
/// kernel's compare-and-delete. Memory stays at one map batch and two stages.
public final class Healer {
    public let pins: PinDirectory
    let options: HealOptions
    let audit: AuditLog?
    var dp: Dataplane

    public init(_ pins: PinDirectory, options: HealOptions, auditCommand: String) throws(CtctlError) {
        self.pins = pins
        self.options = options
        dp = try Dataplane(pins, readOnly: options.dryRun)
        audit = try options.auditLog.map { p throws(CtctlError) in try AuditLog(path: p, command: auditCommand) }
    }

    /// Re-opens the maps (after the dataplane was unloaded and loaded again).
    public func reopen() throws(CtctlError) { dp = try Dataplane(pins, readOnly: options.dryRun) }

    public var dataplane: Dataplane { dp }

    /// `printer`: where each handled entry is printed (nil: nowhere). `shouldStop` is
    /// checked between batches; a pass never stops between the two deletes of a pair
    /// (both halves go in one kernel run).
    public func pass(printer: EntryPrinter?, shouldStop: @escaping () -> Bool = { false }) throws -> PassResult {
        let start = Timestamp.monotonicNow()
        // a dry run reads only; a real pass holds the writers' lock from start to end
        let lock = options.dryRun ? nil : try WriterLock(pins)
        defer { _ = lock }
        if let lock { try dp.verify(holding: lock) } else { try dp.verifyPinned() }
        let view = try ServiceView.read(dp, holdingLock: lock != nil)
        let judge = StaleJudge(view: view, timeouts: dp.timeouts, now: start, graceNs: options.graceNs)
        let audit = self.audit
        let report = { (e: EntryView, reason: StaleReason?, outcome: DeleteOutcome) throws in
            printer?.add(e, reason: reason, outcome: outcome)
            if case .deleted(let partner) = outcome {
                try audit?.deleted(e, why: reason?.rawValue ?? "stale", withPartner: partner, now: start)
            }
        }
        let deleter =
            try lock.map { lock throws(CtctlError) in Deleter(try Stager(dp, lock: lock), report: report) }
            ?? Deleter(dryRun: dp, report: report)
        let scan = EntryScan(dp, filter: options.filter, judge: judge)
        scan.shouldStop = shouldStop
        try scan.run { e, reason in try deleter.add(e, reason: reason) }
        try deleter.flush()

        var r = PassResult()
        r.scanned = scan.totals.scanned
        r.stale = scan.totals.matched
        r.staleByReason = scan.totals.byReason
        r.deleted = deleter.deletedEntries
        r.deletedByReason = deleter.deletedByReason
        r.changed = deleter.changed
        r.noLongerStale = deleter.noLongerStale
        r.wouldDelete = deleter.wouldDelete
        r.wouldDeleteByReason = deleter.wouldDeleteByReason
        r.stopped = scan.stopped
        r.epoch = view.epoch
        r.ctMaxEntries = dp.ct.info.maxEntries
        r.durationNs = Timestamp.monotonicNow() - start
        return r
    }

    /// The stderr summary of a pass.
    public static func summary(_ r: PassResult, dryRun: Bool) -> String {
        let reasons = StaleReason.allCases.map {
            "\($0.rawValue) \((dryRun ? r.wouldDeleteByReason : r.deletedByReason)[$0] ?? 0)"
        }.joined(separator: ", ")
        var s =
            dryRun
            ? "dry run: \(r.wouldDelete) entr\(r.wouldDelete == 1 ? "y" : "ies") would be deleted (\(reasons))"
            : "healed: \(r.deleted) entr\(r.deleted == 1 ? "y" : "ies") deleted (\(reasons))"
        if r.changed > 0 { s += "; \(r.changed) kept (re-created by the datapath since read)" }
        if r.noLongerStale > 0 { s += "; \(r.noLongerStale) kept (no longer stale)" }
        s += "; \(r.scanned) scanned in \(DurationText.format(nanoseconds: r.durationNs))"
        if r.stopped { s += "; stopped early by a signal" }
        return s
    }
}

extension Operations {
    /// `heal --once`: one pass; exit 0 if something was (or would be) deleted, 1 if nothing was stale.
    public static func healOnce(_ pins: PinDirectory, _ o: HealOptions, mode: EntryPrinter.Mode, console: Console) throws
        -> ExitStatus
    {
        let healer = try Healer(pins, options: o, auditCommand: "heal --once")
        let printer = EntryPrinter(mode, to: console.out, now: Timestamp.monotonicNow(), showReason: true, resultColumn: true)
        printer.begin()
        let r = try healer.pass(printer: printer)
        printer.end()
        console.err.line(Healer.summary(r, dryRun: o.dryRun))
        return (o.dryRun ? r.wouldDelete : r.deleted) > 0 ? .success : .nothingMatched
    }
}

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

    public init(_ pins: PinDirectory, config: Config, logger: Logger) throws(CtctlError) {
        // A metrics path that cannot be written is an error now, not after the first pass.
        metrics = try config.metricsFile.map { p throws(CtctlError) in try HealMetrics(path: p) }
        healer = try Healer(pins, options: config.options, auditCommand: "heal")
        self.config = config
        self.logger = logger
    }

    func nextInterval() -> UInt64 {
        let span = Double(config.intervalNs) * config.jitter
        return UInt64(max(0, Double(config.intervalNs) + Double.random(in: -span...span)))
    }

    /// Runs until `stop()` is true; returns the number of passes run.
    @discardableResult
    public func run(stop: @escaping () -> Bool) -> Int {
        var passes = 0
        var lastEpoch: UInt32? = nil
        var nextFull = Timestamp.monotonicNow()
        var available = true
        logger.info(
            "heal started",
            metadata: [
                "pin_dir": "\(healer.pins.path)", "interval": "\(DurationText.format(nanoseconds: config.intervalNs))",
                "dry_run": "\(config.options.dryRun)",
            ])
        var pending: String? = nil  // a pass to run now whatever the epoch (after a reload)
        while !stop() {
            let now = Timestamp.monotonicNow()
            if !available {
                // the dataplane was unloaded: look for it again at every poll (one stat)
                if follow("dataplane is back") {
                    available = true
                    pending = "reload"
                }
            } else if (try? healer.dataplane.verifyPinned(only: [CTCTL_PIN_STATE])) == nil {
                // the epoch we watch lives in maps that are no longer pinned: unloaded, or
                // reloaded (new maps at the same paths, whose epoch we would never see move)
                available = follow("dataplane reloaded: following the new maps")
                pending = available ? "reload" : nil
                if !available {
                    logger.warning("dataplane unloaded: waiting for it", metadata: ["pin_dir": "\(healer.pins.path)"])
                }
            } else {
                let epoch = try? healer.dataplane.epoch()
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
    func follow(_ message: String) -> Bool {
        do {
            try healer.reopen()
            logger.info("\(message)", metadata: ["pin_dir": "\(healer.pins.path)"])
            return true
        } catch {
            logger.debug("no dataplane yet", metadata: ["pin_dir": "\(healer.pins.path)", "error": "\(error.message)"])
            return false
        }
    }

    enum PassOutcome { case ok, unavailable, replaced }

    /// One pass, logged and counted: how it ended, and the service epoch it judged against.
    func runPass(trigger: String, stop: @escaping () -> Bool) -> (PassOutcome, UInt32?) {
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
            metrics?.record(trigger: trigger, r, counters: (try? healer.dataplane.counterTotals()) ?? [])
            try writeMetrics()
            logger.info("pass", metadata: meta)
            return (.ok, r.epoch)
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

/// Prometheus text metrics for node_exporter's textfile collector, written atomically
/// (a temporary file in the same directory, then rename).
public final class HealMetrics {
    public let path: String
    var passes: [String: Int] = [:]
    var scanned = 0
    var deleted: [StaleReason: Int] = [:]
    var changed = 0
    var errors = 0
    var lastDuration = 0.0
    var lastSuccess = 0.0
    var ctEntries = 0
    var ctMax: UInt32 = 0
    var epoch: UInt32 = 0
    var counters: [DatapathCounter] = []

    public init(path: String) throws(CtctlError) {
        let dir = path.contains("/") ? String(path[..<path.lastIndex(of: "/")!]) : "."
        var st = stat()
        guard stat(dir.isEmpty ? "/" : dir, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR else {
            throw .usage("cannot write metrics to \(path): the directory \(dir) does not exist")
        }
        guard access(dir.isEmpty ? "/" : dir, W_OK) == 0 else {
            throw CtctlError(.noPermission, "cannot write metrics to \(path): \(dir) is not writable")
        }
        self.path = path
    }

    func record(trigger: String, _ r: PassResult, counters: [DatapathCounter]) {
        passes[trigger, default: 0] += 1
        scanned += r.scanned
        for (k, v) in r.deletedByReason { deleted[k, default: 0] += v }
        changed += r.changed
        lastDuration = Double(r.durationNs) / 1e9
        lastSuccess = Timestamp.realtimeNow()
        ctEntries = r.scanned
        ctMax = r.ctMaxEntries
        epoch = r.epoch
        self.counters = counters
    }

    func recordError() { errors += 1 }

    public func render() -> String {
        var s = ""
        func metric(_ name: String, _ type: String, _ help: String, _ samples: [(String, String)]) {
            s += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
            for (labels, value) in samples { s += "\(name)\(labels) \(value)\n" }
        }
        metric(
            "ctctl_heal_passes_total", "counter", "Heal passes run, by what triggered them.",
            ["start", "epoch", "interval", "reload"].map { ("{trigger=\"\($0)\"}", String(passes[$0] ?? 0)) })
        metric("ctctl_heal_errors_total", "counter", "Heal passes that failed.", [("", String(errors))])
        metric(
            "ctctl_heal_entries_scanned_total", "counter", "Conntrack entries scanned by heal passes.", [("", String(scanned))])
        metric(
            "ctctl_heal_entries_deleted_total", "counter", "Conntrack entries deleted by heal, NAT partners included, by reason.",
            StaleReason.allCases.map { ("{reason=\"\($0.rawValue)\"}", String(deleted[$0] ?? 0)) })
        metric(
            "ctctl_heal_entries_kept_changed_total", "counter",
            "Stale entries kept because the datapath re-created them during the pass.",
            [("", String(changed))])
        metric("ctctl_heal_pass_duration_seconds", "gauge", "Duration of the last heal pass.", [("", String(lastDuration))])
        metric(
            "ctctl_heal_last_success_timestamp_seconds", "gauge", "When the last heal pass succeeded (Unix time).",
            [("", String(format1: lastSuccess))])
        metric("ctctl_conntrack_entries", "gauge", "Conntrack entries seen by the last pass.", [("", String(ctEntries))])
        metric("ctctl_conntrack_max_entries", "gauge", "Size of the conntrack map.", [("", String(ctMax))])
        metric("ctctl_service_epoch", "gauge", "The dataplane's service epoch.", [("", String(epoch))])
        metric(
            "ctctl_datapath_events_total", "counter", "Datapath counters (docs/maps.md), summed over CPUs.",
            counters.map { ("{counter=\"\($0.name)\"}", String($0.value)) })
        return s
    }

    public func write() throws(CtctlError) {
        let tmp = path + ".tmp.\(getpid())"
        let text = render()
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw CtctlError.from(Errno(errno), doing: "writing metrics", path: tmp) }
        let ok = text.utf8CString.withUnsafeBytes { raw -> Bool in
            let n = raw.count - 1
            return Glibc.write(fd, raw.baseAddress, n) == n
        }
        close(fd)
        guard ok, rename(tmp, path) == 0 else {
            let e = Errno(errno)
            unlink(tmp)
            throw CtctlError.from(e, doing: "writing metrics", path: path)
        }
    }
}

/// Structured log lines on stderr in logfmt: `ts=... level=info msg="pass" key=value ...`.
public struct LogfmtHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .info
    let stream: TextStream

    public init(stream: TextStream) { self.stream = stream }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    static func quote(_ s: String) -> String {
        guard s.isEmpty || s.contains(where: { $0 == " " || $0 == "\"" || $0 == "=" }) else { return s }
        var out = "\""
        for c in s {
            if c == "\"" || c == "\\" { out.append("\\") }
            out.append(c)
        }
        return out + "\""
    }

    public func log(event: LogEvent) {
        var line =
            "ts=\(Timestamp.rfc3339Millis(Timestamp.realtimeNow())) level=\(event.level) msg=\(LogfmtHandler.quote(event.message.description))"
        let all = metadata.merging(event.metadata ?? [:]) { $1 }
        for (k, v) in all.sorted(by: { $0.key < $1.key }) { line += " \(k)=\(LogfmtHandler.quote(v.description))" }
        stream.line(line)
        stream.flush()
    }
}

/// `heal --check`: is the watching heal alive? Reads its metrics file (a liveness probe).
public enum HealHealth {
    /// Seconds since the last successful pass, from `ctctl_heal_last_success_timestamp_seconds`.
    public static func lastSuccessAge(metricsFile path: String) throws(CtctlError) -> Double {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            throw CtctlError(.software, "cannot read \(path): \(Errno(errno)) (is `ctctl heal --metrics-file \(path)` running?)")
        }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = read(fd, &buf, buf.count)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            bytes += buf[..<n]
        }
        let name = "ctctl_heal_last_success_timestamp_seconds "
        for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") where line.hasPrefix(name) {
            guard let t = Double(line.dropFirst(name.count)) else { break }
            guard t > 0 else { throw CtctlError(.software, "\(path): no heal pass has succeeded yet") }
            return max(0, Timestamp.realtimeNow() - t)
        }
        throw CtctlError(.software, "\(path) has no ctctl_heal_last_success_timestamp_seconds: not written by ctctl heal")
    }
}
