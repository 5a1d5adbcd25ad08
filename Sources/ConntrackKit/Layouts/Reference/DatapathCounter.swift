import CLibBPF
import Glibc

/// One datapath counter (docs/maps.md). Names and meanings come from the ABI header's
/// counter list, through the shim: they cannot drift from what the datapath counts.
public struct DatapathCounter: Sendable, Equatable {
    public let name: String
    public let value: UInt64

    public static let names: [String] = (0..<UInt32(CTCTL_CNT_MAX.rawValue)).map { String(cString: CLibBPF_counter_name($0)!) }
    public static let helps: [String] = (0..<UInt32(CTCTL_CNT_MAX.rawValue)).map { String(cString: CLibBPF_counter_help($0)!) }
}
