import CLibBPF
import Glibc

/// Idle timeouts by protocol, as the datapath applies them.
public struct Timeouts: Sendable, Equatable {
    public var udp: UInt64 = 60 * 1_000_000_000
    public var tcp: UInt64 = 3600 * 1_000_000_000
    public var tcpClosing: UInt64 = 30 * 1_000_000_000
    public var other: UInt64 = 600 * 1_000_000_000

    public init() {}

    public static let names = ["udp", "tcp", "tcp-closing", "other"]

    /// `udp=60s,tcp=1h,tcp-closing=30s,other=10m` (any subset) over the defaults.
    public init(parsing text: String) throws(CtctlError) {
        self.init()
        for item in text.split(separator: ",") {
            let kv = item.split(separator: "=", maxSplits: 1).map(String.init)
            guard kv.count == 2, let ns = DurationText.parseNanoseconds(kv[1]), ns > 0 else {
                throw .usage(
                    "bad timeout '\(item)': write NAME=DURATION, e.g. udp=60s,tcp=1h (names: \(Timeouts.names.joined(separator: ", ")))"
                )
            }
            switch kv[0] {
            case "udp": udp = ns
            case "tcp": tcp = ns
            case "tcp-closing": tcpClosing = ns
            case "other": other = ns
            default:
                throw .usage("unknown timeout '\(kv[0])': the names are \(Timeouts.names.joined(separator: ", "))")
            }
        }
    }

    init(_ c: ctctl_config) {
        udp = c.timeout_ns.0
        tcp = c.timeout_ns.1
        tcpClosing = c.timeout_ns.2
        other = c.timeout_ns.3
    }

    /// The timeout that applies to an entry of this protocol with these flags: chosen by
    /// the datapath's own rule (ctctl_timeout_index in bpf/include/ctctl_rules.h).
    @inline(__always)
    public func timeout(proto: UInt8, flags: UInt32) -> UInt64 {
        switch ctctl_timeout_index(proto, flags) {
        case UInt32(CTCTL_TIMEOUT_UDP.rawValue): return udp
        case UInt32(CTCTL_TIMEOUT_TCP.rawValue): return tcp
        case UInt32(CTCTL_TIMEOUT_TCP_CLOSING.rawValue): return tcpClosing
        default: return other
        }
    }

    /// Idle past its timeout at `now` (ctctl_idle_past): one half of a NAT pair by its own flags.
    @inline(__always)
    public func idle(proto: UInt8, flags: UInt32, lastSeen: UInt64, now: UInt64) -> Bool {
        ctctl_idle_past(lastSeen, now, timeout(proto: proto, flags: flags)) != 0
    }

    public var byName: [(String, UInt64)] { [("udp", udp), ("tcp", tcp), ("tcp-closing", tcpClosing), ("other", other)] }
}
