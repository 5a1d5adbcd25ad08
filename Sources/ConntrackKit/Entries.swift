import CLibBPF

/// The three kinds of conntrack entry.
public enum EntryType: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    case normal = 0
    case natForward = 1
    case natReverse = 2

    public init?(name: String) {
        guard let t = EntryType.allCases.first(where: { $0.name == name }) else { return nil }
        self = t
    }

    /// "normal", "nat-fwd", "nat-rev": the table and JSON form.
    public var name: String {
        switch self {
        case .normal: return "normal"
        case .natForward: return "nat-fwd"
        case .natReverse: return "nat-rev"
        }
    }

    public var description: String { name }
}

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

/// One conntrack entry, decoded.
public struct ConntrackEntry: Sendable {
    public let key: FlowKey
    public let type: EntryType
    public let createdNs: UInt64
    public let lastSeenNs: UInt64
    public let packets: UInt64
    public let bytes: UInt64
    public let epoch: UInt32
    public let flags: UInt32
    /// NAT only: forward = the backend; reverse = the VIP replies are rewritten to.
    public let nat: Endpoint?
    /// NAT only: the service the entry belongs to.
    public let service: ServiceRef?
    /// NAT only: the key of the other half.
    public let partner: FlowKey?

    public init(key k: ctctl_ct_key, value v: ctctl_ct_value) {
        key = FlowKey(k)
        type = EntryType(rawValue: v.type) ?? .normal
        createdNs = v.created_ns
        lastSeenNs = v.last_seen_ns
        packets = v.packets
        bytes = v.bytes
        epoch = v.epoch
        flags = v.flags
        if type == .normal {
            nat = nil
            service = nil
            partner = nil
        } else {
            let (natAddr, svcAddr) = withUnsafeBytes(of: v.nat_addr) { n in
                withUnsafeBytes(of: v.svc_addr) { s in
                    (IPAddress(raw: n.baseAddress!, family: k.family), IPAddress(raw: s.baseAddress!, family: k.family))
                }
            }
            nat = Endpoint(address: natAddr, port: UInt16(bigEndian: v.nat_port))
            service = ServiceRef(
                vip: Endpoint(address: svcAddr, port: UInt16(bigEndian: v.svc_port)), proto: IPProto(v.svc_proto))
            partner = FlowKey(v.partner)
        }
    }

    /// The flow in its original direction (client -> service or destination). A reverse
    /// entry's key is backend -> client; its original direction is client -> VIP.
    public var originalSource: Endpoint { type == .natReverse ? key.dst : key.src }
    public var originalDestination: Endpoint { type == .natReverse ? (service?.vip ?? key.src) : key.dst }

    /// The backend of a NAT flow.
    public var backend: Endpoint? {
        switch type {
        case .normal: return nil
        case .natForward: return nat
        case .natReverse: return key.src
        }
    }

    public var flagNames: [String] {
        var out: [String] = []
        if flags & CTCTL_CT_F_FIN != 0 { out.append("fin") }
        if flags & CTCTL_CT_F_RST != 0 { out.append("rst") }
        if flags & CTCTL_CT_F_SEEN_REPLY != 0 { out.append("seen-reply") }
        if flags & CTCTL_CT_F_CONVERTED != 0 { out.append("converted") }
        return out
    }
}

extension ServiceRef {
    var frontendKey: ctctl_fe_key {
        var k = ctctl_fe_key()
        withUnsafeMutableBytes(of: &k) { raw in vip.address.store(to: raw.baseAddress!) }
        k.port = vip.port.bigEndian
        k.proto = proto.number
        k.family = vip.address.family.rawValue
        return k
    }

    init(_ k: ctctl_fe_key) {
        let a = withUnsafeBytes(of: k) { IPAddress(raw: $0.baseAddress!, family: k.family) }
        self.init(vip: Endpoint(address: a, port: UInt16(bigEndian: k.port)), proto: IPProto(k.proto))
    }
}

extension Endpoint {
    public var backendValue: ctctl_be_value {
        var v = ctctl_be_value()
        withUnsafeMutableBytes(of: &v) { raw in address.store(to: raw.baseAddress!) }
        v.port = port.bigEndian
        v.family = address.family.rawValue
        return v
    }

    init(_ v: ctctl_be_value) {
        let a = withUnsafeBytes(of: v) { IPAddress(raw: $0.baseAddress!, family: v.family) }
        self.init(address: a, port: UInt16(bigEndian: v.port))
    }
}
