import CLibBPF

/// The reference dataplane's stale rules: every rule for every protocol, each half of a
/// NAT pair idle by its own timeout, expiry and partners decided by the datapath's own
/// definitions (bpf/include/ctctl_rules.h), half pairs after a grace period from their
/// creation time.
public struct ReferenceRules: StaleRules, Sendable {
    public let view: ReferenceServiceView
    public let timeouts: Timeouts

    public init(view: ReferenceServiceView, timeouts: Timeouts) {
        self.view = view
        self.timeouts = timeouts
    }

    @inline(__always)
    public func applies(_ r: StaleReason, to e: ReferenceEntry) -> Bool { true }

    /// Idle past its own timeout (the datapath's ctctl_idle_past and ctctl_timeout_index).
    @inline(__always)
    public func isIdle(_ e: ReferenceEntry, now: UInt64) -> Bool {
        timeouts.idle(proto: e.proto, flags: e.flags, lastSeen: e.lastSeenNs, now: now)
    }

    /// ctctl_expired_entry: the datapath's own rule.
    @inline(__always)
    public func expired(_ e: ReferenceEntry, selfIdle: Bool, partnerIdle: Bool?) -> Bool {
        ctctl_expired_entry(selfIdle ? 1 : 0, e.typeRaw, partnerIdle != nil ? 1 : 0, partnerIdle == true ? 1 : 0) != 0
    }

    @inline(__always)
    public func isPastGrace(_ e: ReferenceEntry, now: UInt64, graceNs: UInt64) -> Bool {
        let created = e.createdNs
        return now > created && now - created > graceNs
    }

    public var halfPairRecheckNs: UInt64 { 0 }
}
