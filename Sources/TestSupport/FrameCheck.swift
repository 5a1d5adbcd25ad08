import ConntrackKit

/// What a frame says about itself, read from scratch (no code shared with the datapath):
/// its tuple, and which of its checksums hold. A checksum that cannot be verified (the
/// header is cut short, the lengths disagree, the quote is truncated) is nil.
public struct FrameFacts: Equatable {
    public struct Tuple: Equatable {
        public var src: IPAddress
        public var dst: IPAddress
        public var sport: UInt16
        public var dport: UInt16
        /// Byte offsets in the frame of the source and destination address, and of the two ports.
        public var srcOff: Int
        public var dstOff: Int
        public var portsOff: Int
    }

    public var v6 = false
    /// IPv4, IPv6 (no extension headers), UDP/TCP/ICMP: the frame is something the datapath reads.
    public var ip = false
    public var proto: UInt8 = 0
    public var tuple: Tuple?
    /// Offsets of every checksum field in the frame.
    public var checksumOffsets: [Int] = []
    public var ipHeaderChecksumOK: Bool?
    public var l4ChecksumOK: Bool?
    /// UDP over IPv4 without a checksum.
    public var udpZeroChecksum = false
    /// ICMP errors: the quoted packet.
    public var icmpType: UInt8?
    public var quote: Tuple?
    public var quoteProto: UInt8 = 0
    public var quoteIPHeaderChecksumOK: Bool?
    public var quoteL4ChecksumOK: Bool?
    public var quoteUDPZeroChecksum = false

    /// Every checksum that can be verified, by name.
    public var verifiable: [String: Bool] {
        var out: [String: Bool] = [:]
        if let ipHeaderChecksumOK { out["ip"] = ipHeaderChecksumOK }
        if let l4ChecksumOK { out["l4"] = l4ChecksumOK }
        if let quoteIPHeaderChecksumOK { out["quote-ip"] = quoteIPHeaderChecksumOK }
        if let quoteL4ChecksumOK { out["quote-l4"] = quoteL4ChecksumOK }
        return out
    }
}

/// Reads a frame the way a receiving host would, checking every checksum it can.
public enum FrameCheck {
    static func u16(_ b: [UInt8], _ i: Int) -> UInt16 { UInt16(b[i]) << 8 | UInt16(b[i + 1]) }

    static func address(_ b: [UInt8], _ off: Int, v6: Bool) -> IPAddress {
        Packets.address(b[off..<(off + (v6 ? 16 : 4))])
    }

    static func pseudoSum(_ b: [UInt8], srcOff: Int, dstOff: Int, v6: Bool, proto: UInt8, length: Int) -> UInt32 {
        let alen = v6 ? 16 : 4
        var h = Array(b[srcOff..<(srcOff + alen)]) + Array(b[dstOff..<(dstOff + alen)])
        h += v6 ? [0, 0] + Packets.be16(UInt16(length)) + [0, 0, 0, proto] : [0, proto] + Packets.be16(UInt16(length))
        return Packets.sum(h)
    }

    /// The L4 checksum of segment `seg` (UDP, TCP, ICMP, ICMPv6) under the addresses at
    /// srcOff/dstOff of `b`: true if it holds; UDP over IPv4 with a zero checksum holds.
    static func l4OK(_ b: [UInt8], seg: ArraySlice<UInt8>, srcOff: Int, dstOff: Int, v6: Bool, proto: UInt8) -> Bool? {
        let s = Array(seg)
        switch proto {
        case 17:
            guard s.count >= 8, Int(u16(s, 4)) == s.count else { return nil }
            if !v6 && u16(s, 6) == 0 { return true }
        case 6:
            guard s.count >= 20 else { return nil }
        case 1:
            guard !v6, s.count >= 4 else { return nil }
            return Packets.sum(s) == 0xffff
        case 58:
            guard v6, s.count >= 4 else { return nil }
        default: return nil
        }
        return Packets.sum(s, initial: pseudoSum(b, srcOff: srcOff, dstOff: dstOff, v6: v6, proto: proto, length: s.count))
            == 0xffff
    }

    /// An IP packet starting at `l3` in `b`, `avail` bytes of it present: header facts.
    /// Returns (v6, proto, headerLength, total length as the header says, src, dst offsets).
    static func ipHeader(_ b: [UInt8], at l3: Int, avail: Int) -> (Bool, UInt8, Int, Int, Int, Int)? {
        guard avail >= 1 else { return nil }
        let version = b[l3] >> 4
        if version == 4 {
            let ihl = Int(b[l3] & 0x0f) * 4
            guard ihl == 20, avail >= 20 else { return nil }
            return (false, b[l3 + 9], 20, Int(u16(b, l3 + 2)), l3 + 12, l3 + 16)
        }
        if version == 6 {
            guard avail >= 40 else { return nil }
            return (true, b[l3 + 6], 40, 40 + Int(u16(b, l3 + 4)), l3 + 8, l3 + 24)
        }
        return nil
    }

    public static func facts(_ b: [UInt8]) -> FrameFacts {
        var f = FrameFacts()
        guard b.count >= 14 else { return f }
        let ethertype = u16(b, 12)
        guard ethertype == 0x0800 || ethertype == 0x86dd,
            let (v6, proto, hlen, total, srcOff, dstOff) = ipHeader(b, at: 14, avail: b.count - 14),
            v6 == (ethertype == 0x86dd)
        else { return f }
        f.v6 = v6
        f.proto = proto
        guard proto == 6 || proto == 17 || (proto == 1 && !v6) || (proto == 58 && v6) else { return f }
        if !v6 {
            f.checksumOffsets.append(14 + 10)
            // fragments and options are not ours
            let frag = u16(b, 14 + 6) & 0x3fff
            guard frag == 0 else { return f }
            f.ipHeaderChecksumOK = Packets.sum(Array(b[14..<34])) == 0xffff
        }
        f.ip = true
        let l4 = 14 + hlen
        guard total >= hlen, 14 + total <= b.count else { return f }
        let seg = b[l4..<(14 + total)]
        if proto == 6 || proto == 17 {
            guard seg.count >= (proto == 6 ? 20 : 8) else { return f }
            f.tuple = .init(
                src: address(b, srcOff, v6: v6), dst: address(b, dstOff, v6: v6), sport: u16(b, l4), dport: u16(b, l4 + 2),
                srcOff: srcOff, dstOff: dstOff, portsOff: l4)
            let csumOff = l4 + (proto == 6 ? 16 : 6)
            f.checksumOffsets.append(csumOff)
            f.udpZeroChecksum = proto == 17 && !v6 && u16(b, csumOff) == 0
            f.l4ChecksumOK = l4OK(b, seg: seg, srcOff: srcOff, dstOff: dstOff, v6: v6, proto: proto)
            return f
        }
        // ICMP / ICMPv6
        guard seg.count >= 8 else { return f }
        f.tuple = .init(
            src: address(b, srcOff, v6: v6), dst: address(b, dstOff, v6: v6), sport: 0, dport: 0, srcOff: srcOff,
            dstOff: dstOff, portsOff: l4)
        f.checksumOffsets.append(l4 + 2)
        f.icmpType = b[l4]
        f.l4ChecksumOK = l4OK(b, seg: seg, srcOff: srcOff, dstOff: dstOff, v6: v6, proto: proto)
        // the quote
        let q = l4 + 8
        let qavail = 14 + total - q
        guard let (qv6, qproto, qhlen, qtotal, qsrc, qdst) = ipHeader(b, at: q, avail: qavail), qv6 == v6,
            qproto == 6 || qproto == 17, qavail >= qhlen + 8
        else { return f }
        let ql4 = q + qhlen
        f.quoteProto = qproto
        f.quote = .init(
            src: address(b, qsrc, v6: v6), dst: address(b, qdst, v6: v6), sport: u16(b, ql4), dport: u16(b, ql4 + 2),
            srcOff: qsrc, dstOff: qdst, portsOff: ql4)
        if !v6 {
            f.checksumOffsets.append(q + 10)
            f.quoteIPHeaderChecksumOK = Packets.sum(Array(b[q..<(q + 20)])) == 0xffff
        }
        let qcsum = ql4 + (qproto == 6 ? 16 : 6)
        if qcsum + 2 <= 14 + total { f.checksumOffsets.append(qcsum) }
        f.quoteUDPZeroChecksum = qproto == 17 && !v6 && u16(b, ql4 + 6) == 0
        if qtotal >= qhlen, q + qtotal <= 14 + total {
            // the whole quoted packet is there: its L4 checksum can be verified
            f.quoteL4ChecksumOK = l4OK(b, seg: b[ql4..<(q + qtotal)], srcOff: qsrc, dstOff: qdst, v6: v6, proto: qproto)
        }
        return f
    }
}
