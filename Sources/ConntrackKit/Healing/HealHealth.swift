import CLibBPF
import Glibc
import Logging

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
