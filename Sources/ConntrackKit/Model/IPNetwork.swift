import Glibc

/// An address with a prefix length: `198.18.0.0/15`, `2001:db8::/32`, or a bare address.
public struct IPNetwork: Hashable, Sendable, CustomStringConvertible {
    public let address: IPAddress
    public let prefix: Int

    public init?(_ text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count <= 2, let addr = IPAddress(String(parts[0])) else { return nil }
        let maxPrefix = addr.family == .v4 ? 32 : 128
        var prefix = maxPrefix
        if parts.count == 2 {
            guard let p = Int(parts[1]), (0...maxPrefix).contains(p), !parts[1].hasPrefix("+") else { return nil }
            prefix = p
        }
        self.prefix = prefix
        let (mh, ml) = IPNetwork.mask(prefix)
        address = IPAddress(family: addr.family, hi: addr.hi & mh, lo: addr.lo & ml)
    }

    /// `address` masked to its first `prefix` bits.
    public init(address a: IPAddress, prefix: Int) {
        self.prefix = max(0, min(prefix, a.family == .v4 ? 32 : 128))
        let (mh, ml) = IPNetwork.mask(self.prefix)
        address = IPAddress(family: a.family, hi: a.hi & mh, lo: a.lo & ml)
    }

    static func mask(_ prefix: Int) -> (UInt64, UInt64) {
        let hi: UInt64 = prefix >= 64 ? ~0 : (prefix == 0 ? 0 : ~0 << UInt64(64 - prefix))
        let lo: UInt64 = prefix <= 64 ? 0 : (prefix >= 128 ? ~0 : ~0 << UInt64(128 - prefix))
        return (hi, lo)
    }

    @inline(__always)
    public func contains(_ a: IPAddress) -> Bool {
        guard a.family == address.family else { return false }
        let (mh, ml) = IPNetwork.mask(prefix)
        return a.hi & mh == address.hi && a.lo & ml == address.lo
    }

    public var description: String { "\(address)/\(prefix)" }
}
