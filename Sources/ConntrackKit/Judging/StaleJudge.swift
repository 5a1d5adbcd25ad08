/// A layout's stale rules: which rules apply to which entries, when an entry is idle or
/// expired by its datapath's own definition, and the services as its datapath sees them.
/// StaleJudge applies them, the same way for every layout.
public protocol StaleRules {
    associatedtype Entry: EntryFacts
    associatedtype View: ServiceQuestions

    /// One consistent view of the layout's NAT maps.
    var view: View { get }

    /// Does rule `r` apply to entries like `e` (the layout's per-protocol policy)?
    func applies(_ r: StaleReason, to e: Entry) -> Bool
    /// Idle past its own timeout at `now` (false where the layout does not expire entries).
    func isIdle(_ e: Entry, now: UInt64) -> Bool
    /// The datapath's expiry: is `e` expired, given its own idleness and its partner's
    /// (`partnerIdle`: nil when it has no intact partner)?
    func expired(_ e: Entry, selfIdle: Bool, partnerIdle: Bool?) -> Bool
    /// Past the grace period a NAT half gets before a missing partner makes it stale
    /// (true for a layout that keeps no creation time: it re-checks instead).
    func isPastGrace(_ e: Entry, now: UInt64, graceNs: UInt64) -> Bool
    /// A missing partner counts only if it is still missing this long after it was first
    /// seen missing (layouts without creation times; 0: at once).
    var halfPairRecheckNs: UInt64 { get }
    /// The same rules for one more scan thread: a layout whose view holds objects copies
    /// them, so threads never share (and contend on) their reference counts or caches.
    func forThread() -> Self
}

extension StaleRules {
    public func forThread() -> Self { self }
}

/// What the judge says of one entry.
public enum StaleVerdict: Equatable, Sendable {
    case fresh
    case stale(StaleReason)
    /// A NAT half whose verdict depends on its partner: `old` (past the grace period:
    /// stale if the partner is missing) and/or `idle` (idle past its own timeout:
    /// expired unless its partner is live).
    case nat(idle: Bool, old: Bool)
}

/// Defaults of the stale rules.
public enum StaleDefaults {
    /// A NAT half younger than this is never a half pair (its partner may be being written).
    public static let graceNs: UInt64 = 10_000_000_000
}

/// The stale rules applied to one entry at a time, without decoding it: the same for every
/// layout, asking the layout's rules and service view.
public struct StaleJudge<Rules: StaleRules> {
    public let rules: Rules
    public let now: UInt64
    public let graceNs: UInt64

    public init(_ rules: Rules, now: UInt64, graceNs: UInt64 = StaleDefaults.graceNs) {
        self.rules = rules
        self.now = now
        self.graceNs = graceNs
    }

    public var view: Rules.View { rules.view }

    /// This judge for one more scan thread (StaleRules.forThread).
    public func forThread() -> StaleJudge { StaleJudge(rules.forThread(), now: now, graceNs: graceNs) }

    @inline(__always)
    public func judge(_ e: Rules.Entry) -> StaleVerdict {
        let proto = e.proto
        if !e.isNAT {
            if rules.applies(.missedNAT, to: e)
                && rules.view.isActive(e.originalDestination, e.originalDestinationPort, proto, client: e.originalSource)
            {
                return .stale(.missedNAT)
            }
        } else if rules.applies(.orphanNAT, to: e) {
            let pair = rules.view.isActivePair(
                e.serviceAddress, e.servicePort, e.serviceProto, client: e.originalSource, backend: e.backendAddress,
                e.backendPort)
            if pair == false { return .stale(.orphanNAT) }
        }
        let idle = rules.applies(.expired, to: e) && rules.isIdle(e, now: now)
        if !e.isNAT { return idle && rules.expired(e, selfIdle: true, partnerIdle: nil) ? .stale(.expired) : .fresh }
        // A NAT half: expired only if its partner is not live by its own state (one flow),
        // half-pair only if its partner is gone past the grace period. Both depend on the
        // partner.
        let old = rules.applies(.halfPair, to: e) && rules.isPastGrace(e, now: now, graceNs: graceNs)
        return idle || old ? .nat(idle: idle, old: old) : .fresh
    }
}
