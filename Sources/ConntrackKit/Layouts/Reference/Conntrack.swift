import CLibBPF

/// Reading the reference conntrack map by key.
public enum Conntrack {
    /// The entry stored under exactly this key, if any (one lookup, no scan).
    public static func lookup(_ dp: ReferenceDataplane, _ key: FlowKey) throws(CtctlError) -> ConntrackEntry? {
        let raw = key.raw
        let value: ctctl_ct_value?
        value = try dp.ct.lookup(raw, as: ctctl_ct_value.self)
        return value.map { ConntrackEntry(key: raw, value: $0) }
    }
}
