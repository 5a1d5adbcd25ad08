import CLibBPF
import ConntrackKit
import Foundation

/// Fills a Calico lab's IPv4 conntrack map (../shared/calico/calico-lab) with a realistic mix
/// in Calico's own format, for `make bench` and the drills: NORMAL entries, NAT pairs
/// (NAT_FWD + NAT_REV) to live backends, and a share of stale ones of the kinds ctctl judges
/// on Calico: missed-nat, orphan-nat (a pair to a removed backend), half pairs (a NAT_REV
/// without its NAT_FWD). Services are written by the lab, as felix writes them.
public struct CalicoFill {
    public static let services = 56
    public static let backendsPerService = 4
    public let total: Int
    public let staleFraction: Double

    public init(entries: Int, staleFraction: Double = 0.10) {
        total = entries
        self.staleFraction = staleFraction
    }

    public static func vip(_ i: Int) -> Endpoint { Endpoint(address: IPAddress("198.19.\(i / 256).\(i % 256)")!, port: 53) }
    public static func backend(_ s: Int, _ b: Int) -> Endpoint {
        Endpoint(address: IPAddress("198.18.\(200 + s / 64).\((s % 64) * 4 + b)")!, port: 5353)
    }
    static func client(_ i: Int) -> Endpoint {
        Endpoint(
            address: IPAddress(family: .v4, hi: UInt64(0xC612_0000 + 0x100 + UInt32(i / 1000)) << 32, lo: 0),
            port: UInt16(20000 + i % 1000))
    }

    /// The services, through the lab (`lab` runs one calico-lab command).
    public func createServices(_ lab: ([String]) throws -> Void) throws {
        for i in 0..<CalicoFill.services {
            try lab(
                ["service", "set", "\(CalicoFill.vip(i))/udp"]
                    + (0..<CalicoFill.backendsPerService).map { "\(CalicoFill.backend(i, $0))" })
        }
    }

    /// Replaces the lab's `cali_v4_ct4` (or ct3) by a map of the same kind, BTF and all, with
    /// room for `entries`: what felix does when BPFMapSizeConntrack changes.
    public static func resize(_ pins: PinDirectory, map name: String, entries: Int) throws {
        let path = pins.pin(name)
        let old = CLibBPF_obj_get(path, 0)
        guard old >= 0 else { throw CtctlError(.unavailable, "no \(path)") }
        defer { close(old) }
        var size: UInt32 = 1024
        while Int(size) < entries * 2 { size *= 2 }
        let fd = CLibBPF_map_create_like(old, size)
        guard fd >= 0 else { throw CtctlError.from(Errno(-fd), doing: "creating a bigger", path: path) }
        defer { close(fd) }
        unlink(path)
        guard bpf_obj_pin(fd, path) == 0 else { throw CtctlError.from(Errno(errno), doing: "pinning", path: path) }
    }

    public struct Counts: Sendable {
        public var normal = 0, pairs = 0, missedNAT = 0, orphanPairs = 0, halfPairs = 0
        public init() {}
        public var entries: Int { normal + pairs * 2 + missedNAT + orphanPairs * 2 + halfPairs }
        public var stale: Int { missedNAT + orphanPairs * 2 + halfPairs }
    }

    /// Writes (or rewrites, with fresh times) every entry into the IPv4 conntrack map at `path`.
    @discardableResult
    public func write(_ path: String, now: UInt64) throws -> Counts {
        let map = try BPFMap.open(path, readOnly: false)
        let ks = Int(CALICO_V4_CT_KEY_SIZE)
        let vs = Int(CALICO_V4_CT_VALUE_SIZE)
        let capacity = 8192
        let keys = UnsafeMutableRawPointer.allocate(byteCount: capacity * ks, alignment: 8)
        let values = UnsafeMutableRawPointer.allocate(byteCount: capacity * vs, alignment: 8)
        defer {
            keys.deallocate()
            values.deallocate()
        }
        var n = 0
        func flush() throws {
            guard n > 0 else { return }
            var count = UInt32(n)
            do throws(Errno) {
                try Errno.bpf { CLibBPF_map_update_batch(map.fd, keys, values, &count, UInt64(BPF_ANY)) }
            } catch {
                throw CtctlError.from(error, doing: "filling", path: path)
            }
            n = 0
        }
        /// The key of two endpoints in Calico's A/B order; true if `x` is A.
        func key(_ k: UnsafeMutableRawPointer, _ x: Endpoint, _ y: Endpoint) -> Bool {
            let xw = UInt32(truncatingIfNeeded: x.address.hi >> 32).byteSwapped
            let yw = UInt32(truncatingIfNeeded: y.address.hi >> 32).byteSwapped
            let xa = xw < yw || (xw == yw && x.port < y.port)
            let (a, b) = xa ? (x, y) : (y, x)
            k.initializeMemory(as: UInt8.self, repeating: 0, count: ks)
            k.storeBytes(of: UInt32(17), as: UInt32.self)
            a.address.storeCompact(to: k + Int(CALICO_CT_KEY_ADDR_A))
            b.address.storeCompact(to: k + Int(CALICO_V4_CT_KEY_ADDR_B))
            k.storeBytes(of: a.port, toByteOffset: Int(CALICO_V4_CT_KEY_PORT_A), as: UInt16.self)
            k.storeBytes(of: b.port, toByteOffset: Int(CALICO_V4_CT_KEY_PORT_B), as: UInt16.self)
            return xa
        }
        func slot() -> (UnsafeMutableRawPointer, UnsafeMutableRawPointer) {
            let v = values + n * vs
            v.initializeMemory(as: UInt8.self, repeating: 0, count: vs)
            return (keys + n * ks, v)
        }
        func commit() throws {
            n += 1
            if n == capacity { try flush() }
        }
        /// A leg's packets and bytes, and the opener's bits (approved, opener, workload).
        func leg(_ v: UnsafeMutableRawPointer, _ offset: Int32, opener: Bool) {
            v.storeBytes(of: UInt64(640), toByteOffset: Int(offset) + Int(CALICO_LEG_BYTES), as: UInt64.self)
            v.storeBytes(of: UInt32(10), toByteOffset: Int(offset) + Int(CALICO_LEG_PACKETS), as: UInt32.self)
            if opener { v.storeBytes(of: UInt32(0x70), toByteOffset: Int(offset) + Int(CALICO_LEG_BITS), as: UInt32.self) }
        }
        func normal(_ c: Endpoint, _ dst: Endpoint, lastSeen: UInt64) throws {
            let (k, v) = slot()
            let clientIsA = key(k, c, dst)
            v.storeBytes(of: lastSeen, toByteOffset: Int(CALICO_CT_LAST_SEEN), as: UInt64.self)
            if !clientIsA { v.storeBytes(of: UInt8(1), toByteOffset: Int(CALICO_CT_FLAGS2), as: UInt8.self) }  // BA
            leg(v, clientIsA ? CALICO_CT_LEG_AB : CALICO_CT_LEG_BA, opener: true)
            try commit()
        }
        /// A NAT_REV (client <-> backend) and, unless `half`, its NAT_FWD (client <-> VIP).
        func pair(_ c: Endpoint, _ vip: Endpoint, _ backend: Endpoint, lastSeen: UInt64, half: Bool = false) throws {
            let (rk, rv) = slot()
            let clientIsA = key(rk, c, backend)
            rv.storeBytes(of: lastSeen, toByteOffset: Int(CALICO_CT_LAST_SEEN), as: UInt64.self)
            rv.storeBytes(of: UInt8(CALICO_CT_NAT_REV), toByteOffset: Int(CALICO_CT_TYPE), as: UInt8.self)
            if !clientIsA { rv.storeBytes(of: UInt8(1), toByteOffset: Int(CALICO_CT_FLAGS2), as: UInt8.self) }
            leg(rv, clientIsA ? CALICO_CT_LEG_AB : CALICO_CT_LEG_BA, opener: true)
            vip.address.storeCompact(to: rv + Int(CALICO_V4_CT_ORIG_IP))
            rv.storeBytes(of: vip.port, toByteOffset: Int(CALICO_V4_CT_ORIG_PORT), as: UInt16.self)
            rv.storeBytes(of: c.port, toByteOffset: Int(CALICO_V4_CT_ORIG_SPORT), as: UInt16.self)
            c.address.storeCompact(to: rv + Int(CALICO_V4_CT_ORIG_SIP))
            try commit()
            guard !half else { return }
            let revKey = keys + (n - 1) * ks
            let (fk, fv) = slot()
            _ = key(fk, c, vip)
            fv.storeBytes(of: lastSeen, toByteOffset: Int(CALICO_CT_LAST_SEEN), as: UInt64.self)
            fv.storeBytes(of: UInt8(CALICO_CT_NAT_FWD), toByteOffset: Int(CALICO_CT_TYPE), as: UInt8.self)
            (fv + Int(CALICO_CT_NAT_REV_KEY)).copyMemory(from: revKey, byteCount: ks)
            try commit()
        }
        let sec: UInt64 = 1_000_000_000
        let age = { (s: UInt64) in now > s * sec ? now - s * sec : 0 }
        var c = Counts()
        let staleEntries = Int(Double(total) * staleFraction)
        let missed = staleEntries * 4 / 10
        let orphans = staleEntries * 4 / 10 / 2
        let halves = staleEntries - missed - orphans * 2
        let fresh = total - staleEntries
        let freshNormal = fresh / 3
        let freshPairs = (fresh - freshNormal) / 2
        let live = CalicoFill.services
        var flow = 0
        for _ in 0..<freshNormal {
            try normal(
                CalicoFill.client(flow), Endpoint(address: IPAddress("198.18.250.\(flow % 250 + 1)")!, port: 53),
                lastSeen: age(UInt64(flow % 20)))
            flow += 1
            c.normal += 1
        }
        for _ in 0..<freshPairs {
            let s = flow % live
            try pair(
                CalicoFill.client(flow), CalicoFill.vip(s), CalicoFill.backend(s, flow % CalicoFill.backendsPerService),
                lastSeen: age(UInt64(flow % 20)))
            flow += 1
            c.pairs += 1
        }
        for _ in 0..<missed {
            try normal(CalicoFill.client(flow), CalicoFill.vip(flow % live), lastSeen: age(1))
            flow += 1
            c.missedNAT += 1
        }
        for _ in 0..<orphans {
            let s = flow % live
            // a backend port the service does not have: removed
            try pair(
                CalicoFill.client(flow), CalicoFill.vip(s), Endpoint(address: CalicoFill.backend(s, 0).address, port: 9090),
                lastSeen: age(1))
            flow += 1
            c.orphanPairs += 1
        }
        for _ in 0..<halves {
            let s = flow % live
            try pair(CalicoFill.client(flow), CalicoFill.vip(s), CalicoFill.backend(s, 0), lastSeen: age(1), half: true)
            flow += 1
            c.halfPairs += 1
        }
        try flush()
        return c
    }

    /// A VIP and a client with NAT pairs between them (for `conntrack remove`).
    public func samplePair() -> (IPAddress, IPAddress) {
        let fresh = total - Int(Double(total) * staleFraction)
        let flow = fresh / 3
        return (CalicoFill.vip(flow % CalicoFill.services).address, CalicoFill.client(flow).address)
    }
}
