import CLibBPF
import Glibc
import Logging

/// `heal --check`: is the watching heal alive? Reads its metrics file (a liveness probe).
public enum HealHealth {
    /// Seconds since the last successful pass, from `ctctl_heal_last_success_timestamp_seconds`.
    public static func lastSuccessAge(metricsFile path: String) throws(CtctlError) -> Double {
        let bytes: [UInt8]
        do { bytes = try FileDescriptor.open(path, O_RDONLY).readAll() } catch {
            throw CtctlError(
                .software, "cannot read \(path): \(error) (is `ctctl heal --metrics-file \(path)` running?)", errno: error.code)
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
