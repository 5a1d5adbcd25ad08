import CLibBPF
import Glibc

extension String {
    /// Left-aligned in a column of `width` characters (never truncated).
    public func padding(_ width: Int) -> String {
        count >= width ? self : self + String(repeating: " ", count: width - count)
    }
}

extension String {
    /// A number with one decimal: 12.3
    public init(format1 v: Double) {
        let tenths = Int((v * 10).rounded())
        self = "\(tenths / 10).\(abs(tenths % 10))"
    }
}
