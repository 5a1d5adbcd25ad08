import CLibBPF
import Glibc

/// An LRU conntrack map close to full evicts live flows without telling anyone.
public enum Occupancy {
    public static let warnFraction = 0.8

    public static func warning(entries: Int, max: UInt32) -> String {
        "warning: the conntrack map is \(DataplaneStatus.percent(entries, of: max)) full (\(entries) of \(max)); an LRU map this full evicts live flows silently: load with a larger --ct-size"
    }
}
