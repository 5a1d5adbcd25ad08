/// A borrowed, zero-copy view of one Calico conntrack entry in a batch buffer: the common
/// model (EntryFacts) read straight from Calico's key and value.
///
/// Who is the client: a NORMAL or NAT_REV entry's opener is A, or B when the BA flag is set
/// (the creating packet went B -> A). A NAT_FWD entry (client <-> VIP) carries no flags; its
/// client is the endpoint its key shares with its NAT_REV key (the same address and port, or
/// the NAT_REV's port is the NAT_FWD's nat_sport), as Calico's own scanner decides; the other
/// NAT_REV endpoint is the backend.
public struct CalicoEntry: EntryFacts {
    let key: UnsafeRawPointer
    let value: UnsafeRawPointer
    let format: CalicoFormat
    let generation: CalicoGeneration

    @inline(__always)
    init(_ key: UnsafeRawPointer, _ value: UnsafeRawPointer, _ format: CalicoFormat, _ generation: CalicoGeneration) {
        self.key = key
        self.value = value
        self.format = format
        self.generation = generation
    }

    @inline(__always) var typeRaw: UInt8 { value.load(fromByteOffset: CalicoFormat.type, as: UInt8.self) }
    @inline(__always) public var proto: UInt8 { key.load(as: UInt8.self) }
    @inline(__always) public var familyRaw: UInt8 { format.v6 ? 6 : 4 }
    @inline(__always) public var type: EntryType { EntryType(rawValue: typeRaw) ?? .normal }
    @inline(__always) public var isNAT: Bool { typeRaw != Calico.typeNormal }
    @inline(__always) var isForward: Bool { typeRaw == Calico.typeNATForward }

    /// ct_value_get_flags: 16 bits up to v3.29, 32 bits from v3.30 on.
    @inline(__always) var flags: UInt32 {
        var f = UInt32(value.load(fromByteOffset: CalicoFormat.flags, as: UInt8.self))
        f |= UInt32(value.load(fromByteOffset: CalicoFormat.flags2, as: UInt8.self)) << 8
        if generation.wideFlags {
            f |= UInt32(value.load(fromByteOffset: CalicoFormat.flags3, as: UInt8.self)) << 16
            f |= UInt32(value.load(fromByteOffset: CalicoFormat.flags4, as: UInt8.self)) << 24
        }
        return f
    }

    @inline(__always) var isBA: Bool { flags & Calico.flagBA != 0 }

    @inline(__always) var addrA: IPAddress { IPAddress(raw: key + CalicoFormat.addrA, v6: format.v6) }
    @inline(__always) var addrB: IPAddress { IPAddress(raw: key + format.addrB, v6: format.v6) }
    @inline(__always) var portA: UInt16 { key.loadUnaligned(fromByteOffset: format.portA, as: UInt16.self) }
    @inline(__always) var portB: UInt16 { key.loadUnaligned(fromByteOffset: format.portB, as: UInt16.self) }

    // NAT_REV fields
    @inline(__always) var origIP: IPAddress { IPAddress(raw: value + format.origIP, v6: format.v6) }
    @inline(__always) var origPort: UInt16 { value.loadUnaligned(fromByteOffset: format.origPort, as: UInt16.self) }
    @inline(__always) var origSport: UInt16 { value.loadUnaligned(fromByteOffset: format.origSport, as: UInt16.self) }
    @inline(__always) var origSIP: IPAddress { IPAddress(raw: value + format.origSIP, v6: format.v6) }
    @inline(__always) var tunIP: IPAddress { IPAddress(raw: value + CalicoFormat.tunIP, v6: format.v6) }

    // NAT_FWD fields
    @inline(__always) var revKey: UnsafeRawPointer { value + CalicoFormat.natRevKey }
    @inline(__always) var natSport: UInt16 { value.loadUnaligned(fromByteOffset: format.natSport, as: UInt16.self) }

    /// NAT_FWD: which key endpoint is the client (true: A), and which NAT_REV endpoint is the
    /// backend (true: A); nil if the key shares no endpoint with its NAT_REV key.
    @inline(__always) var forwardSides: (clientIsA: Bool, backendIsRevA: Bool)? {
        let (ra, rb) = format.endpoints(revKey)
        let a = Endpoint(address: addrA, port: portA)
        let b = Endpoint(address: addrB, port: portB)
        let ns = natSport
        func same(_ k: Endpoint, _ r: Endpoint) -> Bool {
            k.address == r.address && (k.port == r.port || (ns != 0 && r.port == ns) || k.port == 0)
        }
        if same(a, ra) { return (true, false) }
        if same(a, rb) { return (true, true) }
        if same(b, ra) { return (false, false) }
        if same(b, rb) { return (false, true) }
        return nil
    }

    /// NORMAL and NAT_REV: the client is A unless the BA flag says B opened.
    @inline(__always) var clientIsA: Bool {
        if isForward { return forwardSides?.clientIsA ?? true }
        return !isBA
    }

    @inline(__always) var clientAddress: IPAddress { clientIsA ? addrA : addrB }
    @inline(__always) var clientPort: UInt16 { clientIsA ? portA : portB }
    @inline(__always) var otherAddress: IPAddress { clientIsA ? addrB : addrA }
    @inline(__always) var otherPort: UInt16 { clientIsA ? portB : portA }

    /// NAT_REV: the client as it was before any source NAT (orig_sip:orig_sport, where set).
    @inline(__always) var originalClientAddress: IPAddress {
        let sip = origSIP
        return sip.hi == 0 && sip.lo == 0 ? clientAddress : sip
    }

    @inline(__always) var originalClientPort: UInt16 {
        let sip = origSIP
        return sip.hi == 0 && sip.lo == 0 ? clientPort : origSport
    }

    // MARK: the common model

    @inline(__always) public var originalSource: IPAddress {
        typeRaw == Calico.typeNATReverse ? originalClientAddress : clientAddress
    }
    @inline(__always) public var originalSourcePort: UInt16 {
        typeRaw == Calico.typeNATReverse ? originalClientPort : clientPort
    }
    @inline(__always) public var originalDestination: IPAddress {
        typeRaw == Calico.typeNATReverse ? origIP : otherAddress
    }
    @inline(__always) public var originalDestinationPort: UInt16 {
        typeRaw == Calico.typeNATReverse ? origPort : otherPort
    }

    /// NAT_FWD: the backend (from its NAT_REV key); NAT_REV: the VIP replies are rewritten to.
    public var natAddress: IPAddress { isForward ? backendAddress : origIP }
    public var natPort: UInt16 { isForward ? backendPort : origPort }

    @inline(__always) public var backendAddress: IPAddress {
        guard isForward else { return otherAddress }
        let (ra, rb) = format.endpoints(revKey)
        return (forwardSides?.backendIsRevA ?? false) ? ra.address : rb.address
    }

    @inline(__always) public var backendPort: UInt16 {
        guard isForward else { return otherPort }
        let (ra, rb) = format.endpoints(revKey)
        return (forwardSides?.backendIsRevA ?? false) ? ra.port : rb.port
    }

    @inline(__always) public var serviceAddress: IPAddress { isForward ? otherAddress : origIP }
    @inline(__always) public var servicePort: UInt16 { isForward ? otherPort : origPort }
    @inline(__always) public var serviceProto: UInt8 { proto }

    @inline(__always) public var lastSeenNs: UInt64 {
        value.loadUnaligned(fromByteOffset: CalicoFormat.lastSeen, as: UInt64.self)
    }
    @inline(__always) var word0: UInt64 { value.loadUnaligned(fromByteOffset: CalicoFormat.word0, as: UInt64.self) }

    /// v3.29 only: offset 0 is the creation time there, `rst_seen` later.
    public var created: UInt64? { generation.hasCreated ? word0 : nil }

    func leg(_ offset: Int) -> (bytes: UInt64, packets: UInt32, seqno: UInt32, bits: UInt32, ifindex: UInt32) {
        (
            value.loadUnaligned(fromByteOffset: offset + CalicoFormat.legBytes, as: UInt64.self),
            value.loadUnaligned(fromByteOffset: offset + CalicoFormat.legPackets, as: UInt32.self),
            value.loadUnaligned(fromByteOffset: offset + CalicoFormat.legSeqno, as: UInt32.self),
            value.loadUnaligned(fromByteOffset: offset + CalicoFormat.legBits, as: UInt32.self),
            value.loadUnaligned(fromByteOffset: offset + CalicoFormat.legIfindex, as: UInt32.self)
        )
    }

    /// Both legs' packets (a NAT_FWD has no legs: the NAT_REV counts its flow).
    public var packetCount: UInt64? {
        guard generation.countsTraffic, !isForward else { return nil }
        return UInt64(leg(CalicoFormat.legAB).packets) + UInt64(leg(CalicoFormat.legBA).packets)
    }

    public var byteCount: UInt64? {
        guard generation.countsTraffic, !isForward else { return nil }
        return leg(CalicoFormat.legAB).bytes + leg(CalicoFormat.legBA).bytes
    }

    public var serviceEpoch: UInt32? { nil }

    public var flagNames: [String] { Calico.flagNames.filter { flags & $0.0 != 0 }.map(\.1) }

    public var storedKey: StoredTuple {
        StoredTuple(src: addrA, sport: portA, dst: addrB, dport: portB)
    }

    /// NAT_FWD: its NAT_REV key. NAT_REV: the NAT_FWD key it implies (original client <-> VIP).
    public var storedPartner: StoredTuple? {
        switch typeRaw {
        case Calico.typeNATForward:
            let (a, b) = format.endpoints(revKey)
            return StoredTuple(src: a.address, sport: a.port, dst: b.address, dport: b.port)
        case Calico.typeNATReverse:
            let c = Endpoint(address: originalClientAddress, port: originalClientPort)
            let v = Endpoint(address: origIP, port: origPort)
            let (a, b) = CalicoFormat.isA(c.address, c.port, before: v.address, v.port) ? (c, v) : (v, c)
            return StoredTuple(src: a.address, sport: a.port, dst: b.address, dport: b.port)
        default: return nil
        }
    }

    /// The NAT_FWD key a NAT_REV implies, written to `raw`; `sport` overrides the client's
    /// port (0: Calico's port-conflict path).
    func writeForwardKey(_ raw: UnsafeMutableRawPointer, sport: UInt16? = nil) {
        format.writeKey(
            raw, proto: proto, Endpoint(address: originalClientAddress, port: sport ?? originalClientPort),
            Endpoint(address: origIP, port: origPort))
    }

    /// The `calico` object of the JSON form: what only Calico has.
    public func writeLayoutJSON(into w: inout ByteWriter) {
        w.ascii(",\"calico\":{\"type\":\"")
        w.text(typeRaw == Calico.typeNormal ? "NORMAL" : typeRaw == Calico.typeNATForward ? "NAT_FWD" : "NAT_REV")
        w.ascii("\",\"flags\":")
        w.decimal(UInt64(flags))
        w.ascii(",\"flag_names\":")
        writeFlagsJSON(into: &w)
        w.ascii(",\"rst_seen_ns\":")
        if generation == .ct3v330 || generation == .ct4 { w.decimal(word0) } else { w.ascii("null") }
        if isForward {
            w.ascii(",\"nat_sport\":")
            w.decimal(UInt64(natSport))
        } else {
            for ab in [true, false] {
                let l = leg(ab ? CalicoFormat.legAB : CalicoFormat.legBA)
                w.ascii(ab ? ",\"a_to_b\":{\"packets\":" : ",\"b_to_a\":{\"packets\":")
                if generation.countsTraffic { w.decimal(UInt64(l.packets)) } else { w.ascii("null") }
                w.ascii(",\"bytes\":")
                if generation.countsTraffic { w.decimal(l.bytes) } else { w.ascii("null") }
                w.ascii(",\"seqno\":")
                w.decimal(UInt64(l.seqno))
                w.ascii(",\"ifindex\":")
                w.decimal(UInt64(l.ifindex))
                w.ascii(",\"bits\":")
                writeNames(l.bits, Calico.legBitNames, &w)
                w.byte(125)
            }
        }
        if typeRaw == Calico.typeNATReverse {
            w.ascii(",\"tun_ip\":")
            w.jsonAddress(tunIP)
            w.ascii(",\"orig_dst\":\"")
            w.endpoint(origIP, origPort)
            w.ascii("\",\"orig_src\":\"")
            w.endpoint(originalClientAddress, originalClientPort)
            w.byte(34)
        }
        w.byte(125)
    }

    /// The flags by name, without building an array of them: this runs for every entry of
    /// `list -o json`.
    public func writeFlagsJSON(into w: inout ByteWriter) { writeNames(flags, Calico.flagNames, &w) }

    /// The names of the bits set in `bits`, as a JSON array.
    private func writeNames(_ bits: UInt32, _ table: [(UInt32, String)], _ w: inout ByteWriter) {
        w.byte(91)
        var first = true
        if bits != 0 {
            for (bit, name) in table where bits & bit != 0 {
                if !first { w.byte(44) }
                first = false
                w.byte(34)
                w.text(name)
                w.byte(34)
            }
        }
        w.byte(93)
    }
}
