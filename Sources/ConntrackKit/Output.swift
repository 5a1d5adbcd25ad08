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
        buffer.append(contentsOf: bytes)
        if buffer.count >= bufferSize { flush() }
    }

    public func flush() {
        guard !buffer.isEmpty else { return }
        defer { buffer.removeAll(keepingCapacity: true) }
        if failed { return }
        buffer.withUnsafeBytes { raw in
            var off = 0
            while off < raw.count {
                let n = Glibc.write(fd, raw.baseAddress! + off, raw.count - off)
                if n < 0 {
                    if errno == EINTR { continue }
                    failed = true
                    return
                }
                off += n
            }
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

/// Output formats shared by the listing commands.
public enum OutputFormat: String, Sendable, CaseIterable {
    case table
    case wide
    case json
}

/// A small JSON document model for the non-streaming outputs (status, stats, nat list).
/// Keys keep their order, so output is stable.
public indirect enum JSON: Sendable, Equatable {
    case null
    case bool(Bool)
    case int(Int64)
    case uint(UInt64)
    case double(Double)
    case string(String)
    case array([JSON])
    case object([(String, JSON)])

    public static func == (a: JSON, b: JSON) -> Bool { a.render() == b.render() }

    public func render(pretty: Bool = true) -> String {
        var out = ""
        write(into: &out, indent: pretty ? 0 : nil)
        return out
    }

    private func write(into out: inout String, indent: Int?) {
        let nl = indent == nil ? "" : "\n"
        let pad = { (n: Int) -> String in String(repeating: "  ", count: n) }
        switch self {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .int(let i): out += String(i)
        case .uint(let u): out += String(u)
        case .double(let d): out += d.isFinite ? String(d) : "null"
        case .string(let s): JSON.escape(s, into: &out)
        case .array(let items):
            if items.isEmpty {
                out += "[]"
                return
            }
            out += "[" + nl
            for (i, item) in items.enumerated() {
                if let indent { out += pad(indent + 1) }
                item.write(into: &out, indent: indent.map { $0 + 1 })
                out += (i < items.count - 1 ? "," : "") + nl
            }
            if let indent { out += pad(indent) }
            out += "]"
        case .object(let fields):
            if fields.isEmpty {
                out += "{}"
                return
            }
            out += "{" + nl
            for (i, (k, v)) in fields.enumerated() {
                if let indent { out += pad(indent + 1) }
                JSON.escape(k, into: &out)
                out += indent == nil ? ":" : ": "
                v.write(into: &out, indent: indent.map { $0 + 1 })
                out += (i < fields.count - 1 ? "," : "") + nl
            }
            if let indent { out += pad(indent) }
            out += "}"
        }
    }

    static func escape(_ s: String, into out: inout String) {
        out += "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 {
                    let hex = String(u.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        out += "\""
    }
}

/// Fixed-column text tables: each column as wide as its widest cell.
public struct TextTable {
    public var header: [String]
    public var rows: [[String]] = []
    public init(_ header: [String]) { self.header = header }
    public mutating func add(_ row: [String]) { rows.append(row) }

    public func render(indent: String = "") -> String {
        var widths = header.map(\.count)
        for r in rows {
            for (i, c) in r.enumerated() where i < widths.count { widths[i] = max(widths[i], c.count) }
        }
        func line(_ cells: [String]) -> String {
            var s = indent
            for (i, c) in cells.enumerated() {
                s += i == cells.count - 1 ? c : c.padding(widths[i] + 2)
            }
            return s
        }
        return ([line(header)] + rows.map(line)).joined(separator: "\n") + "\n"
    }
}
