/// What a layout's datapath would do with the next packet of a flow that misses conntrack,
/// and whether a NAT flow's backend is still one of its service's: the questions the stale
/// rules ask, answered on one consistent view of that layout's NAT maps.
public protocol ServiceQuestions {
    /// What the view was read at (a service epoch, or 0): logs and metrics.
    var version: UInt32 { get }

    /// The frontend the datapath would pick for `client -> dst:port/proto`, and what it does.
    func frontendState(_ dst: IPAddress, _ port: UInt16, _ proto: UInt8, client: IPAddress) -> FrontendState
    /// Is `b:bport` one of the backends `f` translates to?
    func isBackend(_ b: IPAddress, _ bport: UInt16, of f: Frontend) -> Bool

    /// missed-nat, once per normal entry: would the next packet be translated?
    func isActive(_ dst: IPAddress, _ port: UInt16, _ proto: UInt8, client: IPAddress) -> Bool
    /// orphan-nat, once per NAT half: is `vip:port/proto -> b:bport` still a pair the
    /// datapath uses for `client`? nil: never judged (a frontend ctctl cannot judge).
    func isActivePair(
        _ vip: IPAddress, _ port: UInt16, _ proto: UInt8, client: IPAddress, backend b: IPAddress, _ bport: UInt16
    ) -> Bool?
}

extension ServiceQuestions {
    @inline(__always)
    public func isActive(_ dst: IPAddress, _ port: UInt16, _ proto: UInt8, client: IPAddress) -> Bool {
        if case .active = frontendState(dst, port, proto, client: client) { return true }
        return false
    }

    @inline(__always)
    public func isActivePair(
        _ vip: IPAddress, _ port: UInt16, _ proto: UInt8, client: IPAddress, backend b: IPAddress, _ bport: UInt16
    ) -> Bool? {
        switch frontendState(vip, port, proto, client: client) {
        case .active(let f): return isBackend(b, bport, of: f)
        case .unjudged: return nil
        case .noBackends, .drop, .excluded, .none: return false
        }
    }
}

/// A frontend as a layout identifies it (three words: a VIP triple, a service id ...).
public struct Frontend: Sendable, Equatable {
    public let w0: UInt64
    public let w1: UInt64
    public let w2: UInt64
    public init(_ w0: UInt64, _ w1: UInt64, _ w2: UInt64) {
        self.w0 = w0
        self.w1 = w1
        self.w2 = w2
    }
}

/// What a datapath does with a new flow to an address:port/proto.
public enum FrontendState: Sendable, Equatable {
    /// Translated to one of the frontend's backends.
    case active(Frontend)
    /// A frontend without backends: not translated (dropped, or answered unreachable).
    case noBackends
    /// A drop entry (Calico's source-range blackhole).
    case drop
    /// A frontend that excludes its traffic from NAT.
    case excluded
    /// A frontend ctctl does not judge: over the backend limit, Maglev.
    case unjudged
    /// Not a service: passed untranslated.
    case none

    public enum Kind: String, Sendable {
        case active
        case noBackends = "no-backends"
        case drop
        case excluded
        case unjudged
        case none
    }

    public var kind: Kind {
        switch self {
        case .active: return .active
        case .noBackends: return .noBackends
        case .drop: return .drop
        case .excluded: return .excluded
        case .unjudged: return .unjudged
        case .none: return .none
        }
    }
}
