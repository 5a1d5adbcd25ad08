import CLibBPF
import Glibc

/// Reading the conntrack map: by key, or streamed in batches.
public enum Conntrack {
    /// The entry stored under exactly this key, if any (one lookup, no scan).
    public static func lookup(_ dp: Dataplane, _ key: FlowKey) throws(CtctlError) -> ConntrackEntry? {
        let raw = key.raw
        let value: ctctl_ct_value?
        value = try dp.ct.lookup(raw, as: ctctl_ct_value.self)
        return value.map { ConntrackEntry(key: raw, value: $0) }
    }

    /// Streams the whole map in batches of raw entries; memory stays at one batch.
    /// The body returns false to stop early.
    public static func scan(
        _ dp: Dataplane, batchSize: Int = 8192,
        _ body: (_ keys: UnsafePointer<ctctl_ct_key>, _ values: UnsafePointer<ctctl_ct_value>, _ count: Int) throws -> Bool
    ) throws {
        let reader = BatchReader<ctctl_ct_key, ctctl_ct_value>(capacity: batchSize)
        try reader.read(dp.ct) { n in try body(reader.keys, reader.values, n) }
    }
}
