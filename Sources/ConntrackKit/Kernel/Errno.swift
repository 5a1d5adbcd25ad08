import Glibc

/// A failed system call. errno is read in one place (`current`), and becomes this typed
/// error through the two call conventions below, which also retry on EINTR.
public struct Errno: Error, Equatable, Sendable, CustomStringConvertible {
    public let code: Int32
    public init(_ code: Int32) { self.code = code }

    public var description: String { String(cString: strerror(code)) }
    public var isPermission: Bool { code == EPERM || code == EACCES }

    /// The calling thread's errno, right after a call that failed: the one place it is read.
    public static var current: Errno { Errno(Glibc.errno) }

    /// A libc call: >= 0 on success, -1 with errno set on failure.
    @discardableResult
    public static func libc<T: BinaryInteger>(retryOnInterrupt: Bool = true, _ call: () -> T) throws(Errno) -> T {
        while true {
            let ret = call()
            if ret >= 0 { return ret }
            let e = current
            if e.code == EINTR && retryOnInterrupt { continue }
            throw e
        }
    }

    /// A libbpf or shim call: >= 0 (a value or an fd) on success, a negative errno on
    /// failure (errno itself is not trusted: the shim does not set it).
    @discardableResult
    public static func bpf<T: BinaryInteger>(retryOnInterrupt: Bool = true, _ call: () -> T) throws(Errno) -> T {
        while true {
            let ret = call()
            if ret >= 0 { return ret }
            let e = Errno(Int32(truncatingIfNeeded: -Int64(ret)))
            if e.code == EINTR && retryOnInterrupt { continue }
            throw e
        }
    }
}

/// An open file descriptor, closed when released: the one owner of every fd ctctl opens.
public final class FileDescriptor: @unchecked Sendable {
    public let raw: Int32

    public init(owning raw: Int32) { self.raw = raw }

    deinit { close(raw) }

    /// open(2).
    public static func open(_ path: String, _ flags: Int32, mode: mode_t = 0) throws(Errno) -> FileDescriptor {
        FileDescriptor(owning: try Errno.libc { Glibc.open(path, flags | O_CLOEXEC, mode) })
    }

    /// Writes all of `bytes`: short writes continue, EINTR retries.
    public func writeAll(_ bytes: UnsafeRawBufferPointer) throws(Errno) { try FileDescriptor.writeAll(to: raw, bytes) }

    /// The same for a descriptor this process does not own (stdout, stderr).
    public static func writeAll(to fd: Int32, _ bytes: UnsafeRawBufferPointer) throws(Errno) {
        var off = 0
        while off < bytes.count {
            off += try Errno.libc { Glibc.write(fd, bytes.baseAddress! + off, bytes.count - off) }
        }
    }

    public func writeAll(_ bytes: [UInt8]) throws(Errno) {
        var failure: Errno?
        bytes.withUnsafeBytes { b in
            do throws(Errno) { try writeAll(b) } catch { failure = error }
        }
        if let failure { throw failure }
    }

    /// Everything up to the end of the file.
    public func readAll() throws(Errno) -> [UInt8] {
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = try Errno.libc { buf.withUnsafeMutableBytes { Glibc.read(raw, $0.baseAddress, $0.count) } }
            if n == 0 { return out }
            out += buf[..<n]
        }
    }
}
