/// The one JSON form of an entry (docs/json.md, docs/schema/entry.schema.json): used by
/// `list -o json`, the remove and heal reports, and the audit log.
public enum EntryJSON {
    static func tuple(_ w: inout ByteWriter, _ t: StoredTuple) {
        w.ascii("{\"src\":")
        w.jsonAddress(t.src)
        w.ascii(",\"sport\":")
        w.decimal(t.sport)
        w.ascii(",\"dst\":")
        w.jsonAddress(t.dst)
        w.ascii(",\"dport\":")
        w.decimal(t.dport)
        w.byte(125)
    }

    static func optional(_ w: inout ByteWriter, _ v: UInt64?) {
        if let v { w.decimal(v) } else { w.ascii("null") }
    }

    /// Writes one entry object; `extra` appends fields before the closing brace.
    @inline(__always)
    public static func write<E: EntryFacts>(
        _ e: E, now: UInt64, reason: StaleReason?, into w: inout ByteWriter,
        extra: ((inout ByteWriter) -> Void)? = nil
    ) {
        w.ascii("{\"proto\":\"")
        w.proto(e.proto)
        w.ascii("\",\"family\":")
        w.decimal(UInt64(e.familyRaw))
        w.ascii(",\"src\":")
        w.jsonAddress(e.originalSource)
        w.ascii(",\"sport\":")
        w.decimal(e.originalSourcePort)
        w.ascii(",\"dst\":")
        w.jsonAddress(e.originalDestination)
        w.ascii(",\"dport\":")
        w.decimal(e.originalDestinationPort)
        w.ascii(",\"type\":\"")
        w.text(e.type.name)
        if e.isNAT {
            w.ascii("\",\"nat_ip\":")
            w.jsonAddress(e.natAddress)
            w.ascii(",\"nat_port\":")
            w.decimal(e.natPort)
            w.ascii(",\"backend\":\"")
            w.endpoint(e.backendAddress, e.backendPort)
            w.ascii("\",\"service\":\"")
            w.endpoint(e.serviceAddress, e.servicePort)
            w.byte(47)
            w.proto(e.serviceProto)
            w.byte(34)
        } else {
            w.ascii("\",\"nat_ip\":null,\"nat_port\":null,\"backend\":null,\"service\":null")
        }
        w.ascii(",\"created_ago_ns\":")
        optional(&w, e.created.map { now > $0 ? now - $0 : 0 })
        w.ascii(",\"last_seen_ago_ns\":")
        w.decimal(now > e.lastSeenNs ? now - e.lastSeenNs : 0)
        w.ascii(",\"packets\":")
        optional(&w, e.packetCount)
        w.ascii(",\"bytes\":")
        optional(&w, e.byteCount)
        w.ascii(",\"epoch\":")
        optional(&w, e.serviceEpoch.map(UInt64.init))
        w.ascii(",\"flags\":")
        e.writeFlagsJSON(into: &w)
        w.ascii(",\"key\":")
        tuple(&w, e.storedKey)
        if let partner = e.storedPartner {
            w.ascii(",\"partner\":")
            tuple(&w, partner)
        } else {
            w.ascii(",\"partner\":null")
        }
        if let reason {
            w.ascii(",\"reason\":\"")
            w.text(reason.rawValue)
            w.byte(34)
        } else {
            w.ascii(",\"reason\":null")
        }
        e.writeLayoutJSON(into: &w)
        extra?(&w)
        w.byte(125)
    }
}

extension EntryFacts {
    /// The flags as a JSON array of names (layouts with a faster way override it).
    public func writeFlagsJSON(into w: inout ByteWriter) {
        w.byte(91)
        for (i, name) in flagNames.enumerated() {
            if i > 0 { w.byte(44) }
            w.jsonString(name)
        }
        w.byte(93)
    }
}
