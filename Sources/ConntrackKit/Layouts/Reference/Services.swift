import CLibBPF
import Glibc

/// The control plane of the reference dataplane: what `ctctl service` does, and what
/// tests use to stage incidents. Every write requires the writers' lock.
public enum Services {
    /// Checks a service definition without touching any map (bad input exits 64 first).
    public static func validate(_ ref: ServiceRef, backends: [Endpoint]) throws(CtctlError) {
        guard backends.count <= Int(CTCTL_MAX_BACKENDS) else {
            throw .usage("\(backends.count) backends for \(ref): at most \(CTCTL_MAX_BACKENDS) a service")
        }
        if let bad = backends.first(where: { $0.address.family != ref.vip.address.family }) {
            throw .usage("backend \(bad) is not of the same address family as \(ref.vip.address)")
        }
        if Set(backends).count != backends.count {
            throw .usage("a backend is listed twice for \(ref)")
        }
    }

    /// Creates or replaces a service. A packet never sees a frontend whose backends are
    /// not all written: backends before the frontend when growing, the frontend first
    /// when shrinking. The epoch is odd while the maps are written and even after, so a
    /// reader never keeps a view that mixes the two states. Conntrack is not touched.
    /// Returns true if the service was created, false if replaced. `midWrite` runs between
    /// the two halves of the write (tests).
    @discardableResult
    public static func set(_ dp: ReferenceDataplane, _ ref: ServiceRef, backends: [Endpoint], lock: WriterLock) throws(CtctlError)
        -> Bool
    {
        try set(dp, ref, backends: backends, lock: lock, midWrite: nil)
    }

    static func set(
        _ dp: ReferenceDataplane, _ ref: ServiceRef, backends: [Endpoint], lock: WriterLock, midWrite: (() -> Void)?
    ) throws(CtctlError) -> Bool {
        try validate(ref, backends: backends)
        try dp.verify(holding: lock)
        let fk = ref.frontendKey
        let existing = try dp.natFrontend.lookup(fk, as: ctctl_fe_value.self)
        let id: UInt32
        if let existing {
            id = existing.svc_id
        } else {
            let s = try dp.state()
            id = s.pointee.next_svc_id
            s.pointee.next_svc_id = id &+ 1 == 0 ? 1 : id &+ 1
        }
        let old = Int(existing?.backend_count ?? 0)
        let n = backends.count
        let fe = ctctl_fe_value(svc_id: id, backend_count: UInt32(n), flags: 0, pad: 0)
        // what is there now, to put back if a write fails (a map full): a failed set
        // changes nothing
        var previous: [ctctl_be_value?] = []
        for ordinal in 0..<max(old, n) {
            previous.append(try dp.natBackend.lookup(ctctl_be_key(svc_id: id, ordinal: UInt32(ordinal)), as: ctctl_be_value.self))
        }
        try dp.beginServiceWrite()
        defer { _ = try? dp.endServiceWrite() }
        do throws(CtctlError) {
            if n >= old {
                try writeBackends(dp, id, backends)
                midWrite?()
                try dp.natFrontend.update(fk, fe)
            } else {
                try dp.natFrontend.update(fk, fe)
                midWrite?()
                try writeBackends(dp, id, backends)
                for ordinal in n..<old { try dp.natBackend.delete(ctctl_be_key(svc_id: id, ordinal: UInt32(ordinal))) }
            }
        } catch {
            // put back what was there, in the order that keeps a frontend's backends whole
            if let existing { try? dp.natFrontend.update(fk, existing) } else { try? dp.natFrontend.delete(fk) }
            for (ordinal, value) in previous.enumerated() {
                let key = ctctl_be_key(svc_id: id, ordinal: UInt32(ordinal))
                if let value { try? dp.natBackend.update(key, value) } else { try? dp.natBackend.delete(key) }
            }
            if error.errno == E2BIG || error.errno == ENOMEM {
                throw CtctlError(
                    .software, "the NAT maps are full (\(Errno(error.errno!))): nothing was changed; delete unused services first"
                )
            }
            throw error
        }
        return existing == nil
    }

    private static func writeBackends(_ dp: ReferenceDataplane, _ id: UInt32, _ backends: [Endpoint]) throws(CtctlError) {
        for (ordinal, b) in backends.enumerated() {
            try dp.natBackend.update(ctctl_be_key(svc_id: id, ordinal: UInt32(ordinal)), b.backendValue)
        }
    }

    /// Removes the frontend, then the backends, the epoch odd meanwhile. Returns the
    /// removed service, or nil if there was none. Conntrack cleanup is the caller's
    /// (Conntrack.removeService), under the same lock.
    public static func delete(_ dp: ReferenceDataplane, _ ref: ServiceRef, lock: WriterLock) throws(CtctlError) -> Service? {
        try dp.verify(holding: lock)
        guard let svc = try get(dp, ref) else { return nil }
        try dp.beginServiceWrite()
        defer { _ = try? dp.endServiceWrite() }
        try dp.natFrontend.delete(ref.frontendKey)
        for ordinal in 0..<svc.backends.count {
            try dp.natBackend.delete(ctctl_be_key(svc_id: svc.id, ordinal: UInt32(ordinal)))
        }
        return svc
    }

    public static func get(_ dp: ReferenceDataplane, _ ref: ServiceRef) throws(CtctlError) -> Service? {
        guard let fe = try dp.natFrontend.lookup(ref.frontendKey, as: ctctl_fe_value.self) else { return nil }
        return try service(dp, ref, fe)
    }

    static func service(_ dp: ReferenceDataplane, _ ref: ServiceRef, _ fe: ctctl_fe_value) throws(CtctlError) -> Service {
        var backends: [Endpoint?] = []
        for ordinal in 0..<min(fe.backend_count, CTCTL_MAX_BACKENDS) {
            backends.append(
                try dp.natBackend.lookup(ctctl_be_key(svc_id: fe.svc_id, ordinal: ordinal), as: ctctl_be_value.self).map(
                    Endpoint.init))
        }
        return Service(ref: ref, id: fe.svc_id, backends: backends, backendCount: fe.backend_count)
    }

    /// Every service, sorted by VIP text.
    public static func list(_ dp: ReferenceDataplane) throws(CtctlError) -> [Service] {
        let reader = BatchReader<ctctl_fe_key, ctctl_fe_value>(capacity: 4096)
        var fronts: [(ServiceRef, ctctl_fe_value)] = []
        do {
            try reader.read(dp.natFrontend) { n in
                for i in 0..<n { fronts.append((ServiceRef(reader.keys[i]), reader.values[i])) }
                return true
            }
        } catch let e as CtctlError { throw e } catch { throw CtctlError(.software, "\(error)") }
        var out: [Service] = []
        for (ref, fe) in fronts { out.append(try service(dp, ref, fe)) }
        return out.sorted { $0.ref.description < $1.ref.description }
    }
}
