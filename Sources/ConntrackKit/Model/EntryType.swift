import CLibBPF

/// The three kinds of conntrack entry.
public enum EntryType: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    case normal = 0
    case natForward = 1
    case natReverse = 2

    public init?(name: String) {
        guard let t = EntryType.allCases.first(where: { $0.name == name }) else { return nil }
        self = t
    }

    /// "normal", "nat-fwd", "nat-rev": the table and JSON form.
    public var name: String {
        switch self {
        case .normal: return "normal"
        case .natForward: return "nat-fwd"
        case .natReverse: return "nat-rev"
        }
    }

    public var description: String { name }
}
