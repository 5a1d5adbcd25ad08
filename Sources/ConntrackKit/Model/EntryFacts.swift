/// One conntrack entry as every layout presents it: the common model. A layout's view of an
/// entry (zero-copy over its batch buffer) conforms; filters, tables, JSON and the audit log
/// read entries through this only.
///
/// Source and destination are the flow's original direction (client -> service or
/// destination), whatever the layout stores (a reverse half's key is backend -> client;
/// Calico orders its keys by address). What a layout does not keep is nil.
public protocol EntryFacts {
    var proto: UInt8 { get }
    /// 4 or 6.
    var familyRaw: UInt8 { get }
    var type: EntryType { get }
    var isNAT: Bool { get }

    var originalSource: IPAddress { get }
    var originalSourcePort: UInt16 { get }
    var originalDestination: IPAddress { get }
    var originalDestinationPort: UInt16 { get }

    /// NAT: what the entry rewrites to (forward half: the backend; reverse half: the VIP).
    var natAddress: IPAddress { get }
    var natPort: UInt16 { get }
    /// NAT: the backend of the flow, and its service.
    var backendAddress: IPAddress { get }
    var backendPort: UInt16 { get }
    var serviceAddress: IPAddress { get }
    var servicePort: UInt16 { get }
    var serviceProto: UInt8 { get }

    var lastSeenNs: UInt64 { get }
    /// Creation time (CLOCK_MONOTONIC ns), if the layout keeps one.
    var created: UInt64? { get }
    var packetCount: UInt64? { get }
    var byteCount: UInt64? { get }
    /// The service epoch the entry was made under, if the layout has one.
    var serviceEpoch: UInt32? { get }
    /// The entry's flags, by the layout's names.
    var flagNames: [String] { get }

    /// The key as the map stores it.
    var storedKey: StoredTuple { get }
    /// NAT: the key of the other half, as stored.
    var storedPartner: StoredTuple? { get }

    /// The layout's own fields, appended to the entry's JSON object: each as `,"name":value`.
    func writeLayoutJSON(into w: inout ByteWriter)
    /// The flags as a JSON array of names (a requirement, so a layout's faster form is the one
    /// called from generic code).
    func writeFlagsJSON(into w: inout ByteWriter)
}

extension EntryFacts {
    public func writeLayoutJSON(into w: inout ByteWriter) {}

    /// Decoded, for explanations and tests (not for listing: it allocates).
    public var flowKey: FlowKey {
        FlowKey(
            proto: IPProto(proto), src: Endpoint(address: originalSource, port: originalSourcePort),
            dst: Endpoint(address: originalDestination, port: originalDestinationPort))
    }
}

/// A key as the map stores it: two endpoints, in the layout's order.
public struct StoredTuple: Sendable, Equatable {
    public let src: IPAddress
    public let sport: UInt16
    public let dst: IPAddress
    public let dport: UInt16

    public init(src: IPAddress, sport: UInt16, dst: IPAddress, dport: UInt16) {
        self.src = src
        self.sport = sport
        self.dst = dst
        self.dport = dport
    }

    /// "udp 198.18.1.2:40000 -> 198.19.0.10:161": the KEY column.
    public func description(proto: UInt8) -> String {
        "\(IPProto(proto)) \(Endpoint(address: src, port: sport)) -> \(Endpoint(address: dst, port: dport))"
    }
}
