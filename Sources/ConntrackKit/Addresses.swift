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

/// An address and a port: `198.18.0.1:53` or `[2001:db8::1]:53`.
public struct Endpoint: Hashable, Sendable, CustomStringConvertible {
    public let address: IPAddress
    public let port: UInt16

    public init(address: IPAddress, port: UInt16) {
        self.address = address
        self.port = port
    }

    public init?(_ text: String) {
        let host: Substring
        let portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return nil }
            host = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else { return nil }
            portText = rest.dropFirst()
            guard host.contains(":") else { return nil }
        } else {
            guard let colon = text.lastIndex(of: ":"), !text[..<colon].contains(":") else { return nil }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
        }
        guard let addr = IPAddress(String(host)), let port = Port.parse(String(portText)) else { return nil }
        self.init(address: addr, port: port)
    }

    public var description: String {
        var w = ByteWriter(stream: nil, chunk: 64)
        w.endpoint(address, port)
        return w.string
    }
}

public enum Port {
    /// A port number 0...65535 written in decimal.
    public static func parse(_ text: String) -> UInt16? {
        guard !text.isEmpty, text.count <= 5, text.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        return UInt16(text)
    }
}

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

/// A service frontend: `198.19.0.10:161/udp`, `[2001:db8::10]:53/udp`.
public struct ServiceRef: Hashable, Sendable, CustomStringConvertible {
    public let vip: Endpoint
    public let proto: IPProto

    public init(vip: Endpoint, proto: IPProto) {
        self.vip = vip
        self.proto = proto
    }

    public init?(_ text: String) {
        guard let slash = text.lastIndex(of: "/"),
            let vip = Endpoint(String(text[..<slash])),
            let proto = IPProto(String(text[text.index(after: slash)...]))
        else { return nil }
        self.init(vip: vip, proto: proto)
    }

    public var description: String { "\(vip)/\(proto)" }
}

/// Durations as operators write them: `500ms`, `60s`, `10m`, `1h`, or plain seconds.
public enum DurationText {
    public static func parseNanoseconds(_ text: String) -> UInt64? {
        let units: [(String, UInt64)] = [
            ("ms", 1_000_000), ("s", 1_000_000_000), ("m", 60_000_000_000), ("h", 3_600_000_000_000),
        ]
        for (suffix, scale) in units where text.hasSuffix(suffix) {
            let number = text.dropLast(suffix.count)
            if suffix == "s" && number.hasSuffix("m") { continue }
            guard let n = UInt64(number), n <= UInt64.max / scale else { return nil }
            return n * scale
        }
        guard let n = UInt64(text), n <= UInt64.max / 1_000_000_000 else { return nil }
        return n * 1_000_000_000
    }

    /// Short human form: 850ms, 12s, 5m3s, 2h1m, 3d4h.
    public static func format(nanoseconds ns: UInt64) -> String {
        if ns < 1_000_000_000 { return "\(ns / 1_000_000)ms" }
        let s = ns / 1_000_000_000
        if s < 60 { return "\(s)s" }
        if s < 3600 { return s % 60 == 0 ? "\(s / 60)m" : "\(s / 60)m\(s % 60)s" }
        if s < 86400 { return (s % 3600) / 60 == 0 ? "\(s / 3600)h" : "\(s / 3600)h\((s % 3600) / 60)m" }
        return "\(s / 86400)d\((s % 86400) / 3600)h"
    }
}
