import Glibc

/// One frontend of Calico's NAT frontend map (an LPM trie entry: VIP, port, protocol, and a
/// source range), with its value.
struct CalicoFrontend: Sendable, Equatable {
    /// Bits of the key after the prefix-length field that must match (56/152: no source
    /// range; more: a source range of prefixBits - 56/152 bits).
    let prefixBits: Int
    let vip: IPAddress
    let port: UInt16
    let proto: UInt8
    let source: IPAddress
    let id: UInt32
    let count: UInt32
    let local: UInt32
    let affinitySeconds: UInt32
    let flags: UInt32

    /// Decodes a frontend map entry (calico_nat_key, calico_nat_value).
    init(key k: UnsafeRawPointer, value v: UnsafeRawPointer, _ fmt: CalicoFormat) {
        let prefix = Int(UInt32(littleEndian: k.loadUnaligned(as: UInt32.self)))
        prefixBits = prefix
        vip = IPAddress(raw: k + 4, v6: fmt.v6)
        port = k.loadUnaligned(fromByteOffset: fmt.fePort, as: UInt16.self)
        proto = k.load(fromByteOffset: fmt.feProto, as: UInt8.self)
        source =
            IPNetwork(address: IPAddress(raw: k + fmt.feSrc, v6: fmt.v6), prefix: max(0, prefix - fmt.fePrefixNoSource)).address
        id = v.loadUnaligned(as: UInt32.self)
        count = v.loadUnaligned(fromByteOffset: 4, as: UInt32.self)
        local = v.loadUnaligned(fromByteOffset: 8, as: UInt32.self)
        affinitySeconds = v.loadUnaligned(fromByteOffset: 12, as: UInt32.self)
        flags = v.loadUnaligned(fromByteOffset: 16, as: UInt32.self)
    }

    /// The frontend map's key for the datapath's lookup: (VIP, port, protocol, source), full length.
    static func lookupKey(
        _ k: UnsafeMutableRawPointer, _ fmt: CalicoFormat, _ dst: IPAddress, _ port: UInt16, _ proto: UInt8, _ src: IPAddress
    ) {
        k.initializeMemory(as: UInt8.self, repeating: 0, count: fmt.feKeySize)
        k.storeBytes(of: UInt32(fmt.fePrefixFull).littleEndian, as: UInt32.self)
        dst.storeCompact(to: k + 4)
        k.storeBytes(of: port, toByteOffset: fmt.fePort, as: UInt16.self)
        k.storeBytes(of: proto, toByteOffset: fmt.feProto, as: UInt8.self)
        src.storeCompact(to: k + fmt.feSrc)
    }

    func sourceBits(_ f: CalicoFormat) -> Int { max(0, prefixBits - f.fePrefixNoSource) }

    /// The frontend's value (what a lookup returns, whatever key matched).
    var value: [UInt32] { [id, count, local, affinitySeconds, flags] }
    var isNodePort: Bool { vip == Calico.nodePortAddress(v6: vip.family == .v6) }
}

/// One backend: (service id, ordinal) -> address:port.
struct CalicoBackend: Sendable, Equatable {
    let id: UInt32
    let ordinal: UInt32
    let endpoint: Endpoint
}

/// The routes map, looked up as Calico's datapath looks it up (longest prefix, in the
/// kernel), and remembered for the pass: only the NodePort fallback and "local" frontends
/// ask it. A scan's threads share it: one lookup at a time (the cache and the key and value
/// buffers are shared).
final class CalicoRoutes: @unchecked Sendable {
    let map: BPFMap
    let format: CalicoFormat
    private let lock = Lock()
    private var cache: [IPAddress: UInt32?] = [:]
    private let key: UnsafeMutableRawPointer
    private let value: UnsafeMutableRawPointer

    init(_ map: BPFMap, _ format: CalicoFormat) {
        self.map = map
        self.format = format
        key = .allocate(byteCount: format.rtKeySize, alignment: 8)
        value = .allocate(byteCount: format.rtValueSize, alignment: 8)
    }

    deinit {
        key.deallocate()
        value.deallocate()
    }

    /// The flags of the route for `a`, nil if there is none.
    func flags(_ a: IPAddress) -> UInt32? { lock.withLock { lookup(a) } }

    private func lookup(_ a: IPAddress) -> UInt32? {
        if let hit = cache[a] { return hit }
        if cache.count > 65536 { cache.removeAll(keepingCapacity: true) }
        key.initializeMemory(as: UInt8.self, repeating: 0, count: format.rtKeySize)
        key.storeBytes(of: UInt32(format.addrSize * 8).littleEndian, as: UInt32.self)
        a.storeCompact(to: key + 4)
        let found = (try? map.lookup(UnsafeRawPointer(key), into: value)) ?? false
        let flags: UInt32? = found ? value.loadUnaligned(as: UInt32.self) : nil
        cache[a] = flags
        return flags
    }
}

/// One family's frontends and backends, indexed for the questions the judge asks once per
/// entry.
final class CalicoFamilyView: @unchecked Sendable {
    /// A service's backends by ordinal, as this view read them (the remover compares them
    /// with the live maps).
    func ordinals(of id: UInt32, count: UInt32) -> [Endpoint?] {
        var out = [Endpoint?](repeating: nil, count: Int(min(count, 1 << 16)))
        for b in backends where b.id == id && b.ordinal < count { out[Int(b.ordinal)] = b.endpoint }
        return out
    }

    let format: CalicoFormat
    let frontends: [CalicoFrontend]
    let backends: [CalicoBackend]
    /// (VIP, port, protocol) -> index into `groups`, frontends of that triple, longest
    /// source range first.
    private let byTriple: WordSet
    private let groups: [[Int]]
    /// Frontends whose prefix stops inside the VIP, port or protocol (not written by felix;
    /// matched the general way, bit by bit).
    private let shortPrefix: [Int]
    /// (service id, port, family, address) of every backend a translating frontend names.
    private let members: WordSet
    let routes: CalicoRoutes

    /// The same view in objects of its own (arrays, indexes and route cache), for one more
    /// scan thread.
    func copy() -> CalicoFamilyView {
        CalicoFamilyView(
            format: format, frontends: frontends.map { $0 }, backends: backends.map { $0 },
            routes: CalicoRoutes(routes.map, routes.format))
    }

    init(format: CalicoFormat, frontends: [CalicoFrontend], backends: [CalicoBackend], routes: CalicoRoutes) {
        self.format = format
        self.frontends = frontends
        self.backends = backends
        self.routes = routes
        var order: [[UInt64]: Int] = [:]
        var groups: [[Int]] = []
        var short: [Int] = []
        for (i, f) in frontends.enumerated() {
            guard f.prefixBits >= format.fePrefixNoSource else {
                short.append(i)
                continue
            }
            let k = CalicoFamilyView.triple(f.vip, f.port, f.proto)
            if let g = order[k] {
                groups[g].append(i)
            } else {
                order[k] = groups.count
                groups.append([i])
            }
        }
        let sorted = groups.map { g in g.sorted { frontends[$0].prefixBits > frontends[$1].prefixBits } }
        let keys = order.sorted { $0.value < $1.value }.map(\.key)
        byTriple = WordSet(width: 3, keys: keys)
        self.groups = sorted
        shortPrefix = short
        var ids: [UInt32: UInt32] = [:]
        for f in frontends where f.count != Calico.dropCount { ids[f.id] = max(ids[f.id] ?? 0, f.count) }
        members = WordSet(
            width: 3,
            keys: backends.filter { b in ids[b.id].map { b.ordinal < $0 } ?? false }.map {
                CalicoFamilyView.member($0.id, $0.endpoint.address, $0.endpoint.port)
            })
    }

    static func triple(_ a: IPAddress, _ port: UInt16, _ proto: UInt8) -> [UInt64] {
        [a.hi, a.lo, UInt64(port) | UInt64(proto) << 16]
    }

    static func member(_ id: UInt32, _ a: IPAddress, _ port: UInt16) -> [UInt64] {
        let m = memberWords(id, a, port)
        return [m.0, m.1, m.2]
    }

    @inline(__always)
    static func memberWords(_ id: UInt32, _ a: IPAddress, _ port: UInt16) -> (UInt64, UInt64, UInt64) {
        (UInt64(id) << 32 | UInt64(port) << 8 | UInt64(a.family.rawValue), a.hi, a.lo)
    }

    /// The frontend the datapath's first lookup finds: longest prefix of (VIP, port,
    /// protocol, client).
    func match(_ dst: IPAddress, _ port: UInt16, _ proto: UInt8, client: IPAddress) -> CalicoFrontend? {
        var k = (dst.hi, dst.lo, UInt64(port) | UInt64(proto) << 16)
        var best: CalicoFrontend? = nil
        if let g = withUnsafePointer(to: &k, { byTriple.index(of: UnsafeRawPointer($0).assumingMemoryBound(to: UInt64.self)) }) {
            for i in groups[g] where CalicoFamilyView.inRange(client, frontends[i].source, frontends[i].sourceBits(format)) {
                best = frontends[i]
                break
            }
        }
        for i in shortPrefix where frontends[i].prefixBits > (best?.prefixBits ?? -1) {
            if matchesPrefix(frontends[i], dst, port, proto, client: client) { best = frontends[i] }
        }
        return best
    }

    static func inRange(_ a: IPAddress, _ net: IPAddress, _ bits: Int) -> Bool {
        bits == 0 || IPNetwork(address: net, prefix: bits).contains(a)
    }

    /// The general LPM test: the first `prefixBits` bits of the datapath's lookup key.
    private func matchesPrefix(_ f: CalicoFrontend, _ dst: IPAddress, _ port: UInt16, _ proto: UInt8, client: IPAddress) -> Bool {
        func bytes(_ a: IPAddress, _ p: UInt16, _ pr: UInt8, _ src: IPAddress) -> [UInt8] {
            a.bytes + [UInt8(p & 0xff), UInt8(p >> 8), pr] + src.bytes
        }
        let want = bytes(f.vip, f.port, f.proto, f.source)
        let got = bytes(dst, port, proto, client)
        for bit in 0..<f.prefixBits {
            let m = UInt8(0x80) >> UInt8(bit % 8)
            if want[bit / 8] & m != got[bit / 8] & m { return false }
        }
        return true
    }

    /// nat_lookup.h calico_nat_lookup, up to the backend choice: which frontend, and what it
    /// does with a new flow from `client`.
    func state(_ dst: IPAddress, _ port: UInt16, _ proto: UInt8, client: IPAddress) -> (CalicoFrontend?, FrontendState) {
        CalicoFamilyView.state(dst, port, proto, client: client, v6: format.v6, routes: routes.flags) {
            match($0, $1, $2, client: $3)
        }
    }

    /// The datapath's decision, given how to find the frontend for (destination, port,
    /// protocol, client) — the longest prefix match — and how to look a route up: shared by
    /// the view a scan judges with and the live re-check right before a delete.
    static func state(
        _ dst: IPAddress, _ port: UInt16, _ proto: UInt8, client: IPAddress, v6: Bool, routes: (IPAddress) -> UInt32?,
        match: (IPAddress, UInt16, UInt8, IPAddress) -> CalicoFrontend?
    ) -> (CalicoFrontend?, FrontendState) {
        var f = match(dst, port, proto, client)
        if f == nil {
            // the NodePort wildcard, for destinations the routes map marks as a host
            let np = Calico.nodePortAddress(v6: v6)
            guard dst != np, let wildcard = match(np, port, proto, client), let rt = routes(dst), rt & Calico.routeHost != 0
            else { return (nil, .none) }
            f = wildcard
        }
        let fe = f!
        if fe.flags & Calico.natMaglev != 0 { return (fe, .unjudged) }
        if fe.count == Calico.dropCount { return (fe, .drop) }
        if fe.flags & Calico.natExclude != 0 { return (fe, .excluded) }
        var count = fe.count
        if fe.flags & (Calico.natInternalLocal | Calico.natExternalLocal) != 0 {
            let rt = routes(client) ?? 0
            let local = rt & (Calico.routeHost | Calico.routeWorkload) != 0
            if (local && fe.flags & Calico.natInternalLocal != 0) || (!local && fe.flags & Calico.natExternalLocal != 0) {
                count = fe.local
            }
        }
        if count == 0 { return (fe, .noBackends) }
        return (fe, .active(Frontend(UInt64(fe.id), UInt64(count), UInt64(v6 ? 6 : 4))))
    }

    /// Is b:bport one of service `id`'s backends (any ordinal below its count)?
    func isBackend(_ b: IPAddress, _ bport: UInt16, id: UInt32) -> Bool {
        var k = CalicoFamilyView.memberWords(id, b, bport)
        return withUnsafePointer(to: &k) { members.contains(UnsafeRawPointer($0).assumingMemoryBound(to: UInt64.self)) }
    }
}

/// Calico's services as its datapath would use them for the next packet, both families:
/// what the stale rules ask (ServiceQuestions). Read twice, at least 200 ms apart, until both
/// reads agree: felix rewrites backend ordinals in place, and a view caught between two of
/// its writes would call live flows orphans.
public struct CalicoServiceView: ServiceQuestions, Sendable {
    let v4: CalicoFamilyView?
    let v6: CalicoFamilyView?
    /// When the maps were read (the second read, for a view read twice).
    let readAt: UInt64
    /// Read twice, 200 ms apart, the same both times (reading commands); a pass that deletes
    /// reads once, and its remover compares each orphan's service with the live maps at least
    /// 200 ms later instead (CalicoLive).
    let stable: Bool
    public var version: UInt32 { 0 }

    func family(_ a: IPAddress) -> CalicoFamilyView? { a.family == .v6 ? v6 : v4 }

    /// For one more scan thread (CalicoRules.forThread).
    func copy() -> CalicoServiceView { CalicoServiceView(v4: v4?.copy(), v6: v6?.copy(), readAt: readAt, stable: stable) }

    public func frontendState(_ dst: IPAddress, _ port: UInt16, _ proto: UInt8, client: IPAddress) -> FrontendState {
        family(dst)?.state(dst, port, proto, client: client).1 ?? .none
    }

    public func isBackend(_ b: IPAddress, _ bport: UInt16, of f: Frontend) -> Bool {
        family(b)?.isBackend(b, bport, id: UInt32(truncatingIfNeeded: f.w0)) ?? false
    }

    /// The frontend a flow would hit, for explanations.
    func frontend(_ dst: IPAddress, _ port: UInt16, _ proto: UInt8, client: IPAddress) -> CalicoFrontend? {
        family(dst)?.state(dst, port, proto, client: client).0
    }
}
