import CLibBPF
import Glibc

/// A set of keys of `width` 64-bit words, stored exactly, with open addressing and a cheap
/// multiply-xorshift hash: built once per pass, probed once per conntrack entry. (Swift's
/// Set hashes with SipHash, made to resist flooding, which this data cannot do.) Each key
/// also remembers where it was first given (`index(of:)`), so it serves as a map too.
struct WordSet: Sendable {
    private var slots: [UInt64]  // (1 + width) words a slot: 0 if free, else index + 1; then the key
    private let mask: Int
    private let width: Int

    init(width: Int, keys: [[UInt64]]) {
        self.width = width
        var size = 16
        while size < keys.count * 2 { size <<= 1 }
        mask = size - 1
        slots = [UInt64](repeating: 0, count: size * (width + 1))
        for (i, k) in keys.enumerated() {
            precondition(k.count == width)
            k.withUnsafeBufferPointer { insert($0.baseAddress!, index: i) }
        }
    }

    @inline(__always)
    static func hash(_ k: UnsafePointer<UInt64>, _ width: Int) -> Int {
        var h: UInt64 = 0x6374_6374
        for i in 0..<width {
            h = (h ^ k[i]) &* 0x9E37_79B9_7F4A_7C15
            h ^= h >> 29
        }
        return Int(truncatingIfNeeded: h ^ (h >> 32))
    }

    @inline(__always)
    private static func equal(_ s: UnsafePointer<UInt64>, _ k: UnsafePointer<UInt64>, _ width: Int) -> Bool {
        for i in 0..<width where s[i] != k[i] { return false }
        return true
    }

    private mutating func insert(_ k: UnsafePointer<UInt64>, index: Int) {
        let stride = width + 1
        var i = WordSet.hash(k, width) & mask
        while slots[i * stride] != 0 {
            if slots.withUnsafeBufferPointer({ WordSet.equal($0.baseAddress! + i * stride + 1, k, width) }) { return }
            i = (i + 1) & mask
        }
        slots[i * stride] = UInt64(index + 1)
        for j in 0..<width { slots[i * stride + 1 + j] = k[j] }
    }

    @inline(__always)
    func contains(_ k: UnsafePointer<UInt64>) -> Bool { index(of: k) != nil }

    /// Where the key was in the list the set was built from (its first occurrence).
    @inline(__always)
    func index(of k: UnsafePointer<UInt64>) -> Int? {
        let stride = width + 1
        return slots.withUnsafeBufferPointer { s in
            var i = WordSet.hash(k, width) & mask
            while s[i * stride] != 0 {
                if WordSet.equal(s.baseAddress! + i * stride + 1, k, width) { return Int(s[i * stride]) - 1 }
                i = (i + 1) & mask
            }
            return nil
        }
    }
}
