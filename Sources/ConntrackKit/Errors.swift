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

/// A failed system call: errno becomes this typed error here and nowhere else.
public struct Errno: Error, Equatable, Sendable, CustomStringConvertible {
    public let code: Int32
    public init(_ code: Int32) { self.code = code }

    public var description: String { String(cString: strerror(code)) }
    public var isPermission: Bool { code == EPERM || code == EACCES }

    /// Runs a call that returns a value >= 0 on success and -errno (or -1 with errno set)
    /// on failure, retrying on EINTR. The one place where errno becomes a Swift error.
    @discardableResult
    public static func check(_ call: () -> Int32) throws(Errno) -> Int32 {
        while true {
            let ret = call()
            if ret >= 0 { return ret }
            let code = ret == -1 && errno > 0 ? errno : -ret
            if code == EINTR { continue }
            throw Errno(code)
        }
    }
}

/// What the operator sees: one line naming the cause and the fix, and an exit status.
public struct CtctlError: Error, CustomStringConvertible, Sendable {
    public let status: ExitStatus
    public let message: String
    /// What a long-lived user can act on (the watching heal reopens a replaced dataplane).
    public let cause: Cause

    public enum Cause: Sendable, Equatable {
        case other
        /// The objects pinned at the pin directory are no longer the ones that were opened:
        /// the dataplane was unloaded (and maybe loaded again) meanwhile.
        case dataplaneReplaced
    }

    public init(_ status: ExitStatus, _ message: String, cause: Cause = .other) {
        self.status = status
        self.message = message
        self.cause = cause
    }

    public var description: String { message }

    public static func usage(_ message: String) -> CtctlError { CtctlError(.usage, message) }

    static let privilegeHint = "run as root (or with CAP_BPF and CAP_NET_ADMIN)"

    /// Maps a failed operation on `path` to what the operator should hear.
    public static func from(_ error: Errno, doing action: String, path: String? = nil) -> CtctlError {
        let at = path.map { " \($0)" } ?? ""
        if error.isPermission {
            return CtctlError(.noPermission, "permission denied: \(action)\(at): \(privilegeHint)")
        }
        if error.code == EROFS {
            return CtctlError(
                .noPermission,
                "\(action)\(at): it is on a read-only filesystem; reading commands work there, this one writes: run it where the pin directory is mounted read-write"
            )
        }
        return CtctlError(.software, "\(action)\(at) failed: \(error) (errno \(error.code))")
    }
}

extension String {
    /// Left-aligned in a column of `width` characters (never truncated).
    public func padding(_ width: Int) -> String {
        count >= width ? self : self + String(repeating: " ", count: width - count)
    }
}
