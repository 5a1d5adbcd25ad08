import ConntrackKit

/// Builds Ethernet frames with correct checksums, and parses them back with every
/// checksum recomputed from scratch, so a test can check each rewritten byte.
public enum Packets {
    public static let tcpFIN: UInt8 = 0x01
    public static let tcpSYN: UInt8 = 0x02
    public static let tcpRST: UInt8 = 0x04
    public static let tcpACK: UInt8 = 0x10

    public static func udp(_ src: Endpoint, _ dst: Endpoint, payload: [UInt8] = Array("ping".utf8), zeroChecksum: Bool = false)
        -> [UInt8]
    {
        frame(proto: .udp, src, dst, l4: udpHeader(src, dst, payload: payload, zeroChecksum: zeroChecksum))
    }

    public static func tcp(_ src: Endpoint, _ dst: Endpoint, flags: UInt8 = 0x18, payload: [UInt8] = Array("data".utf8))
        -> [UInt8]
    {
        frame(proto: .tcp, src, dst, l4: tcpHeader(src, dst, flags: flags, payload: payload))
    }

    public static func packet(_ proto: IPProto, _ src: Endpoint, _ dst: Endpoint) -> [UInt8] {
        proto == .tcp ? tcp(src, dst) : udp(src, dst)
    }

    public static func be16(_ v: UInt16) -> [UInt8] { [UInt8(v >> 8), UInt8(v & 0xff)] }

    public static func addressBytes(_ a: IPAddress) -> [UInt8] { a.bytes }

    /// Ones' complement sum folded to 16 bits (not inverted).
    public static func sum(_ bytes: [UInt8], initial: UInt32 = 0) -> UInt32 {
        var s = initial
        var i = 0
        while i + 1 < bytes.count {
            s += UInt32(bytes[i]) << 8 | UInt32(bytes[i + 1])
            i += 2
        }
        if i < bytes.count { s += UInt32(bytes[i]) << 8 }
        while s > 0xffff { s = (s & 0xffff) + (s >> 16) }
        return s
    }

    public static func pseudoHeader(_ src: IPAddress, _ dst: IPAddress, proto: UInt8, length: Int) -> [UInt8] {
        if src.isV4 {
            return addressBytes(src) + addressBytes(dst) + [0, proto] + be16(UInt16(length))
        }
        return addressBytes(src) + addressBytes(dst) + [0, 0] + be16(UInt16(length)) + [0, 0, 0, proto]
    }

    public static func l4Checksum(_ src: IPAddress, _ dst: IPAddress, proto: UInt8, segment: [UInt8]) -> UInt16 {
        let c = ~UInt16(sum(segment, initial: sum(pseudoHeader(src, dst, proto: proto, length: segment.count))))
        return proto == IPProto.udp.number && c == 0 ? 0xffff : c
    }

    public static func udpHeader(_ src: Endpoint, _ dst: Endpoint, payload: [UInt8], zeroChecksum: Bool) -> [UInt8] {
        var h = be16(src.port) + be16(dst.port) + be16(UInt16(8 + payload.count)) + [0, 0] + payload
        if !zeroChecksum {
            let c = l4Checksum(src.address, dst.address, proto: 17, segment: h)
            h[6] = UInt8(c >> 8)
            h[7] = UInt8(c & 0xff)
        }
        return h
    }

    public static func tcpHeader(_ src: Endpoint, _ dst: Endpoint, flags: UInt8, payload: [UInt8]) -> [UInt8] {
        var h =
            be16(src.port) + be16(dst.port) + [0, 0, 0x10, 0x01] + [0, 0, 0x20, 0x02] + [0x50, flags] + be16(65535) + [
                0, 0, 0, 0,
            ] + payload
        let c = l4Checksum(src.address, dst.address, proto: 6, segment: h)
        h[16] = UInt8(c >> 8)
        h[17] = UInt8(c & 0xff)
        return h
    }

    public static let macs: [UInt8] = [0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01]

    public static func frame(proto: IPProto, _ src: Endpoint, _ dst: Endpoint, l4: [UInt8]) -> [UInt8] {
        if src.address.isV4 {
            var ip: [UInt8] = [0x45, 0] + be16(UInt16(20 + l4.count)) + [0x12, 0x34, 0x40, 0x00, 64, proto.number, 0, 0]
            ip += addressBytes(src.address) + addressBytes(dst.address)
            let c = ~UInt16(sum(ip))
            ip[10] = UInt8(c >> 8)
            ip[11] = UInt8(c & 0xff)
            return macs + [0x08, 0x00] + ip + l4
        }
        let ip: [UInt8] =
            [0x60, 0, 0, 0] + be16(UInt16(l4.count)) + [proto.number, 64] + addressBytes(src.address) + addressBytes(dst.address)
        return macs + [0x86, 0xdd] + ip + l4
    }

    /// An ICMP (IPv4) or ICMPv6 error from `src` to `dst` quoting `quote` (an IP packet
    /// without its Ethernet header), with every checksum right. `rest`: the 4 bytes after
    /// the checksum (unused, or the MTU).
    public static func icmpError(
        _ src: IPAddress, _ dst: IPAddress, type: UInt8, code: UInt8, rest: [UInt8] = [0, 0, 0, 0], quote: [UInt8]
    ) -> [UInt8] {
        var icmp = [type, code, 0, 0] + rest + quote
        let pseudo = src.isV4 ? 0 : sum(pseudoHeader(src, dst, proto: 58, length: icmp.count))
        let c = ~UInt16(sum(icmp, initial: pseudo))
        icmp[2] = UInt8(c >> 8)
        icmp[3] = UInt8(c & 0xff)
        return frame(
            proto: IPProto(src.isV4 ? 1 : 58), Endpoint(address: src, port: 0), Endpoint(address: dst, port: 0), l4: icmp)
    }

    /// The IP packet of a frame (the Ethernet header dropped): what an ICMP error quotes.
    public static func ipPacket(_ frame: [UInt8]) -> [UInt8] { Array(frame[14...]) }

    /// What a test checks about a frame that left the program.
    public struct Parsed: Equatable {
        public var proto: UInt8
        public var src: Endpoint
        public var dst: Endpoint
        public var ipChecksumOK: Bool
        public var l4ChecksumOK: Bool
        public var l4ChecksumField: UInt16
        public var payload: [UInt8]
    }

    public static func address(_ bytes: ArraySlice<UInt8>) -> IPAddress {
        let b = Array(bytes)
        if b.count == 4 { return IPAddress("\(b[0]).\(b[1]).\(b[2]).\(b[3])")! }
        var hi: UInt64 = 0
        var lo: UInt64 = 0
        for i in 0..<8 { hi = hi << 8 | UInt64(b[i]) }
        for i in 8..<16 { lo = lo << 8 | UInt64(b[i]) }
        return IPAddress(family: .v6, hi: hi, lo: lo)
    }

    public static func u16(_ b: [UInt8], _ i: Int) -> UInt16 { UInt16(b[i]) << 8 | UInt16(b[i + 1]) }

    public static func parse(_ f: [UInt8]) -> Parsed? {
        guard f.count >= 14 else { return nil }
        let ethertype = u16(f, 12)
        let src: IPAddress
        let dst: IPAddress
        let proto: UInt8
        let l4: [UInt8]
        let ipOK: Bool
        if ethertype == 0x0800 {
            guard f.count >= 34 else { return nil }
            let ihl = Int(f[14] & 0x0f) * 4
            let tot = Int(u16(f, 16))
            guard f.count >= 14 + tot else { return nil }
            ipOK = sum(Array(f[14..<(14 + ihl)])) == 0xffff
            proto = f[23]
            src = address(f[26..<30])
            dst = address(f[30..<34])
            l4 = Array(f[(14 + ihl)..<(14 + tot)])
        } else if ethertype == 0x86dd {
            guard f.count >= 54 else { return nil }
            let plen = Int(u16(f, 18))
            ipOK = true
            proto = f[20]
            src = address(f[22..<38])
            dst = address(f[38..<54])
            l4 = Array(f[54..<(54 + plen)])
        } else {
            return nil
        }
        let csumOff = proto == 17 ? 6 : 16
        let field = u16(l4, csumOff)
        let l4OK =
            (proto == 17 && field == 0 && src.isV4)
            || sum(l4, initial: sum(pseudoHeader(src, dst, proto: proto, length: l4.count))) == 0xffff
        let hdr = proto == 17 ? 8 : Int(l4[12] >> 4) * 4
        return Parsed(
            proto: proto, src: Endpoint(address: src, port: u16(l4, 0)), dst: Endpoint(address: dst, port: u16(l4, 2)),
            ipChecksumOK: ipOK, l4ChecksumOK: l4OK, l4ChecksumField: field, payload: Array(l4[hdr...]))
    }
}
