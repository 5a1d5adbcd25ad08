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

extension Operations {
    /// `heal --check`: 0 if the heal writing `metricsFile` succeeded within `maxAgeNs`.
    public static func healCheck(metricsFile: String, maxAgeNs: UInt64, console: Console) throws -> ExitStatus {
        let age = try HealHealth.lastSuccessAge(metricsFile: metricsFile)
        let ago = DurationText.format(nanoseconds: UInt64(age * 1e9))
        guard age * 1e9 <= Double(maxAgeNs) else {
            throw CtctlError(
                .software,
                "the last successful heal pass was \(ago) ago (more than \(DurationText.format(nanoseconds: maxAgeNs)))")
        }
        console.out.line("healthy: the last successful heal pass was \(ago) ago")
        return .success
    }
}
