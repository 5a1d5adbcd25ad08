/// The IP pair of `conntrack remove`, in either direction, optionally narrowed by the port on
/// each side (`--dport`: the <dst> side, `--sport`: the <src> side). Matched on the key as
/// the map stores it, so on every layout it is the set of entries between two addresses
/// (Calico's `calico-node -bpf conntrack remove`, narrowed by ports).
public struct PairMatch: Sendable {
    public let proto: IPProto
    public let dst: IPAddress
    public let src: IPAddress
    public var dport: UInt16?
    public var sport: UInt16?

    public init(proto: IPProto, dst: IPAddress, src: IPAddress, dport: UInt16? = nil, sport: UInt16? = nil) throws(CtctlError) {
        guard dst.family == src.family else {
            throw .usage("\(dst) and \(src) are not of the same address family: give two IPv4 or two IPv6 addresses")
        }
        self.proto = proto
        self.dst = dst
        self.src = src
        self.dport = dport
        self.sport = sport
    }

    @inline(__always)
    public func matches<E: EntryFacts>(_ e: E) -> Bool {
        guard e.proto == proto.number, e.familyRaw == dst.family.rawValue else { return false }
        let k = e.storedKey
        if k.src == src && k.dst == dst && (dport == nil || k.dport == dport!) && (sport == nil || k.sport == sport!) {
            return true
        }
        if k.src == dst && k.dst == src && (dport == nil || k.sport == dport!) && (sport == nil || k.dport == sport!) {
            return true
        }
        return false
    }
}
