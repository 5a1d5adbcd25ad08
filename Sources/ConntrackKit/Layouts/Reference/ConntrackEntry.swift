import CLibBPF

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

    public var flagNames: [String] { ReferenceEntry.flagNames(flags) }
}
