import CLibBPF

/// Looks up the partner of a NAT half by its key and checks it with the datapath's own
/// rule (ctctl_is_partner): the other type, the same created time, pointing back. Reads
/// only: it works on read-only map fds and a read-only bpffs.
final class PartnerLookup {
    let map: BPFMap
    let value = UnsafeMutablePointer<ctctl_ct_value>.allocate(capacity: 1)

    init(_ map: BPFMap) { self.map = map }

    /// Is the partner of `e` present and intact? Its value is in `value` afterwards.
    func check(_ e: ReferenceEntry) throws(CtctlError) -> Bool {
        guard e.isNAT else { return false }
        let found: Bool
        found = try map.lookup(UnsafeRawPointer(e.partnerKey), into: value)
        return found && ctctl_is_partner(value, e.key, e.typeRaw, e.createdNs) != 0
    }

    deinit { value.deallocate() }
}

/// One thread's buffers for lookups by key in the reference conntrack map.
public final class ReferenceScratch {
    let partners: PartnerLookup
    let key = UnsafeMutablePointer<ctctl_ct_key>.allocate(capacity: 1)
    let value = UnsafeMutablePointer<ctctl_ct_value>.allocate(capacity: 1)

    init(_ ct: BPFMap) { partners = PartnerLookup(ct) }

    deinit {
        key.deallocate()
        value.deallocate()
    }
}
