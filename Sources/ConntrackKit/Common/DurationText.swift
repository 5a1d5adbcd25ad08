import Glibc

/// Durations as operators write them: `500ms`, `60s`, `10m`, `1h`, or plain seconds.
public enum DurationText {
    public static func parseNanoseconds(_ text: String) -> UInt64? {
        let units: [(String, UInt64)] = [
            ("ms", 1_000_000), ("s", 1_000_000_000), ("m", 60_000_000_000), ("h", 3_600_000_000_000),
        ]
        for (suffix, scale) in units where text.hasSuffix(suffix) {
            let number = text.dropLast(suffix.count)
            if suffix == "s" && number.hasSuffix("m") { continue }
            guard let n = UInt64(number), n <= UInt64.max / scale else { return nil }
            return n * scale
        }
        guard let n = UInt64(text), n <= UInt64.max / 1_000_000_000 else { return nil }
        return n * 1_000_000_000
    }

    /// Short human form: 850ms, 12s, 5m3s, 2h1m, 3d4h.
    public static func format(nanoseconds ns: UInt64) -> String {
        if ns < 1_000_000_000 { return "\(ns / 1_000_000)ms" }
        let s = ns / 1_000_000_000
        if s < 60 { return "\(s)s" }
        if s < 3600 { return s % 60 == 0 ? "\(s / 60)m" : "\(s / 60)m\(s % 60)s" }
        if s < 86400 { return (s % 3600) / 60 == 0 ? "\(s / 3600)h" : "\(s / 3600)h\((s % 3600) / 60)m" }
        return "\(s / 86400)d\((s % 86400) / 3600)h"
    }
}
