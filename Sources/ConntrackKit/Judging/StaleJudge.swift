import CLibBPF
import Glibc

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
    public func judge(_ e: ReferenceEntry) -> Verdict {
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
