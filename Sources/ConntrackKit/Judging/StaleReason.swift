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
