import CLibBPF
import Glibc
import Logging

/// Structured log lines on stderr in logfmt: `ts=... level=info msg="pass" key=value ...`.
public struct LogfmtHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .info
    let stream: TextStream

    public init(stream: TextStream) { self.stream = stream }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    static func quote(_ s: String) -> String {
        guard s.isEmpty || s.contains(where: { $0 == " " || $0 == "\"" || $0 == "=" }) else { return s }
        var out = "\""
        for c in s {
            if c == "\"" || c == "\\" { out.append("\\") }
            out.append(c)
        }
        return out + "\""
    }

    public func log(event: LogEvent) {
        var line =
            "ts=\(Timestamp.rfc3339Millis(Timestamp.realtimeNow())) level=\(event.level) msg=\(LogfmtHandler.quote(event.message.description))"
        let all = metadata.merging(event.metadata ?? [:]) { $1 }
        for (k, v) in all.sorted(by: { $0.key < $1.key }) { line += " \(k)=\(LogfmtHandler.quote(v.description))" }
        stream.line(line)
        stream.flush()
    }
}
