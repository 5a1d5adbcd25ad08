/// Calico's conntrack keys: two endpoints in A/B order (conntrack.h src_lt_dest and
/// fill_ct_key). Addresses compare as the 32-bit words of their network-order bytes read as
/// host (little-endian) integers, word by word; equal addresses compare ports (host order).
extension CalicoFormat {
    @inline(__always)
    static func words(_ a: IPAddress) -> (UInt32, UInt32, UInt32, UInt32) {
        (
            UInt32(truncatingIfNeeded: a.hi >> 32).byteSwapped, UInt32(truncatingIfNeeded: a.hi).byteSwapped,
            UInt32(truncatingIfNeeded: a.lo >> 32).byteSwapped, UInt32(truncatingIfNeeded: a.lo).byteSwapped
        )
    }

    /// src_lt_dest: is (a, ap) Calico's A when paired with (b, bp)?
    @inline(__always)
    static func isA(_ a: IPAddress, _ ap: UInt16, before b: IPAddress, _ bp: UInt16) -> Bool {
        let x = words(a)
        let y = words(b)
        if x.0 != y.0 { return x.0 < y.0 }
        if x.1 != y.1 { return x.1 < y.1 }
        if x.2 != y.2 { return x.2 < y.2 }
        if x.3 != y.3 { return x.3 < y.3 }
        return ap < bp
    }

    /// Writes the key of `proto` between two endpoints, in A/B order, into `raw` (keySize bytes).
    func writeKey(_ raw: UnsafeMutableRawPointer, proto: UInt8, _ x: Endpoint, _ y: Endpoint) {
        raw.initializeMemory(as: UInt8.self, repeating: 0, count: keySize)
        let (a, b) = CalicoFormat.isA(x.address, x.port, before: y.address, y.port) ? (x, y) : (y, x)
        raw.storeBytes(of: UInt32(proto).littleEndian, toByteOffset: CalicoFormat.proto, as: UInt32.self)
        a.address.storeCompact(to: raw + CalicoFormat.addrA)
        b.address.storeCompact(to: raw + addrB)
        raw.storeBytes(of: a.port.littleEndian, toByteOffset: portA, as: UInt16.self)
        raw.storeBytes(of: b.port.littleEndian, toByteOffset: portB, as: UInt16.self)
    }

    /// The key's two endpoints as stored.
    @inline(__always)
    func endpoints(_ key: UnsafeRawPointer) -> (a: Endpoint, b: Endpoint) {
        (
            Endpoint(
                address: IPAddress(raw: key + CalicoFormat.addrA, v6: v6),
                port: key.loadUnaligned(fromByteOffset: portA, as: UInt16.self)),
            Endpoint(
                address: IPAddress(raw: key + addrB, v6: v6), port: key.loadUnaligned(fromByteOffset: portB, as: UInt16.self))
        )
    }

    /// The 16 or 40 key bytes as 5 words, zero-padded (the pair ledger's key form).
    @inline(__always)
    func keyWords(_ key: UnsafeRawPointer, into w: UnsafeMutablePointer<UInt64>) {
        let n = keySize / 8
        for i in 0..<5 { w[i] = i < n ? key.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self) : 0 }
    }
}
