import CLibBPF
import Glibc

extension Timestamp {
    /// 2026-11-28T01:20:00.123Z
    public static func rfc3339Millis(_ t: Double) -> String {
        let secs = UInt64(t)
        let ms = Int((t - Double(secs)) * 1000)
        let s = rfc3339(secs)
        return String(s.dropLast()) + "." + (ms < 10 ? "00" : ms < 100 ? "0" : "") + String(ms) + "Z"
    }
}

public enum Timestamp {
    static func parts(_ t: UInt64) -> tm {
        var secs = time_t(t)
        var out = tm()
        gmtime_r(&secs, &out)
        return out
    }

    static func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }

    /// 2026-11-28T01:20:00Z
    public static func rfc3339(_ t: UInt64) -> String {
        let p = parts(t)
        return "\(p.tm_year + 1900)-\(two(p.tm_mon + 1))-\(two(p.tm_mday))T\(two(p.tm_hour)):\(two(p.tm_min)):\(two(p.tm_sec))Z"
    }

    /// 2026-11-28 01:20:00 UTC
    public static func utc(_ t: UInt64) -> String {
        let p = parts(t)
        return
            "\(p.tm_year + 1900)-\(two(p.tm_mon + 1))-\(two(p.tm_mday)) \(two(p.tm_hour)):\(two(p.tm_min)):\(two(p.tm_sec)) UTC"
    }

    /// Nanoseconds of CLOCK_MONOTONIC: the clock of bpf_ktime_get_ns().
    public static func monotonicNow() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    public static func realtimeNow() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}
