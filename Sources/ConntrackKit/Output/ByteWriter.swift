import Glibc

/// Appends ASCII and JSON into a byte buffer and hands it to a stream in large chunks:
/// the streaming formatters write a million entries without building a String each.
/// The buffer is raw memory owned by the writer (noncopyable: one owner, freed with it), so
/// appending is a bounds check and a store.
public struct ByteWriter: ~Copyable {
    var base: UnsafeMutablePointer<UInt8>
    public private(set) var count = 0
    var capacity: Int
    let stream: TextStream?
    let chunk: Int

    public init(stream: TextStream?, chunk: Int = 1 << 16) {
        self.stream = stream
        self.chunk = chunk
        capacity = chunk + 1024
        base = .allocate(capacity: capacity)
    }

    deinit { base.deallocate() }

    /// Room for `n` more bytes (grows; a streaming writer is flushed between entries).
    @inline(__always)
    mutating func reserve(_ n: Int) {
        if count + n > capacity { grow(n) }
    }

    @inline(never)
    mutating func grow(_ n: Int) {
        var c = capacity * 2
        while count + n > c { c *= 2 }
        let b = UnsafeMutablePointer<UInt8>.allocate(capacity: c)
        b.update(from: base, count: count)
        base.deallocate()
        base = b
        capacity = c
    }

    @inline(__always)
    mutating func append(_ p: UnsafeRawPointer, _ n: Int) {
        reserve(n)
        memcpy(base + count, p, n)
        count += n
    }

    public var isEmpty: Bool { count == 0 }

    /// What was written (and not flushed) so far.
    public var bytes: [UInt8] { Array(buffer) }
    public var buffer: UnsafeBufferPointer<UInt8> { UnsafeBufferPointer(start: base, count: count) }

    /// Forgets what was written (keeps the memory).
    public mutating func reset() { count = 0 }

    /// Passes a full buffer on to the stream (the caller calls this between entries).
    @inline(__always)
    public mutating func flushIfFull() {
        if count >= chunk { flush() }
    }

    public mutating func flush() {
        guard let stream, count > 0 else { return }
        stream.write(bytes: UnsafeRawBufferPointer(buffer))
        count = 0
    }

    public var string: String { String(decoding: buffer, as: UTF8.self) }

    @inline(__always) public mutating func byte(_ b: UInt8) {
        reserve(1)
        base[count] = b
        count += 1
    }

    @inline(__always)
    public mutating func ascii(_ s: StaticString) {
        append(s.utf8Start, s.utf8CodeUnitCount)
    }

    public mutating func text(_ s: String) {
        var s = s
        s.withUTF8 { append($0.baseAddress!, $0.count) }
    }

    public mutating func append(_ b: [UInt8]) { b.withUnsafeBytes { if $0.count > 0 { append($0.baseAddress!, $0.count) } } }

    public mutating func append(_ b: UnsafeRawBufferPointer) { if b.count > 0 { append(b.baseAddress!, b.count) } }

    public mutating func spaces(_ n: Int) {
        guard n > 0 else { return }
        reserve(n)
        (base + count).initialize(repeating: UInt8(ascii: " "), count: n)
        count += n
    }

    @inline(__always)
    public mutating func decimal(_ v: UInt64) {
        if v < 10 {
            byte(UInt8(truncatingIfNeeded: v) &+ 48)
            return
        }
        var digits = 0
        var t = v
        while t > 0 {
            digits += 1
            t /= 10
        }
        reserve(digits)
        var v = v
        var i = count + digits
        while v > 0 {
            i -= 1
            base[i] = UInt8(truncatingIfNeeded: v % 10) &+ 48
            v /= 10
        }
        count += digits
    }

    @inline(__always) public mutating func decimal(_ v: Int) { decimal(UInt64(v)) }
    @inline(__always) public mutating func decimal(_ v: UInt16) { decimal(UInt64(v)) }
    @inline(__always) public mutating func decimal(_ v: UInt32) { decimal(UInt64(v)) }

    static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

    mutating func hex16(_ v: UInt16) {
        var started = false
        for shift in stride(from: 12, through: 0, by: -4) {
            let d = Int((v >> UInt16(shift)) & 0xf)
            if d != 0 || started || shift == 0 {
                byte(ByteWriter.hexDigits[d])
                started = true
            }
        }
    }

    /// 0...255 in decimal: the digits in the low three bytes, their count in the top one.
    static let octets: [UInt32] = (0..<256).map { n in
        let d = Array(String(n).utf8)
        var packed = UInt32(d.count) << 24
        for (i, c) in d.enumerated() { packed |= UInt32(c) << (8 * i) }
        return packed
    }

    /// A dotted quad, each octet from a table: the most frequent thing `list -o json` writes.
    @inline(__always)
    mutating func ipv4(_ v: UInt32) {
        reserve(15)
        var p = base + count
        ByteWriter.octets.withUnsafeBufferPointer { t in
            for shift in [24, 16, 8, 0] as [UInt32] {
                let packed = t[Int((v >> shift) & 0xff)]
                let n = Int(packed >> 24)
                p[0] = UInt8(truncatingIfNeeded: packed)
                p[1] = UInt8(truncatingIfNeeded: packed >> 8)
                p[2] = UInt8(truncatingIfNeeded: packed >> 16)
                p += n
                if shift != 0 {
                    p[0] = 46
                    p += 1
                }
            }
        }
        count = p - base
    }

    /// RFC 5952 text, as inet_ntop writes it (IPv4-mapped and -compatible forms included).
    public mutating func address(_ a: IPAddress) {
        if a.family == .v4 {
            ipv4(UInt32(truncatingIfNeeded: a.hi >> 32))
            return
        }
        var groups: (UInt16, UInt16, UInt16, UInt16, UInt16, UInt16, UInt16, UInt16) = (0, 0, 0, 0, 0, 0, 0, 0)
        withUnsafeMutableBytes(of: &groups) { raw in
            let g = raw.bindMemory(to: UInt16.self)
            for i in 0..<8 { g[i] = UInt16(truncatingIfNeeded: (i < 4 ? a.hi : a.lo) >> UInt64(48 - 16 * (i % 4))) }
        }
        withUnsafeBytes(of: &groups) { raw in
            let g = raw.bindMemory(to: UInt16.self)
            // the longest run of zero groups (the first of equals), if at least two long
            var bestStart = -1
            var bestLen = 0
            var i = 0
            while i < 8 {
                guard g[i] == 0 else {
                    i += 1
                    continue
                }
                var j = i
                while j < 8 && g[j] == 0 { j += 1 }
                if j - i > bestLen {
                    bestStart = i
                    bestLen = j - i
                }
                i = j
            }
            if bestLen < 2 { bestStart = -1 }
            // IPv4-compatible (::a.b.c.d) and IPv4-mapped (::ffff:a.b.c.d), as glibc prints them
            if bestStart == 0 && (bestLen == 6 || (bestLen == 5 && g[5] == 0xffff)) {
                ascii(bestLen == 5 ? "::ffff:" : "::")
                ipv4(UInt32(truncatingIfNeeded: a.lo))
                return
            }
            i = 0
            while i < 8 {
                if i == bestStart {
                    ascii("::")
                    i += bestLen
                    continue
                }
                if i > 0 && i != bestStart + bestLen { byte(58) }
                hex16(g[i])
                i += 1
            }
        }
    }

    public mutating func endpoint(_ a: IPAddress, _ port: UInt16) {
        if a.family == .v6 { byte(91) }
        address(a)
        if a.family == .v6 { byte(93) }
        byte(58)
        decimal(port)
    }

    public mutating func proto(_ p: UInt8) {
        switch p {
        case 6: ascii("tcp")
        case 17: ascii("udp")
        default: decimal(UInt64(p))
        }
    }

    /// A JSON string (quotes and escapes included).
    public mutating func jsonString(_ s: String) {
        byte(34)
        for b in s.utf8 {
            switch b {
            case 34: ascii("\\\"")
            case 92: ascii("\\\\")
            case 10: ascii("\\n")
            case 13: ascii("\\r")
            case 9: ascii("\\t")
            case 0..<32:
                ascii("\\u00")
                byte(ByteWriter.hexDigits[Int(b >> 4)])
                byte(ByteWriter.hexDigits[Int(b & 0xf)])
            default: byte(b)
            }
        }
        byte(34)
    }

    @inline(__always)
    public mutating func jsonAddress(_ a: IPAddress) {
        byte(34)
        address(a)
        byte(34)
    }
}
