/// Which entries a listing shows. Every field narrows; source and destination always
/// mean the original direction of the flow.
public struct ConntrackFilter: Sendable, Equatable {
    public var proto: IPProto?
    public var source: IPNetwork?
    public var destination: IPNetwork?
    public var sourcePort: UInt16?
    public var destinationPort: UInt16?
    public var type: EntryType?
    /// NAT entries of this service, and normal entries addressed to it (the stuck ones).
    public var service: ServiceRef?
    public var family: IPAddress.Family?

    public init() {}

    public var isEmpty: Bool { self == ConntrackFilter() }

    @inline(__always)
    public func matches<E: EntryFacts>(_ e: E) -> Bool {
        if let proto, e.proto != proto.number { return false }
        if let family, e.familyRaw != family.rawValue { return false }
        if let type, e.type != type { return false }
        if let sourcePort, e.originalSourcePort != sourcePort { return false }
        if let destinationPort, e.originalDestinationPort != destinationPort { return false }
        if let source, !source.contains(e.originalSource) { return false }
        if let destination, !destination.contains(e.originalDestination) { return false }
        if let service {
            guard e.proto == service.proto.number, e.originalDestinationPort == service.vip.port,
                e.originalDestination == service.vip.address
            else { return false }
        }
        return true
    }
}
