import CLibBPF

/// A borrowed, zero-copy view of one reference-dataplane entry in a batch buffer: the
/// common model (EntryFacts) read straight from the ABI structs, without decoding first.
public struct ReferenceEntry: EntryFacts {
    public let key: UnsafePointer<ctctl_ct_key>
    public let value: UnsafePointer<ctctl_ct_value>

    @inline(__always)
    public init(_ key: UnsafePointer<ctctl_ct_key>, _ value: UnsafePointer<ctctl_ct_value>) {
        self.key = key
        self.value = value
    }

    static let natAddrOffset = MemoryLayout<ctctl_ct_value>.offset(of: \ctctl_ct_value.nat_addr)!
    static let svcAddrOffset = MemoryLayout<ctctl_ct_value>.offset(of: \ctctl_ct_value.svc_addr)!
    static let partnerOffset = MemoryLayout<ctctl_ct_value>.offset(of: \ctctl_ct_value.partner)!

    @inline(__always) var rawKey: UnsafeRawPointer { UnsafeRawPointer(key) }
    @inline(__always) var rawValue: UnsafeRawPointer { UnsafeRawPointer(value) }

    @inline(__always) public var proto: UInt8 { key.pointee.proto }
    @inline(__always) public var familyRaw: UInt8 { key.pointee.family }
    @inline(__always) public var typeRaw: UInt8 { value.pointee.type }
    @inline(__always) public var type: EntryType { EntryType(rawValue: value.pointee.type) ?? .normal }
    @inline(__always) public var isNAT: Bool { value.pointee.type != 0 }
    @inline(__always) public var createdNs: UInt64 { value.pointee.created_ns }
    @inline(__always) public var lastSeenNs: UInt64 { value.pointee.last_seen_ns }
    @inline(__always) public var flags: UInt32 { value.pointee.flags }

    @inline(__always) public var keySrc: IPAddress { IPAddress(raw: rawKey, family: familyRaw) }
    @inline(__always) public var keyDst: IPAddress { IPAddress(raw: rawKey + 16, family: familyRaw) }
    @inline(__always) public var keySport: UInt16 { UInt16(bigEndian: key.pointee.sport) }
    @inline(__always) public var keyDport: UInt16 { UInt16(bigEndian: key.pointee.dport) }
    @inline(__always) public var natAddress: IPAddress {
        IPAddress(raw: rawValue + ReferenceEntry.natAddrOffset, family: familyRaw)
    }
    @inline(__always) public var natPort: UInt16 { UInt16(bigEndian: value.pointee.nat_port) }
    @inline(__always) public var serviceAddress: IPAddress {
        IPAddress(raw: rawValue + ReferenceEntry.svcAddrOffset, family: familyRaw)
    }
    @inline(__always) public var servicePort: UInt16 { UInt16(bigEndian: value.pointee.svc_port) }
    @inline(__always) public var serviceProto: UInt8 { value.pointee.svc_proto }
    @inline(__always) public var partnerKey: UnsafePointer<ctctl_ct_key> {
        (rawValue + ReferenceEntry.partnerOffset).assumingMemoryBound(to: ctctl_ct_key.self)
    }

    // The flow in its original direction: a reverse half's key is backend -> client,
    // its flow is client -> VIP.
    @inline(__always) var isReverse: Bool { value.pointee.type == EntryType.natReverse.rawValue }
    @inline(__always) public var originalSource: IPAddress { isReverse ? keyDst : keySrc }
    @inline(__always) public var originalSourcePort: UInt16 { isReverse ? keyDport : keySport }
    @inline(__always) public var originalDestination: IPAddress { isReverse ? serviceAddress : keyDst }
    @inline(__always) public var originalDestinationPort: UInt16 { isReverse ? servicePort : keyDport }

    /// The backend of a NAT flow: forward = its NAT target; reverse = its key's source.
    @inline(__always) public var backendAddress: IPAddress { isReverse ? keySrc : natAddress }
    @inline(__always) public var backendPort: UInt16 { isReverse ? keySport : natPort }

    public var entry: ConntrackEntry { ConntrackEntry(key: key.pointee, value: value.pointee) }

    // MARK: the rest of the common model

    public var created: UInt64? { createdNs }
    public var packetCount: UInt64? { value.pointee.packets }
    public var byteCount: UInt64? { value.pointee.bytes }
    public var serviceEpoch: UInt32? { value.pointee.epoch }
    public var flagNames: [String] { ReferenceEntry.flagNames(flags) }

    static func flagNames(_ f: UInt32) -> [String] {
        [
            (CTCTL_CT_F_FIN, "fin"), (CTCTL_CT_F_RST, "rst"), (CTCTL_CT_F_SEEN_REPLY, "seen-reply"),
            (CTCTL_CT_F_CONVERTED, "converted"),
        ]
        .filter { f & $0.0 != 0 }.map(\.1)
    }

    static func tuple(_ k: UnsafePointer<ctctl_ct_key>) -> StoredTuple {
        let family = k.pointee.family
        let raw = UnsafeRawPointer(k)
        return StoredTuple(
            src: IPAddress(raw: raw, family: family), sport: UInt16(bigEndian: k.pointee.sport),
            dst: IPAddress(raw: raw + 16, family: family), dport: UInt16(bigEndian: k.pointee.dport))
    }

    /// The flags without an array of strings: this runs for every entry of `list -o json`.
    public func writeFlagsJSON(into w: inout ByteWriter) {
        let f = flags
        w.byte(91)
        var first = true
        for (bit, name): (UInt32, StaticString) in [
            (CTCTL_CT_F_FIN, "\"fin\""), (CTCTL_CT_F_RST, "\"rst\""), (CTCTL_CT_F_SEEN_REPLY, "\"seen-reply\""),
            (CTCTL_CT_F_CONVERTED, "\"converted\""),
        ] where f & bit != 0 {
            if !first { w.byte(44) }
            w.ascii(name)
            first = false
        }
        w.byte(93)
    }

    public var storedKey: StoredTuple { ReferenceEntry.tuple(key) }
    public var storedPartner: StoredTuple? { isNAT ? ReferenceEntry.tuple(partnerKey) : nil }
}
