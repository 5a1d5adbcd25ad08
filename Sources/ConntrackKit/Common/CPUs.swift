import CLibBPF
import Glibc

/// How many threads a full-map read uses by default: $CTCTL_THREADS if set, else the CPUs
/// this process may run on (sched_getaffinity), no more than its cgroup's CPU quota (cgroup
/// v2 cpu.max), at most 8.
public enum CPUs {
    public static let cap = 8
    public static let environmentVariable = "CTCTL_THREADS"

    public static var available: Int {
        if let env = getenv(environmentVariable), let n = Int(String(cString: env)), n >= 1 { return min(n, 64) }
        var n = max(1, Int(CLibBPF_affinity_cpus()))
        if let quota = cgroupQuota() { n = min(n, quota) }
        return max(1, min(n, cap))
    }

    /// ceil(quota / period) from /sys/fs/cgroup/<this process's cgroup>/cpu.max; nil if
    /// unlimited or unknown.
    static func cgroupQuota() -> Int? {
        guard let cgroup = read("/proc/self/cgroup")?.split(separator: "\n").first(where: { $0.hasPrefix("0::") }) else {
            return nil
        }
        let path = String(cgroup.dropFirst(3))
        guard let max = read("/sys/fs/cgroup" + (path == "/" ? "" : path) + "/cpu.max") else { return nil }
        let parts = max.split(whereSeparator: { $0 == " " || $0 == "\n" })
        guard parts.count == 2, let quota = Int(parts[0]), let period = Int(parts[1]), period > 0 else { return nil }
        return (quota + period - 1) / period
    }

    static func read(_ path: String) -> String? {
        guard let bytes = try? FileDescriptor.open(path, O_RDONLY).readAll() else { return nil }
        return String(decoding: bytes, as: UTF8.self)
    }
}
