import Glibc

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
