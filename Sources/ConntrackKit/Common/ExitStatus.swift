import Glibc

/// The process exit status of every ctctl command: one table, in `--help` and docs/cli.md.
public enum ExitStatus: Int32, Sendable, CaseIterable {
    /// Success. For remove and heal: something was removed (or would be, with `--dry-run`).
    case success = 0
    /// Success, but nothing matched / nothing was stale.
    case nothingMatched = 1
    /// Bad usage or input (malformed address, port, protocol, unknown interface ...).
    case usage = 64
    /// A map with the wrong layout or ABI version.
    case badLayout = 65
    /// Anything else (an unexpected kernel error, the dataplane in the wrong state).
    case software = 70
    /// Dataplane not loaded, maps missing, or the pin directory not on a BPF filesystem.
    case unavailable = 69
    /// Not permitted (needs root, or CAP_BPF and CAP_NET_ADMIN).
    case noPermission = 77

    public var meaning: String {
        switch self {
        case .success: return "success (remove and heal: something was removed, or would be)"
        case .nothingMatched: return "success, but nothing matched or nothing was stale"
        case .usage: return "bad usage or input"
        case .badLayout: return "a map with the wrong layout or ABI version"
        case .software: return "anything else (kernel error, dataplane in the wrong state)"
        case .unavailable: return "dataplane not loaded, maps missing, or pin dir not on bpffs"
        case .noPermission: return "not permitted (needs root, or CAP_BPF and CAP_NET_ADMIN)"
        }
    }

    /// The table as it appears at the end of every command's help.
    public static var helpTable: String {
        let order: [ExitStatus] = [.success, .nothingMatched, .usage, .badLayout, .unavailable, .software, .noPermission]
        return "EXIT STATUS:\n" + order.map { "  \(String($0.rawValue).padding(3))  \($0.meaning)" }.joined(separator: "\n")
    }
}
