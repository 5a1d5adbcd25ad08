import Glibc

/// An IPv4 or IPv6 address, held as two big-endian 64-bit halves of the 16-byte
/// field the map ABI uses (IPv4 in the first four bytes, the rest zero).
public struct IPAddress: Hashable, Sendable, CustomStringConvertible {
    public enum Family: UInt8, Sendable, CaseIterable {
        case v4 = 4
        case v6 = 6
    }

    public let family: Family
    public let hi: UInt64
    public let lo: UInt64

    public init(family: Family, hi: UInt64, lo: UInt64) {
        self.family = family
        self.hi = hi
        self.lo = lo
    }

    /// Parses dotted-quad IPv4 or RFC 4291 IPv6 text; nil if it is neither.
    public init?(_ text: String) {
        var buf = (UInt64(0), UInt64(0))
        let ok: Bool = withUnsafeMutableBytes(of: &buf) { raw in
            if text.contains(":") {
                return inet_pton(AF_INET6, text, raw.baseAddress) == 1
            }
            return inet_pton(AF_INET, text, raw.baseAddress) == 1
        }
        guard ok else { return nil }
        family = text.contains(":") ? .v6 : .v4
        hi = UInt64(bigEndian: buf.0)
        lo = family == .v6 ? UInt64(bigEndian: buf.1) : 0
    }

    /// Reads the 16-byte address field of a map key or value.
    @inline(__always)
    public init(raw: UnsafeRawPointer, family: UInt8) {
        self.family = family == Family.v6.rawValue ? .v6 : .v4
        hi = UInt64(bigEndian: raw.loadUnaligned(as: UInt64.self))
        lo = self.family == .v6 ? UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: 8, as: UInt64.self)) : 0
    }

    /// Reads a 4-byte IPv4 address (network order) from a layout that stores only those.
    @inline(__always)
    public init(raw4: UnsafeRawPointer) {
        family = .v4
        hi = UInt64(UInt32(bigEndian: raw4.loadUnaligned(as: UInt32.self))) << 32
        lo = 0
    }

    /// Reads 4 bytes (IPv4) or 16 bytes (IPv6) in network order.
    @inline(__always)
    public init(raw: UnsafeRawPointer, v6: Bool) {
        if v6 { self.init(raw: raw, family: Family.v6.rawValue) } else { self.init(raw4: raw) }
    }

    /// Writes 4 bytes (IPv4) or 16 (IPv6) in network order.
    @inline(__always)
    public func storeCompact(to raw: UnsafeMutableRawPointer) {
        if family == .v6 {
            store(to: raw)
        } else {
            raw.storeBytes(of: UInt32(truncatingIfNeeded: hi >> 32).bigEndian, as: UInt32.self)
        }
    }

    /// Writes the 16-byte address field of a map key or value.
    @inline(__always)
    public func store(to raw: UnsafeMutableRawPointer) {
        raw.storeBytes(of: hi.bigEndian, as: UInt64.self)
        raw.storeBytes(of: lo.bigEndian, toByteOffset: 8, as: UInt64.self)
    }

    public var isV4: Bool { family == .v4 }

    /// Network-order bytes: 4 for IPv4, 16 for IPv6.
    public var bytes: [UInt8] {
        let all = (0..<16).map { i in UInt8(truncatingIfNeeded: (i < 8 ? hi : lo) >> UInt64(56 - 8 * (i % 8))) }
        return family == .v4 ? Array(all[0..<4]) : all
    }

    public var description: String {
        var w = ByteWriter(stream: nil, chunk: 64)
        w.address(self)
        return w.string
    }
}
