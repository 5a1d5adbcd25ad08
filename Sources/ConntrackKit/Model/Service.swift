import CLibBPF
import Glibc

/// A service frontend with its backends, as the NAT maps hold it.
public struct Service: Sendable {
    public let ref: ServiceRef
    public let id: UInt32
    /// Ordinal order; nil where the frontend names an ordinal the backend map lacks. At
    /// most CTCTL_MAX_BACKENDS: a frontend that names more is `overLimit`.
    public let backends: [Endpoint?]
    /// The frontend's backend count, as written (another writer may exceed the limit).
    public let backendCount: UInt32

    public init(ref: ServiceRef, id: UInt32, backends: [Endpoint?], backendCount: UInt32? = nil) {
        self.ref = ref
        self.id = id
        self.backends = backends
        self.backendCount = backendCount ?? UInt32(backends.count)
    }

    public var missingOrdinals: [Int] { backends.indices.filter { backends[$0] == nil } }
    public var liveBackends: [Endpoint] { backends.compactMap { $0 } }
    /// More backends than the datapath serves (CTCTL_MAX_BACKENDS): it drops the service's
    /// packets, and ctctl never judges its flows.
    public var overLimit: Bool { ctctl_frontend_over_limit(backendCount) != 0 }
    /// Would the datapath translate a new flow to it (ctctl_frontend_active)?
    public var translates: Bool { ctctl_frontend_active(backendCount) != 0 }
}
