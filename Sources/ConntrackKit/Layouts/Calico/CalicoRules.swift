import CLibBPF

/// The stale rules on Calico's maps (docs/calico.md):
///
/// | reason | protocols |
/// |---|---|
/// | missed-nat | all but TCP (current Calico's scanner; ctctl brings it to v3.29, which has none) |
/// | orphan-nat | all on v3.29/v3.30; not TCP on v3.31+ (Calico's scanner leaves TCP NAT entries alone) |
/// | half-pair | all; "missing" means still missing on a second look 100 ms later |
/// | expired | only with --timeout (felix expires entries itself, by timeouts the maps do not hold) |
public struct CalicoRules: StaleRules, Sendable {
    public let view: CalicoServiceView
    /// --timeout; nil: expiry is not judged.
    public let timeouts: Timeouts?

    @inline(__always)
    public func applies(_ r: StaleReason, to e: CalicoEntry) -> Bool {
        switch r {
        case .missedNAT: return e.proto != 6
        case .orphanNAT: return !(e.proto == 6 && e.generation.skipsTCPNAT)
        case .halfPair: return true
        case .expired: return timeouts != nil
        }
    }

    /// Idle past --timeout: TCP by the closing timeout once either leg saw a FIN or RST.
    @inline(__always)
    public func isIdle(_ e: CalicoEntry, now: UInt64) -> Bool {
        guard let timeouts else { return false }
        return CalicoRules.idle(e, timeouts: timeouts, now: now)
    }

    static func idle(_ e: CalicoEntry, timeouts: Timeouts, now: UInt64) -> Bool {
        var flags: UInt32 = 0
        if e.proto == 6 && !e.isForward {
            let bits = e.leg(CalicoFormat.legAB).bits | e.leg(CalicoFormat.legBA).bits
            if bits & (Calico.legFin | Calico.legRst) != 0 { flags = CTCTL_CT_F_FIN }
        }
        return timeouts.idle(proto: e.proto, flags: flags, lastSeen: e.lastSeenNs, now: now)
    }

    /// A pair expires as one flow (ctctl_expired_entry): a half is expired only if its
    /// partner is missing or idle too. Calico's own cleaner judges a NAT_FWD by its NAT_REV.
    @inline(__always)
    public func expired(_ e: CalicoEntry, selfIdle: Bool, partnerIdle: Bool?) -> Bool {
        ctctl_expired_entry(selfIdle ? 1 : 0, e.typeRaw, partnerIdle != nil ? 1 : 0, partnerIdle == true ? 1 : 0) != 0
    }

    /// No creation time from v3.30 on: a missing partner is confirmed by a second look.
    @inline(__always)
    public func isPastGrace(_ e: CalicoEntry, now: UInt64, graceNs: UInt64) -> Bool { true }

    public var halfPairRecheckNs: UInt64 { 100_000_000 }

    /// Each scan thread judges with its own copy of the view: shared objects would make the
    /// threads contend on their reference counts and on the route cache's lock.
    public func forThread() -> CalicoRules { CalicoRules(view: view.copy(), timeouts: timeouts) }
}
