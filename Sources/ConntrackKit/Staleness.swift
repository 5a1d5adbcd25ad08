import CLibBPF
import Glibc

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

    /// The rule prog_stage re-checks in the kernel before it deletes an entry for this reason.
    var rule: ctctl_rule {
        switch self {
        case .missedNAT: return CTCTL_RULE_MISSED_NAT
        case .orphanNAT: return CTCTL_RULE_ORPHAN_NAT
        case .halfPair: return CTCTL_RULE_HALF_PAIR
        case .expired: return CTCTL_RULE_EXPIRED
        }
    }
}

/// A set of keys of `width` 64-bit words, stored exactly, with open addressing and a cheap
/// multiply-xorshift hash: built once per pass, probed once per conntrack entry. (Swift's
/// Set hashes with SipHash, made to resist flooding, which this data cannot do.)
struct WordSet: Sendable {
    private var slots: [UInt64]  // (1 + width) words a slot: a used flag, then the key
    private let mask: Int
    private let width: Int

    init(width: Int, keys: [[UInt64]]) {
        self.width = width
        var size = 16
        while size < keys.count * 2 { size <<= 1 }
        mask = size - 1
        slots = [UInt64](repeating: 0, count: size * (width + 1))
        for k in keys {
            precondition(k.count == width)
            k.withUnsafeBufferPointer { insert($0.baseAddress!) }
        }
    }

    @inline(__always)
    static func hash(_ k: UnsafePointer<UInt64>, _ width: Int) -> Int {
        var h: UInt64 = 0x6374_6374
        for i in 0..<width {
            h = (h ^ k[i]) &* 0x9E37_79B9_7F4A_7C15
            h ^= h >> 29
        }
        return Int(truncatingIfNeeded: h ^ (h >> 32))
    }

    @inline(__always)
    private static func equal(_ s: UnsafePointer<UInt64>, _ k: UnsafePointer<UInt64>, _ width: Int) -> Bool {
        for i in 0..<width where s[i] != k[i] { return false }
        return true
    }

    private mutating func insert(_ k: UnsafePointer<UInt64>) {
        let stride = width + 1
        var i = WordSet.hash(k, width) & mask
        while slots[i * stride] != 0 {
            if slots.withUnsafeBufferPointer({ WordSet.equal($0.baseAddress! + i * stride + 1, k, width) }) { return }
            i = (i + 1) & mask
        }
        slots[i * stride] = 1
        for j in 0..<width { slots[i * stride + 1 + j] = k[j] }
    }

    @inline(__always)
    func contains(_ k: UnsafePointer<UInt64>) -> Bool {
        let stride = width + 1
        return slots.withUnsafeBufferPointer { s in
            var i = WordSet.hash(k, width) & mask
            while s[i * stride] != 0 {
                if WordSet.equal(s.baseAddress! + i * stride + 1, k, width) { return true }
                i = (i + 1) & mask
            }
            return false
        }
    }
}

/// One consistent snapshot of the NAT maps, judged by addresses, never by service ids
/// (ids change when a service is recreated).
public struct ServiceView: Sendable {
    /// Every frontend; the frontends that translate; those over the backend limit (never
    /// judged); (frontend, backend) pairs of the frontends that translate.
    private let all: WordSet
    private let withBackends: WordSet
    private let overLimit: WordSet
    private let members: WordSet
    public let epoch: UInt32
    public let serviceCount: Int

    static func front(_ a: IPAddress, _ port: UInt16, _ proto: UInt8) -> [UInt64] {
        [a.hi, a.lo, UInt64(port) | UInt64(proto) << 16 | UInt64(a.family.rawValue) << 24]
    }

    init(epoch: UInt32, services: [Service]) {
        self.epoch = epoch
        serviceCount = services.count
        all = WordSet(
            width: 3, keys: services.map { ServiceView.front($0.ref.vip.address, $0.ref.vip.port, $0.ref.proto.number) })
        withBackends = WordSet(
            width: 3,
            keys: services.filter { $0.translates && !$0.liveBackends.isEmpty }.map {
                ServiceView.front($0.ref.vip.address, $0.ref.vip.port, $0.ref.proto.number)
            })
        overLimit = WordSet(
            width: 3,
            keys: services.filter(\.overLimit).map {
                ServiceView.front($0.ref.vip.address, $0.ref.vip.port, $0.ref.proto.number)
            })
        members = WordSet(
            width: 6,
            keys: services.filter { !$0.overLimit }.flatMap { s in
                s.liveBackends.map {
                    ServiceView.front(s.ref.vip.address, s.ref.vip.port, s.ref.proto.number) + [
                        $0.address.hi, $0.address.lo, UInt64($0.port),
                    ]
                }
            })
    }

    /// Reads the frontends and backends until the service epoch (a sequence counter) is the
    /// same even number before and after, so the view never mixes two control-plane states.
    /// An epoch that stays odd for `waitNs` was left by a writer that died mid-write when no
    /// ctctl writer holds the lock (or the caller holds it, `holdingLock`): the maps are then
    /// as the datapath sees them, and the view is read as they are.
    public static func read(
        _ dp: Dataplane, holdingLock: Bool = false, waitNs: UInt64 = 2_000_000_000
    ) throws(CtctlError) -> ServiceView {
        let deadline = Timestamp.monotonicNow() + waitNs
        var tries = 0
        while true {
            let before = try dp.epoch()
            let late = Timestamp.monotonicNow() > deadline
            // odd and late: read the maps as they are if no ctctl writer can be mid-write
            if before & 1 == 0 || (late && (holdingLock || (try? WriterLock(dp.pinDir, timeoutMs: 0)) != nil)) {
                let services = try Services.list(dp)
                if try dp.epoch() == before { return ServiceView(epoch: before, services: services) }
            }
            if late {
                throw CtctlError(
                    .software,
                    before & 1 == 1
                        ? "the services at \(dp.pinDir.path) are being written (service epoch \(before) is odd) and have been for more than \(DurationText.format(nanoseconds: waitNs)): try again"
                        : "the services kept changing while ctctl read them (\(tries) tries in \(DurationText.format(nanoseconds: waitNs))): try again"
                )
            }
            tries += 1
            usleep(tries < 10 ? 100 : 1000)
        }
    }

    /// Test helper and for callers that already hold a consistent list.
    public static func of(_ services: [Service], epoch: UInt32 = 0) -> ServiceView {
        ServiceView(epoch: epoch, services: services)
    }

    /// Is addr:port/proto a service with at least one backend?
    @inline(__always)
    public func hasBackends(_ a: IPAddress, _ port: UInt16, _ proto: UInt8) -> Bool {
        var k = (a.hi, a.lo, UInt64(port) | UInt64(proto) << 16 | UInt64(a.family.rawValue) << 24)
        return withUnsafePointer(to: &k) { withBackends.contains(UnsafeRawPointer($0).assumingMemoryBound(to: UInt64.self)) }
    }

    public func isService(_ a: IPAddress, _ port: UInt16, _ proto: UInt8) -> Bool {
        var k = (a.hi, a.lo, UInt64(port) | UInt64(proto) << 16 | UInt64(a.family.rawValue) << 24)
        return withUnsafePointer(to: &k) { all.contains(UnsafeRawPointer($0).assumingMemoryBound(to: UInt64.self)) }
    }

    /// Does service a:port/proto have more backends than the datapath serves? Its flows
    /// are never judged.
    @inline(__always)
    public func isOverLimit(_ a: IPAddress, _ port: UInt16, _ proto: UInt8) -> Bool {
        var k = (a.hi, a.lo, UInt64(port) | UInt64(proto) << 16 | UInt64(a.family.rawValue) << 24)
        return withUnsafePointer(to: &k) { overLimit.contains(UnsafeRawPointer($0).assumingMemoryBound(to: UInt64.self)) }
    }

    /// Is b:bport one of the backends of service a:port/proto?
    @inline(__always)
    public func isBackend(_ b: IPAddress, _ bport: UInt16, of a: IPAddress, _ port: UInt16, _ proto: UInt8) -> Bool {
        var k = (a.hi, a.lo, UInt64(port) | UInt64(proto) << 16 | UInt64(a.family.rawValue) << 24, b.hi, b.lo, UInt64(bport))
        return withUnsafePointer(to: &k) { members.contains(UnsafeRawPointer($0).assumingMemoryBound(to: UInt64.self)) }
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
        /// A NAT half whose verdict depends on its partner: `old` (past the grace period:
        /// stale if the partner is missing) and/or `idle` (idle past its own timeout:
        /// expired unless its partner is live, ctctl_expired_entry).
        case nat(idle: Bool, old: Bool)
    }

    @inline(__always)
    public func judge(_ e: EntryView) -> Verdict {
        let proto = e.proto
        if !e.isNAT {
            if view.hasBackends(e.keyDst, e.keyDport, proto) { return .stale(.missedNAT) }
        } else {
            let svcAddr = e.serviceAddress
            let svcPort = e.servicePort
            let svcProto = e.serviceProto
            if !view.isBackend(e.backendAddress, e.backendPort, of: svcAddr, svcPort, svcProto)
                && !view.isOverLimit(svcAddr, svcPort, svcProto)
            {
                return .stale(.orphanNAT)
            }
        }
        let idle = isIdle(proto: proto, flags: e.flags, lastSeen: e.lastSeenNs)
        if !e.isNAT { return expired(e.typeRaw, selfIdle: idle, partner: nil) ? .stale(.expired) : .fresh }
        // A NAT half: expired only if its partner is not live by its own state (one flow),
        // half-pair only if its partner is gone past the grace period. Both depend on the
        // partner.
        let created = e.createdNs
        let old = now > created && now - created > graceNs
        return idle || old ? .nat(idle: idle, old: old) : .fresh
    }

    /// Idle past its own timeout (the datapath's ctctl_idle_past and ctctl_timeout_index).
    @inline(__always)
    func isIdle(proto: UInt8, flags: UInt32, lastSeen: UInt64) -> Bool {
        timeouts.idle(proto: proto, flags: flags, lastSeen: lastSeen, now: now)
    }

    /// ctctl_expired_entry: the datapath's own rule. `partner`: whether the partner is
    /// intact and whether it is idle by its own state; nil if it is missing.
    @inline(__always)
    func expired(_ type: UInt8, selfIdle: Bool, partner: (ok: Bool, idle: Bool)?) -> Bool {
        let ok = partner?.ok ?? false
        return ctctl_expired_entry(selfIdle ? 1 : 0, type, ok ? 1 : 0, ok && partner!.idle ? 1 : 0) != 0
    }
}
