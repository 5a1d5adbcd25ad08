import CLibBPF

/// A conntrack key as Swift sees it: the tuple of the packets the entry matches.
public struct FlowKey: Hashable, Sendable, CustomStringConvertible {
    public let proto: IPProto
    public let src: Endpoint
    public let dst: Endpoint

    public init(proto: IPProto, src: Endpoint, dst: Endpoint) {
        precondition(src.address.family == dst.address.family, "one family per flow")
        self.proto = proto
        self.src = src
        self.dst = dst
    }

    public init(_ k: ctctl_ct_key) {
        let (s, d) = withUnsafeBytes(of: k) { raw -> (IPAddress, IPAddress) in
            (IPAddress(raw: raw.baseAddress!, family: k.family), IPAddress(raw: raw.baseAddress! + 16, family: k.family))
        }
        proto = IPProto(k.proto)
        src = Endpoint(address: s, port: UInt16(bigEndian: k.sport))
        dst = Endpoint(address: d, port: UInt16(bigEndian: k.dport))
    }

    public var family: IPAddress.Family { src.address.family }

    /// The key as the map stores it.
    public var raw: ctctl_ct_key {
        var k = ctctl_ct_key()
        withUnsafeMutableBytes(of: &k) { raw in
            src.address.store(to: raw.baseAddress!)
            dst.address.store(to: raw.baseAddress! + 16)
        }
        k.sport = src.port.bigEndian
        k.dport = dst.port.bigEndian
        k.proto = proto.number
        k.family = family.rawValue
        return k
    }

    public func reversed() -> FlowKey { FlowKey(proto: proto, src: dst, dst: src) }

    public var description: String { "\(proto) \(src) -> \(dst)" }
}
