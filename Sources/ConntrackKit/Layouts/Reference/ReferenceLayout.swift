import CLibBPF
import Glibc

/// One batch of the reference conntrack map, in place.
public struct ReferenceBatch: EntryBatch {
    let keys: UnsafePointer<ctctl_ct_key>
    let values: UnsafePointer<ctctl_ct_value>
    public let count: Int

    @inline(__always)
    public subscript(i: Int) -> ReferenceEntry { ReferenceEntry(keys + i, values + i) }

    public var rawKeys: UnsafeRawPointer { UnsafeRawPointer(keys) }
    public var rawValues: UnsafeRawPointer { UnsafeRawPointer(values) }
    public var keySize: Int { MemoryLayout<ctctl_ct_key>.size }
    public var valueSize: Int { MemoryLayout<ctctl_ct_value>.size }

    public func over(keys: UnsafeRawPointer, values: UnsafeRawPointer, count: Int) -> ReferenceBatch {
        ReferenceBatch(
            keys: keys.assumingMemoryBound(to: ctctl_ct_key.self), values: values.assumingMemoryBound(to: ctctl_ct_value.self),
            count: count)
    }
}

/// The reference dataplane behind the seam.
extension ReferenceDataplane: Dataplane {
    public static var layoutName: String { "ctctl" }
    public static var defaultPinDir: PinDirectory { PinDirectory(PinDirectory.defaultPath) }

    public static func detect(_ dir: PinDirectory) -> Bool {
        var st = stat()
        return stat(dir.pin(CTCTL_PIN_CONFIG), &st) == 0
    }

    public static func open(_ dir: PinDirectory, readOnly: Bool, options: LayoutOptions) throws(CtctlError)
        -> ReferenceDataplane
    {
        if options.timeouts != nil {
            throw .usage(
                "--timeout is for layouts whose maps do not hold their timeouts; this dataplane's are set at load (`ctctl dataplane load --timeout ...`)"
            )
        }
        return try ReferenceDataplane(dir, readOnly: readOnly)
    }

    public var summary: String { "ctctl reference dataplane at \(pinDir.path) (map ABI \(CTCTL_ABI_VERSION))" }
    public var caveats: [String] { [] }
    public var conntrackCapacity: Int { Int(ct.info.maxEntries) }

    public func verifyPinned(progress: String?) throws(CtctlError) { try verifyPinned(only: nil, progress: progress) }

    public func stillPinned() -> Bool { (try? verifyPinned(only: [CTCTL_PIN_STATE], progress: nil)) != nil }

    public func writerLock(timeoutMs: Int) throws(CtctlError) -> WriterLock {
        let lock = try WriterLock(pinDir, timeoutMs: timeoutMs)
        try verify(holding: lock)
        return lock
    }

    // MARK: reading

    public func scanParts(_ n: Int) -> [ScanPart] { ScanPart.split(map: 0, total: ctBuckets, n) }

    public func scan(_ part: ScanPart, _ body: (ReferenceBatch, Bool) throws -> Bool) throws {
        let reader = BatchReader<ctctl_ct_key, ctctl_ct_value>(capacity: 8192)
        try part.read(ct, reader.raw) { n, uncertain in
            try body(ReferenceBatch(keys: reader.keys, values: reader.values, count: n), uncertain)
        }
    }

    public func makeScratch() -> ReferenceScratch { ReferenceScratch(ct) }

    public func entries(of flow: FlowKey, _ body: ([ReferenceEntry]) throws -> Void) throws {
        let keySize = MemoryLayout<ctctl_ct_key>.size
        let found = EntryBuffer(keySize: keySize, valueSize: MemoryLayout<ctctl_ct_value>.size, capacity: 4)
        var seen = HandledKeys(reserve: 0)
        func add(_ k: ctctl_ct_key) throws {
            var k = k
            if seen.contains(&k, count: keySize) { return }
            seen.insert(&k, count: keySize)
            guard var v = try ct.lookup(k, as: ctctl_ct_value.self) else { return }
            found.append(key: &k, value: &v, nil)
        }
        func view(_ i: Int) -> ReferenceEntry {
            ReferenceEntry(
                found.key(i).assumingMemoryBound(to: ctctl_ct_key.self),
                found.value(i).assumingMemoryBound(to: ctctl_ct_value.self))
        }
        try add(flow.raw)
        try add(flow.reversed().raw)
        for i in 0..<found.count where view(i).isNAT { try add(view(i).partnerKey.pointee) }
        try body((0..<found.count).map(view))
    }

    public func partner(of e: ReferenceEntry, scratch: ReferenceScratch, _ body: (ReferenceEntry?) throws -> Void) throws {
        let p = scratch.partners
        try body(try p.check(e) ? ReferenceEntry(e.partnerKey, p.value) : nil)
    }

    public func ledgerIdentity(_ e: ReferenceEntry, into w: UnsafeMutablePointer<UInt64>, scratch: ReferenceScratch) -> Int {
        ReferenceDataplane.ledgerIdentity(e, into: w)
    }

    /// (created, forward key, reverse key): the forward half knows the reverse key as its
    /// partner, the reverse half the forward key.
    @inline(__always)
    static func ledgerIdentity(_ e: ReferenceEntry, into w: UnsafeMutablePointer<UInt64>) -> Int {
        let forward = e.typeRaw == EntryType.natForward.rawValue
        let fk = UnsafeRawPointer(forward ? e.key : e.partnerKey)
        let rk = UnsafeRawPointer(forward ? e.partnerKey : e.key)
        w[0] = e.createdNs
        for i in 0..<5 {
            w[1 + i] = fk.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self)
            w[6 + i] = rk.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self)
        }
        return forward ? 1 : -1
    }

    public func reread(_ c: PairLedger.Element, scratch: ReferenceScratch, _ body: (ReferenceEntry) throws -> Void) throws {
        let raw = UnsafeMutableRawPointer(scratch.key)
        for (i, w) in c.presentKey.enumerated() { raw.storeBytes(of: w, toByteOffset: i * 8, as: UInt64.self) }
        guard try ct.lookup(UnsafeRawPointer(scratch.key), into: scratch.value),
            scratch.value.pointee.created_ns == c.tag, scratch.value.pointee.type == c.presentType.rawValue
        else { return }
        try body(ReferenceEntry(scratch.key, scratch.value))
    }

    // MARK: judging

    public func staleRules(holdingLock: Bool) throws -> ReferenceRules {
        ReferenceRules(view: try ReferenceServiceView.read(self, holdingLock: holdingLock), timeouts: timeouts)
    }

    public func explain(_ e: ReferenceEntry, reason: StaleReason?, rules: ReferenceRules, now: UInt64) -> [String] {
        let view = rules.view
        let entry = e.entry
        var out: [String] = []
        let recheck = serviceEpochEnabled && entry.epoch != view.epoch
        switch entry.type {
        case .normal:
            let dst = ServiceRef(vip: entry.key.dst, proto: entry.key.proto)
            if view.hasBackends(dst.vip.address, dst.vip.port, dst.proto.number) {
                out.append(
                    "\(dst) is a service with backends, but this entry has no NAT: it was created while the service was missing.")
                out.append(
                    recheck
                        ? "Next packet: the epoch re-check converts it into a NAT flow to a backend."
                        : "Next packet: NOT translated. It goes to \(dst.vip.address) untranslated and never reaches a backend\(serviceEpochEnabled ? "" : " (the epoch re-check is off)")."
                )
            } else if view.isService(dst.vip.address, dst.vip.port, dst.proto.number) {
                out.append("\(dst) is a service with no backends; this entry passes packets to it untranslated.")
            } else {
                out.append("A normal flow: \(entry.key.dst) is not a service. Next packet: passed untranslated, as intended.")
            }
        case .natForward, .natReverse:
            guard let svc = entry.service, let backend = entry.backend else { break }
            let fwd = entry.type == .natForward
            out.append(
                fwd
                    ? "NAT forward half of service \(svc): packets to \(svc.vip) are translated to backend \(backend)."
                    : "NAT reverse half of service \(svc): replies from backend \(backend) are rewritten to come from \(svc.vip)."
            )
            if !view.isService(svc.vip.address, svc.vip.port, svc.proto.number) {
                out.append("Service \(svc) no longer exists.")
                if fwd {
                    out.append(
                        recheck
                            ? "Next packet: the epoch re-check turns the flow into a normal one (untranslated)."
                            : "Next packet: still translated to \(backend), a backend of a service that is gone.")
                }
            } else if !view.isBackend(backend.address, backend.port, of: svc.vip.address, svc.vip.port, svc.proto.number) {
                out.append("\(backend) is no longer one of the service's backends.")
                if fwd {
                    out.append(
                        recheck
                            ? "Next packet: the epoch re-check re-balances the flow to a current backend."
                            : "Next packet: still sent to \(backend), which is no longer a backend.")
                }
            } else if fwd {
                out.append("Next packet: translated to \(backend), a current backend.")
            }
        }
        let timeout = timeouts.timeout(proto: e.proto, flags: e.flags)
        if timeouts.idle(proto: e.proto, flags: e.flags, lastSeen: entry.lastSeenNs, now: now) {
            out.append(
                "Idle for longer than the \(DurationText.format(nanoseconds: timeout)) \(entry.key.proto) timeout\(entry.type == .normal ? "" : " (this half)"): the next packet starts a new flow."
            )
        }
        return out
    }

    // MARK: deleting

    public func remover(lock: WriterLock?, report: @escaping RemovalReport<ReferenceEntry>) throws -> ReferenceRemover {
        ReferenceRemover(self, stager: try lock.map { l throws(CtctlError) in try Stager(self, lock: l) }, report: report)
    }

    // MARK: the rest

    public func services() throws -> [ServiceSummary] {
        try Services.list(self).map { s in
            ServiceSummary(
                ref: s.ref, id: s.id, backends: s.backends, backendCount: s.backendCount,
                state: s.overLimit ? .unjudged : s.translates && !s.liveBackends.isEmpty ? .active : .noBackends,
                overLimit: s.overLimit,
                note: s.overLimit
                    ? "OVER LIMIT: \(s.backendCount) backends, at most \(CTCTL_MAX_BACKENDS) (packets are dropped; its flows are never judged)"
                    : s.backends.isEmpty ? "none (packets are dropped)" : nil)
        }
    }

    public func counters() throws -> [DatapathCounter] { try counterTotals() }

    public func serviceEpoch() throws -> UInt32? { try epoch() }

    public func serviceVersion() throws -> UInt64 { UInt64(try epoch()) }

    public func status() throws -> DataplaneStatus {
        DataplaneStatus(
            layout: Self.layoutName, pinDir: pinDir.path, abiVersion: UInt32(CTCTL_ABI_VERSION), loadedAt: try loadedAt(),
            epoch: try epoch(), serviceEpoch: serviceEpochEnabled, timeouts: timeouts,
            maps: try [ct, natFrontend, natBackend].map { m throws(CtctlError) in try .counted(m) },
            attachments: try Attachments.list(self), counters: try counterTotals())
    }
}
