import CLibBPF
import ConntrackKit

/// Fills a dataplane's maps with a realistic mix for `make bench`: services with
/// backends, normal entries, NAT pairs, and a share of stale entries of every kind,
/// written with BPF_MAP_UPDATE_BATCH. One generator for the benchmark, the tests and the
/// drills.
public struct BenchFill {
    public static let services = 64
    public static let backendsPerService = 4

    public let total: Int
    /// Share of the entries that are stale (default 10%).
    public let staleFraction: Double

    public init(entries: Int, staleFraction: Double = 0.10) {
        total = entries
        self.staleFraction = staleFraction
    }

    /// Service i: 198.19.(i / 256).(i % 256):161/udp for even i, :80/tcp for odd i.
    public static func service(_ i: Int) -> ServiceRef {
        ServiceRef(
            vip: Endpoint(address: IPAddress("198.19.\(i / 256).\(i % 256)")!, port: i % 2 == 0 ? 161 : 80),
            proto: i % 2 == 0 ? .udp : .tcp)
    }

    public static func backend(_ svc: Int, _ b: Int) -> Endpoint {
        Endpoint(address: IPAddress("198.18.\(200 + svc / 64).\((svc % 64) * 4 + b)")!, port: 8080)
    }

    /// A unique client for flow i: 198.18.0.0/15 minus the backends, 1000 ports an address.
    static func client(_ i: Int) -> (IPAddress, UInt16) {
        let host = i / 1000
        return (IPAddress(family: .v4, hi: UInt64(0xC612_0000 + 0x100 + UInt32(host)) << 32, lo: 0), UInt16(20000 + i % 1000))
    }

    var plan: (fresh: Int, freshNormal: Int, freshPairs: Int, live: Int) {
        let staleEntries = Int(Double(total) * staleFraction)
        let fresh = total - staleEntries
        let freshNormal = fresh / 3
        return (fresh, freshNormal, (fresh - freshNormal) / 2, BenchFill.services - 8)
    }

    /// A VIP and a client address with NAT pairs between them (for `conntrack remove`).
    public func samplePair() -> (IPAddress, IPAddress) {
        let flow = plan.freshNormal
        return (BenchFill.service(flow % plan.live).vip.address, BenchFill.client(flow).0)
    }

    /// Creates the services (the orphan ones are created and deleted again, as in life).
    public func createServices(_ dp: ReferenceDataplane, lock: WriterLock) throws {
        for i in 0..<BenchFill.services {
            try Services.set(
                dp, BenchFill.service(i), backends: (0..<BenchFill.backendsPerService).map { BenchFill.backend(i, $0) },
                lock: lock)
        }
    }

    public struct Counts: Sendable {
        public var normal = 0, natPairs = 0, missedNAT = 0, orphanPairs = 0, expired = 0, halfPairs = 0
        public init() {}
        /// Entries written (a pair counts two).
        public var entries: Int { normal + natPairs * 2 + missedNAT + orphanPairs * 2 + expired + halfPairs }
        /// Entries heal deletes.
        public var stale: Int { missedNAT + orphanPairs * 2 + expired + halfPairs }
    }

    /// An entry's value with the bookkeeping fields set (10 packets, 640 bytes).
    public static func entry(_ type: EntryType, created: UInt64, lastSeen: UInt64, epoch: UInt32) -> ctctl_ct_value {
        var v = ctctl_ct_value()
        v.created_ns = created
        v.last_seen_ns = lastSeen
        v.packets = 10
        v.bytes = 640
        v.epoch = epoch
        v.type = type.rawValue
        return v
    }

    /// Both halves of a NAT pair as the datapath writes them (10 packets, 640 bytes).
    public static func natPair(
        _ svc: ServiceRef, client: Endpoint, backend: Endpoint, created: UInt64, lastSeen: UInt64, epoch: UInt32
    ) -> (fwdKey: ctctl_ct_key, fwd: ctctl_ct_value, revKey: ctctl_ct_key, rev: ctctl_ct_value) {
        let fwdKey = FlowKey(proto: svc.proto, src: client, dst: svc.vip).raw
        let revKey = FlowKey(proto: svc.proto, src: backend, dst: client).raw
        var f = entry(.natForward, created: created, lastSeen: lastSeen, epoch: epoch)
        f.svc_proto = svc.proto.number
        f.svc_port = svc.vip.port.bigEndian
        f.nat_port = backend.port.bigEndian
        withUnsafeMutableBytes(of: &f.nat_addr) { backend.address.store(to: $0.baseAddress!) }
        withUnsafeMutableBytes(of: &f.svc_addr) { svc.vip.address.store(to: $0.baseAddress!) }
        f.partner = revKey
        var r = f
        r.type = EntryType.natReverse.rawValue
        r.nat_port = svc.vip.port.bigEndian
        withUnsafeMutableBytes(of: &r.nat_addr) { svc.vip.address.store(to: $0.baseAddress!) }
        r.partner = fwdKey
        return (fwdKey, f, revKey, r)
    }

    /// Writes (or rewrites, with fresh times) every entry.
    @discardableResult
    public func write(_ dp: ReferenceDataplane, now: UInt64) throws -> Counts {
        let timeouts = dp.timeouts
        let epoch = try dp.epoch()
        let sec: UInt64 = 1_000_000_000
        let age = { (s: UInt64) in now > s * sec ? now - s * sec : 0 }
        var c = Counts()
        let capacity = 8192
        let keys = UnsafeMutablePointer<ctctl_ct_key>.allocate(capacity: capacity)
        let values = UnsafeMutablePointer<ctctl_ct_value>.allocate(capacity: capacity)
        defer {
            keys.deallocate()
            values.deallocate()
        }
        var n = 0
        func flush() throws {
            guard n > 0 else { return }
            var count = UInt32(n)
            do throws(Errno) {
                try Errno.bpf { CLibBPF_map_update_batch(dp.ct.fd, keys, values, &count, UInt64(BPF_ANY)) }
            } catch {
                throw CtctlError.from(error, doing: "filling", path: dp.ct.path)
            }
            n = 0
        }
        func put(_ k: ctctl_ct_key, _ v: ctctl_ct_value) throws {
            keys[n] = k
            values[n] = v
            n += 1
            if n == capacity { try flush() }
        }
        func pair(_ flow: Int, svc: ServiceRef, backend: Endpoint, created: UInt64, lastSeen: UInt64, half: Bool = false) throws {
            let (ca, cp) = BenchFill.client(flow)
            let p = BenchFill.natPair(
                svc, client: Endpoint(address: ca, port: cp), backend: backend, created: created, lastSeen: lastSeen, epoch: epoch
            )
            try put(p.fwdKey, p.fwd)
            if !half { try put(p.revKey, p.rev) }
        }
        func normal(_ flow: Int, to dst: Endpoint, proto: IPProto, created: UInt64, lastSeen: UInt64) throws {
            let (ca, cp) = BenchFill.client(flow)
            try put(
                FlowKey(proto: proto, src: Endpoint(address: ca, port: cp), dst: dst).raw,
                BenchFill.entry(.normal, created: created, lastSeen: lastSeen, epoch: epoch))
        }
        // Plan: stale entries are ~staleFraction of all entries; the rest is 1/3 normal
        // entries and 2/3 NAT halves.
        let staleEntries = Int(Double(total) * staleFraction)
        let missed = staleEntries * 3 / 10
        let orphans = staleEntries * 4 / 10 / 2
        let expired = staleEntries * 2 / 10
        let halves = staleEntries - missed - orphans * 2 - expired
        let (_, freshNormal, freshPairs, live) = plan  // services live..63 get orphan pairs (a backend port they lack)
        var flow = 0
        // fresh normal entries (to hosts that are not services)
        for _ in 0..<freshNormal {
            try normal(
                flow, to: Endpoint(address: IPAddress("198.18.250.\(flow % 250 + 1)")!, port: 53), proto: .udp, created: age(300),
                lastSeen: age(UInt64(flow % 20)))
            flow += 1
            c.normal += 1
        }
        for _ in 0..<freshPairs {
            let s = flow % live
            try pair(
                flow, svc: BenchFill.service(s), backend: BenchFill.backend(s, flow % BenchFill.backendsPerService),
                created: age(300),
                lastSeen: age(UInt64(flow % 20)))
            flow += 1
            c.natPairs += 1
        }
        for _ in 0..<missed {
            let s = flow % live
            try normal(flow, to: BenchFill.service(s).vip, proto: BenchFill.service(s).proto, created: age(300), lastSeen: age(1))
            flow += 1
            c.missedNAT += 1
        }
        for _ in 0..<orphans {
            let s = live + flow % 8
            try pair(
                flow, svc: BenchFill.service(s), backend: Endpoint(address: BenchFill.backend(s, 0).address, port: 9090),
                created: age(300), lastSeen: age(1))
            flow += 1
            c.orphanPairs += 1
        }
        let idle = timeouts.udp / sec + 10
        for _ in 0..<expired {
            try normal(
                flow, to: Endpoint(address: IPAddress("198.18.251.\(flow % 250 + 1)")!, port: 53), proto: .udp,
                created: age(idle + 100), lastSeen: age(idle))
            flow += 1
            c.expired += 1
        }
        for _ in 0..<halves {
            let s = flow % live
            try pair(
                flow, svc: BenchFill.service(s), backend: BenchFill.backend(s, 0), created: age(300), lastSeen: age(1), half: true
            )
            flow += 1
            c.halfPairs += 1
        }
        try flush()
        return c
    }
}
