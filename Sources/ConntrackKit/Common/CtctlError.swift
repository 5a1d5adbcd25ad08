import Glibc

/// What the operator sees: one line naming the cause and the fix, and an exit status.
public struct CtctlError: Error, CustomStringConvertible, Sendable {
    public let status: ExitStatus
    public let message: String
    /// What a long-lived user can act on (the watching heal reopens a replaced dataplane).
    public let cause: Cause
    /// The errno behind it, if a system call failed.
    public let errno: Int32?

    public enum Cause: Sendable, Equatable {
        case other
        /// The objects pinned at the pin directory are no longer the ones that were opened:
        /// the dataplane was unloaded (and maybe loaded again) meanwhile.
        case dataplaneReplaced
    }

    public init(_ status: ExitStatus, _ message: String, cause: Cause = .other, errno: Int32? = nil) {
        self.status = status
        self.message = message
        self.cause = cause
        self.errno = errno
    }

    public var description: String { message }

    public static func usage(_ message: String) -> CtctlError { CtctlError(.usage, message) }

    static let privilegeHint = "run as root (or with CAP_BPF and CAP_NET_ADMIN)"

    /// Maps a failed operation on `path` to what the operator should hear.
    public static func from(_ error: Errno, doing action: String, path: String? = nil) -> CtctlError {
        let at = path.map { " \($0)" } ?? ""
        if error.isPermission {
            return CtctlError(.noPermission, "permission denied: \(action)\(at): \(privilegeHint)", errno: error.code)
        }
        if error.code == EROFS {
            return CtctlError(
                .noPermission,
                "\(action)\(at): it is on a read-only filesystem; reading commands work there, this one writes: run it where the pin directory is mounted read-write",
                errno: error.code)
        }
        return CtctlError(.software, "\(action)\(at) failed: \(error) (errno \(error.code))", errno: error.code)
    }
}
