import Glibc

/// Where a command writes: data to `out`, diagnostics to `err`. Tests inject
/// captured streams; the CLI passes stdout and stderr.
public final class Console: @unchecked Sendable {
    public let out: TextStream
    public let err: TextStream
    /// Colour and other terminal niceties only when stdout is a TTY.
    public let isTTY: Bool

    public init(out: TextStream, err: TextStream, isTTY: Bool = false) {
        self.out = out
        self.err = err
        self.isTTY = isTTY
    }

    public static func standard() -> Console {
        Console(out: FDStream(fd: 1), err: FDStream(fd: 2, bufferSize: 0), isTTY: isatty(1) == 1)
    }

    public static func captured() -> Console { Console(out: CapturedStream(), err: CapturedStream()) }

    public func flush() {
        out.flush()
        err.flush()
    }
}

public protocol TextStream: AnyObject {
    func write(_ s: String)
    func write(bytes: UnsafeRawBufferPointer)
    func flush()
}

extension TextStream {
    public func line(_ s: String) { write(s + "\n") }
}

/// A buffered writer to a file descriptor (writes are retried on EINTR and short writes).
public final class FDStream: TextStream {
    let fd: Int32
    private var buffer: [UInt8] = []
    private let bufferSize: Int
    /// Set once a write fails (e.g. EPIPE when piped to `head`): further output is dropped.
    public private(set) var failed = false

    public init(fd: Int32, bufferSize: Int = 1 << 16) {
        self.fd = fd
        self.bufferSize = bufferSize
        buffer.reserveCapacity(bufferSize)
    }

    deinit { flush() }

    public func write(_ s: String) {
        var s = s
        s.withUTF8 { write(bytes: UnsafeRawBufferPointer($0)) }
    }

    public func write(bytes: UnsafeRawBufferPointer) {
        if bytes.count >= bufferSize && bufferSize > 0 {
            // a whole chunk (a scan thread's output): straight out, not through the buffer
            flush()
            if failed { return }
            do throws(Errno) { try FileDescriptor.writeAll(to: fd, bytes) } catch { failed = true }
            return
        }
        buffer.append(contentsOf: bytes)
        if buffer.count >= bufferSize { flush() }
    }

    public func flush() {
        guard !buffer.isEmpty else { return }
        defer { buffer.removeAll(keepingCapacity: true) }
        if failed { return }
        buffer.withUnsafeBytes { raw in
            do throws(Errno) { try FileDescriptor.writeAll(to: fd, raw) } catch { failed = true }
        }
    }
}

/// Collects output in memory (tests, and messages assembled before printing).
public final class CapturedStream: TextStream {
    public private(set) var bytes: [UInt8] = []
    public init() {}
    public func write(_ s: String) { bytes.append(contentsOf: s.utf8) }
    public func write(bytes b: UnsafeRawBufferPointer) { bytes.append(contentsOf: b) }
    public func flush() {}
    public var text: String { String(decoding: bytes, as: UTF8.self) }
}
