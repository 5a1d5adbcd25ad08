import Glibc

/// An address and a port: `198.18.0.1:53` or `[2001:db8::1]:53`.
public struct Endpoint: Hashable, Sendable, CustomStringConvertible {
    public let address: IPAddress
    public let port: UInt16

    public init(address: IPAddress, port: UInt16) {
        self.address = address
        self.port = port
    }

    public init?(_ text: String) {
        let host: Substring
        let portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return nil }
            host = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else { return nil }
            portText = rest.dropFirst()
            guard host.contains(":") else { return nil }
        } else {
            guard let colon = text.lastIndex(of: ":"), !text[..<colon].contains(":") else { return nil }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
        }
        guard let addr = IPAddress(String(host)), let port = Port.parse(String(portText)) else { return nil }
        self.init(address: addr, port: port)
    }

    public var description: String {
        var w = ByteWriter(stream: nil, chunk: 64)
        w.endpoint(address, port)
        return w.string
    }
}

public enum Port {
    /// A port number 0...65535 written in decimal.
    public static func parse(_ text: String) -> UInt16? {
        guard !text.isEmpty, text.count <= 5, text.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        return UInt16(text)
    }
}
