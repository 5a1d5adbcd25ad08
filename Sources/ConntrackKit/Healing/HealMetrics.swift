import CLibBPF
import Glibc
import Logging

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
        do throws(Errno) {
            try FileDescriptor.open(tmp, O_WRONLY | O_CREAT | O_TRUNC, mode: 0o644).writeAll(Array(text.utf8))
            try Errno.libc { rename(tmp, path) }
        } catch {
            unlink(tmp)
            throw CtctlError.from(error, doing: "writing metrics", path: path)
        }
    }
}
