import Glibc

/// An IP protocol: `udp`, `tcp`, or its number.
public struct IPProto: Hashable, Sendable, CustomStringConvertible {
    public let number: UInt8
    public init(_ number: UInt8) { self.number = number }

    public static let tcp = IPProto(6)
    public static let udp = IPProto(17)

    public init?(_ text: String) {
        switch text.lowercased() {
        case "udp": self = .udp
        case "tcp": self = .tcp
        default:
            guard !text.isEmpty, text.count <= 3, text.allSatisfy({ $0.isASCII && $0.isNumber }),
                let n = UInt8(text)
            else { return nil }
            self.init(n)
        }
    }

    /// "udp", "tcp", or the number as a string: the JSON and table form.
    public var description: String {
        switch number {
        case 6: return "tcp"
        case 17: return "udp"
        default: return String(number)
        }
    }
}
