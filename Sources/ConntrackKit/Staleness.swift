import CLibBPF

/// Why an entry is stale: what `list --stale` shows and `heal` deletes.
public enum StaleReason: String, Sendable, CaseIterable {
    /// A normal entry whose destination is now a service with backends: the incident.
    case missedNAT = "missed-nat"
    /// A NAT entry whose service is gone, or whose backend is no longer one of its backends.
    case orphanNAT = "orphan-nat"
    /// A NAT entry whose partner is missing, older than the grace period.
    case halfPair = "half-pair"
    /// Idle longer than the dataplane's timeout for its protocol.
    case expired
}

/// One consistent snapshot of the NAT maps, judged by addresses, never by service ids
/// (ids change when a service is recreated).
public struct ServiceView: Sendable {
    struct Front: Hashable {
        let hi: UInt64, lo: UInt64, port: UInt16, proto: UInt8, family: UInt8
    }

    struct Back: Hashable {
        let hi: UInt64, lo: UInt64, port: UInt16
    }

    private var backends: [Front: Set<Back>] = [:]
    public let epoch: UInt32
    public var serviceCount: Int { backends.count }

    init(epoch: UInt32, services: [Service]) {
        self.epoch = epoch
        for s in services {
            let a = s.ref.vip.address
            let f = Front(hi: a.hi, lo: a.lo, port: s.ref.vip.port, proto: s.ref.proto.number, family: a.family.rawValue)
            backends[f] = Set(s.liveBackends.map { Back(hi: $0.address.hi, lo: $0.address.lo, port: $0.port) })
        }
    }

    /// Reads the frontends and backends until the service epoch is the same before and
    /// after, so the view never mixes two control-plane states.
    public static func read(_ dp: Dataplane) throws(CtctlError) -> ServiceView {
        for _ in 0..<10 {
            let before = try dp.epoch()
            let services = try Services.list(dp)
            if try dp.epoch() == before { return ServiceView(epoch: before, services: services) }
        }
        throw CtctlError(.software, "the services kept changing while ctctl read them (10 tries): try again")
    }

    /// Test helper and for callers that already hold a consistent list.
    public static func of(_ services: [Service], epoch: UInt32 = 0) -> ServiceView { ServiceView(epoch: epoch, services: services) }

    @inline(__always)
    func backendsOf(_ a: IPAddress, _ port: UInt16, _ proto: UInt8) -> Set<Back>? {
        backends[Front(hi: a.hi, lo: a.lo, port: port, proto: proto, family: a.family.rawValue)]
    }

    /// Is addr:port/proto a service with at least one backend?
    @inline(__always)
    public func hasBackends(_ a: IPAddress, _ port: UInt16, _ proto: UInt8) -> Bool {
        guard let b = backendsOf(a, port, proto) else { return false }
        return !b.isEmpty
    }

    public func isService(_ a: IPAddress, _ port: UInt16, _ proto: UInt8) -> Bool { backendsOf(a, port, proto) != nil }

    @inline(__always)
    public func isBackend(_ b: IPAddress, _ bport: UInt16, of a: IPAddress, _ port: UInt16, _ proto: UInt8) -> Bool {
        backendsOf(a, port, proto)?.contains(Back(hi: b.hi, lo: b.lo, port: bport)) ?? false
    }
}

/// The staleness rules, applied to one entry at a time without decoding it.
public struct StaleJudge: Sendable {
    public static let defaultGraceNs: UInt64 = 10_000_000_000

    public let view: ServiceView
    public let timeouts: Timeouts
    public let now: UInt64
    public let graceNs: UInt64

    public init(view: ServiceView, timeouts: Timeouts, now: UInt64, graceNs: UInt64 = StaleJudge.defaultGraceNs) {
        self.view = view
        self.timeouts = timeouts
        self.now = now
        self.graceNs = graceNs
    }

    public enum Verdict: Equatable, Sendable {
        case fresh
        case stale(StaleReason)
        /// Stale only if its partner is gone: ask the kernel (Stager, probe).
        case checkPartner
    }

    @inline(__always)
    public func judge(_ e: EntryView) -> Verdict {
        let proto = e.proto
        if !e.isNAT {
            if view.hasBackends(e.keyDst, e.keyDport, proto) { return .stale(.missedNAT) }
        } else {
            let svcAddr = e.serviceAddress, svcPort = e.servicePort
            if !view.isBackend(e.backendAddress, e.backendPort, of: svcAddr, svcPort, e.serviceProto) {
                return .stale(.orphanNAT)
            }
        }
        let last = e.lastSeenNs
        let idle = now > last && now - last > timeouts.timeout(proto: proto, flags: e.flags)
        if !e.isNAT { return idle ? .stale(.expired) : .fresh }
        // A NAT half: expired only if its partner is idle too (one flow), half-pair only if
        // its partner is gone past the grace period. Both need the partner: the kernel's probe.
        let created = e.createdNs
        if idle || (now > created && now - created > graceNs) { return .checkPartner }
        return .fresh
    }
}
