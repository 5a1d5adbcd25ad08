import CLibBPF

/// The one JSON form of an entry (docs/json.md, docs/schema/entry.schema.json): used by
/// `list -o json`, the remove and heal reports, and the audit log.
public enum EntryJSON {
    static func tuple(_ w: inout ByteWriter, _ k: UnsafePointer<ctctl_ct_key>) {
        let family = k.pointee.family
        let raw = UnsafeRawPointer(k)
        w.ascii("{\"src\":")
        w.jsonAddress(IPAddress(raw: raw, family: family))
        w.ascii(",\"sport\":")
        w.decimal(UInt16(bigEndian: k.pointee.sport))
        w.ascii(",\"dst\":")
        w.jsonAddress(IPAddress(raw: raw + 16, family: family))
        w.ascii(",\"dport\":")
        w.decimal(UInt16(bigEndian: k.pointee.dport))
        w.byte(125)
    }

    static func flags(_ w: inout ByteWriter, _ f: UInt32) {
        w.byte(91)
        var first = true
        for (bit, name) in [
            (CTCTL_CT_F_FIN, "\"fin\""), (CTCTL_CT_F_RST, "\"rst\""), (CTCTL_CT_F_SEEN_REPLY, "\"seen-reply\""),
            (CTCTL_CT_F_CONVERTED, "\"converted\""),
        ] where f & bit != 0 {
            if !first { w.byte(44) }
            w.text(name)
            first = false
        }
        w.byte(93)
    }

    /// Writes one entry object; `extra` appends fields before the closing brace.
    @inline(__always)
    public static func write(
        _ e: EntryView, now: UInt64, reason: StaleReason?, into w: inout ByteWriter,
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
        switch e.typeRaw {
        case 1: w.ascii("nat-fwd")
        case 2: w.ascii("nat-rev")
        default: w.ascii("normal")
        }
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
        let v = e.value.pointee
        w.ascii(",\"created_ago_ns\":")
        w.decimal(now > v.created_ns ? now - v.created_ns : 0)
        w.ascii(",\"last_seen_ago_ns\":")
        w.decimal(now > v.last_seen_ns ? now - v.last_seen_ns : 0)
        w.ascii(",\"packets\":")
        w.decimal(v.packets)
        w.ascii(",\"bytes\":")
        w.decimal(v.bytes)
        w.ascii(",\"epoch\":")
        w.decimal(v.epoch)
        w.ascii(",\"flags\":")
        flags(&w, v.flags)
        w.ascii(",\"key\":")
        tuple(&w, e.key)
        if e.isNAT {
            w.ascii(",\"partner\":")
            tuple(&w, e.partnerKey)
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
        extra?(&w)
        w.byte(125)
    }
}
