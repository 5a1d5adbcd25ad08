import CLibBPF
import Glibc

/// Deletes entries from Calico's conntrack maps, each only if it is still what was judged:
/// right before the kernel run, the frontend a missed-nat or orphan-nat verdict rests on is
/// looked up again as Calico's datapath looks it up (CalicoLive); in the run, ctctl's program
/// re-checks the identity (type and NAT linkage), half pairs (the partner still missing) and
/// expiry (last_seen unchanged), and deletes a pair NAT_REV first. A dry run reads only and
/// reports what would go, pairs whole.
public final class CalicoRemover: EntryRemover {
    let dp: CalicoDataplane
    let report: RemovalReport<CalicoEntry>
    let stager: CalicoStager?
    public private(set) var counts = RemovalCounts()
    private var handled = HandledKeys()
    /// Entries waiting for a run, by family (true: IPv6).
    private var pending: [Bool: EntryBuffer] = [:]
    /// orphan-nat verdicts on a view read once, waiting until 200 ms after the read.
    private var orphans: [Bool: EntryBuffer] = [:]
    static let orphanCapacity = 8192
    static let orphanDelayNs: UInt64 = 200_000_000
    /// Full buffers are deleted on a thread of its own while the scan goes on.
    private let pipeline = DeletePipeline()

    init(_ dp: CalicoDataplane, lock: WriterLock?, report: @escaping RemovalReport<CalicoEntry>) throws(CtctlError) {
        self.dp = dp
        self.report = report
        stager = try lock.map { l throws(CtctlError) in try CalicoStager(dp, lock: l) }
        for f in dp.families {
            pending[f.format.v6] = EntryBuffer(
                keySize: f.format.keySize, valueSize: f.format.valueSize, capacity: CalicoStager.capacity)
            orphans[f.format.v6] = EntryBuffer(
                keySize: f.format.keySize, valueSize: f.format.valueSize, capacity: CalicoRemover.orphanCapacity)
        }
    }

    deinit { pipeline.stop() }

    public var dryRun: Bool { stager == nil }

    public func add(_ e: CalicoEntry, reason: StaleReason?) throws {
        // (the delete checks `handled` right before staging: the pipeline's thread writes it)
        guard stager != nil else { return try wouldDelete(e, reason) }
        let v6 = e.format.v6
        if reason == .orphanNAT, let view = dp.lastView, !view.stable {
            let buffer = orphans[v6]!
            buffer.append(key: e.key, value: e.value, reason)
            if buffer.isFull {
                // due 200 ms after the view was read; the pipeline does other deletes meanwhile
                orphans[v6] = try pipeline.handOver(buffer, notBefore: view.readAt + CalicoRemover.orphanDelayNs) {
                    try self.deleteOrphans($0, v6: v6)
                }
            }
            return
        }
        let buffer = pending[v6]!
        buffer.append(key: e.key, value: e.value, reason)
        if buffer.isFull { pending[v6] = try pipeline.handOver(buffer) { try self.delete($0, v6: v6) } }
    }

    private func wouldDelete(_ e: CalicoEntry, _ reason: StaleReason?) throws {
        let size = e.format.keySize
        if handled.contains(e.key, count: size) { return }
        var partnerKey: [UInt8]? = nil
        try dp.partner(of: e) { p in partnerKey = p.map { Array(UnsafeRawBufferPointer(start: $0.key, count: size)) } }
        handled.insert(e.key, count: size)
        if let partnerKey { partnerKey.withUnsafeBytes { handled.insert($0.baseAddress!, count: size) } }
        let outcome = DeleteOutcome.wouldDelete(partner: partnerKey != nil)
        counts.record(outcome, reason: reason)
        try report(e, reason, outcome)
    }

    public func flush() throws {
        try pipeline.finish()
        for f in dp.families {
            try delete(pending[f.format.v6]!, v6: f.format.v6)
            try deleteOrphans(orphans[f.format.v6]!, v6: f.format.v6)
        }
    }

    /// The held orphan-nat verdicts, once 200 ms have passed since the view was read: each
    /// deleted only if its service is, in the live maps, still what the view said.
    private func deleteOrphans(_ buffer: EntryBuffer, v6: Bool) throws {
        guard buffer.count > 0, let view = dp.lastView else { return }
        let due = view.readAt + CalicoRemover.orphanDelayNs
        let now = Timestamp.monotonicNow()
        if due > now { usleep(UInt32((due - now) / 1000)) }
        try delete(buffer, v6: v6)
    }

    /// Deletes what `buffer` holds, one kernel run a stage of entries.
    private func delete(_ buffer: EntryBuffer, v6: Bool) throws {
        guard buffer.count > 0 else { return }
        defer { buffer.clear() }
        var start = 0
        while start < buffer.count {
            let end = min(buffer.count, start + CalicoStager.capacity)
            try run(buffer, start..<end, v6: v6)
            start = end
        }
    }

    private func run(_ buffer: EntryBuffer, _ range: Range<Int>, v6: Bool) throws {
        guard let stager, let family = dp.family(v6) else { return }
        // never delete from maps felix re-pinned under us
        try dp.verifyPinned(progress: "\(counts.deleted) entries deleted")
        let fmt = family.format
        let live = CalicoLive(family, view: dp.lastView)
        let now = Timestamp.monotonicNow()
        var staged: [(slot: Int, entry: Int)] = []
        for i in range {
            let e = family.entry(buffer.key(i), buffer.value(i))
            let reason = buffer.reasons[i]
            if handled.contains(e.key, count: fmt.keySize) { continue }
            // the frontend a verdict rests on, as it is now
            if let reason, !live.stillHolds(e, reason) {
                try settle(e, reason, .noLongerStale)
                continue
            }
            let s = stager.slots + staged.count
            s.pointee = ctctl_calico_slot()
            withUnsafeMutableBytes(of: &s.pointee.key) { $0.baseAddress!.copyMemory(from: e.key, byteCount: fmt.keySize) }
            s.pointee.type = e.typeRaw
            s.pointee.rule = UInt8((reason?.rule ?? CTCTL_RULE_REQUESTED).rawValue)
            s.pointee.last_seen = e.lastSeenNs
            withUnsafeMutableBytes(of: &s.pointee.expect) { x in
                if e.isForward {
                    x.baseAddress!.copyMemory(from: e.revKey, byteCount: fmt.keySize)
                } else if e.typeRaw == Calico.typeNATReverse {
                    x.baseAddress!.copyMemory(from: e.value + fmt.origIP, byteCount: fmt.origEnd - fmt.origIP)
                }
            }
            if e.isForward {
                withUnsafeMutableBytes(of: &s.pointee.partner) {
                    $0.baseAddress!.copyMemory(from: e.revKey, byteCount: fmt.keySize)
                }
                s.pointee.flags = UInt8(CTCTL_CALICO_SLOT_PARTNER)
            } else if e.typeRaw == Calico.typeNATReverse {
                withUnsafeMutableBytes(of: &s.pointee.partner) { e.writeForwardKey($0.baseAddress!) }
                withUnsafeMutableBytes(of: &s.pointee.partner2) { e.writeForwardKey($0.baseAddress!, sport: 0) }
                s.pointee.flags = UInt8(CTCTL_CALICO_SLOT_PARTNER | CTCTL_CALICO_SLOT_PARTNER2)
            }
            if reason == .expired {
                // the partner must still be idle now; the kernel then checks no packet came since
                var partnerIdle = true
                try dp.partner(of: e) { p in
                    if let p {
                        s.pointee.partner_last_seen = p.lastSeenNs
                        partnerIdle = dp.timeouts.map { CalicoRules.idle(p, timeouts: $0, now: now) } ?? false
                    }
                }
                if !partnerIdle {
                    try settle(e, reason, .noLongerStale)
                    continue
                }
            }
            staged.append((staged.count, i))
        }
        try stager.run(v6: v6, count: staged.count)
        for (slot, i) in staged {
            let e = family.entry(buffer.key(i), buffer.value(i))
            let r = stager.slots[slot].result
            if handled.contains(e.key, count: fmt.keySize) { continue }  // went with its partner earlier in this run
            let outcome = DeleteOutcome(stageResult: r, dryRun: false)
            if case .deleted(true) = outcome {
                withUnsafeBytes(of: stager.slots[slot].partner) { handled.insert($0.baseAddress!, count: fmt.keySize) }
            }
            try settle(e, buffer.reasons[i], outcome)
        }
    }

    private func settle(_ e: CalicoEntry, _ reason: StaleReason?, _ outcome: DeleteOutcome) throws {
        if case .deleted = outcome { handled.insert(e.key, count: e.format.keySize) }
        counts.record(outcome, reason: reason)
        try report(e, reason, outcome)
    }
}

/// Calico's services as they are now, looked up in the kernel the way its datapath looks them
/// up (the frontend trie's longest prefix, the routes, the backends): the re-check of a
/// missed-nat or orphan-nat verdict right before the delete.
final class CalicoLive {
    let family: CalicoFamily
    /// The view the verdicts were made on: an orphan is deleted only if its service, read now,
    /// is still what the view said (felix rewrites ordinals in place).
    let view: CalicoFamilyView?
    let routes: CalicoRoutes
    private let key: UnsafeMutableRawPointer
    private let value: UnsafeMutableRawPointer
    private var members: [UInt32: [Endpoint?]] = [:]

    init(_ family: CalicoFamily, view: CalicoServiceView?) {
        self.family = family
        self.view = family.format.v6 ? view?.v6 : view?.v4
        routes = CalicoRoutes(family.routes, family.format)
        key = .allocate(byteCount: max(family.format.feKeySize, CalicoFormat.beKeySize), alignment: 8)
        value = .allocate(byteCount: max(CalicoFormat.feValueSize, family.format.beValueSize), alignment: 8)
    }

    deinit {
        key.deallocate()
        value.deallocate()
    }

    func state(_ dst: IPAddress, _ port: UInt16, _ proto: UInt8, client: IPAddress) -> (CalicoFrontend?, FrontendState) {
        CalicoFamilyView.state(dst, port, proto, client: client, v6: family.format.v6, routes: routes.flags) { d, p, pr, c in
            CalicoFrontend.lookupKey(key, family.format, d, p, pr, c)
            guard (try? family.frontends.lookup(UnsafeRawPointer(key), into: value)) == true else { return nil }
            return CalicoFrontend(key: key, value: value, family.format)
        }
    }

    /// Service `id`'s backends by ordinal below `count`, read now (once per run).
    func ordinals(of id: UInt32, count: UInt32) -> [Endpoint?] {
        if let known = members[id], known.count == Int(min(count, 1 << 16)) { return known }
        var out: [Endpoint?] = []
        for ordinal in 0..<min(count, 1 << 16) {
            key.storeBytes(of: id, as: UInt32.self)
            key.storeBytes(of: ordinal, toByteOffset: 4, as: UInt32.self)
            guard (try? family.backends.lookup(UnsafeRawPointer(key), into: value)) == true else {
                out.append(nil)
                continue
            }
            out.append(
                Endpoint(
                    address: IPAddress(raw: value, v6: family.format.v6),
                    port: value.loadUnaligned(fromByteOffset: family.format.bePort, as: UInt16.self)))
        }
        members[id] = out
        return out
    }

    /// Does the verdict still hold by the services as they are now? (half-pair and expired
    /// are re-checked in the kernel.)
    func stillHolds(_ e: CalicoEntry, _ reason: StaleReason) -> Bool {
        switch reason {
        case .missedNAT:
            if case .active = state(e.originalDestination, e.originalDestinationPort, e.proto, client: e.originalSource).1 {
                return true
            }
            return false
        case .orphanNAT:
            let (fe, st) = state(e.serviceAddress, e.servicePort, e.serviceProto, client: e.originalSource)
            if let view {
                // the service must be, now, what the verdict was made on
                let (then, _) = view.state(e.serviceAddress, e.servicePort, e.serviceProto, client: e.originalSource)
                guard fe?.value == then?.value else { return false }
                if let fe, ordinals(of: fe.id, count: fe.count) != view.ordinals(of: fe.id, count: fe.count) { return false }
            }
            switch st {
            case .active:
                // any ordinal below the frontend's full count, as the scan's view judged it
                let backend = Endpoint(address: e.backendAddress, port: e.backendPort)
                return !ordinals(of: fe!.id, count: fe!.count).contains(backend)
            case .unjudged: return false
            case .noBackends, .drop, .excluded, .none: return true
            }
        case .halfPair, .expired: return true
        }
    }
}
