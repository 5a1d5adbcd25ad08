import Glibc

/// A service frontend: `198.19.0.10:161/udp`, `[2001:db8::10]:53/udp`.
public struct ServiceRef: Hashable, Sendable, CustomStringConvertible {
    public let vip: Endpoint
    public let proto: IPProto

    public init(vip: Endpoint, proto: IPProto) {
        self.vip = vip
        self.proto = proto
    }

    public init?(_ text: String) {
        guard let slash = text.lastIndex(of: "/"),
            let vip = Endpoint(String(text[..<slash])),
            let proto = IPProto(String(text[text.index(after: slash)...]))
        else { return nil }
        self.init(vip: vip, proto: proto)
    }

    public var description: String { "\(vip)/\(proto)" }
}
