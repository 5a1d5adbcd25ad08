import CLibBPF
import Glibc

/// One batch of one Calico conntrack map, in place.
public struct CalicoBatch: EntryBatch {
    let keys: UnsafeRawPointer
    let values: UnsafeRawPointer
    let family: CalicoFamily
    public let count: Int

    @inline(__always)
    public subscript(i: Int) -> CalicoEntry {
        CalicoEntry(
            keys + i * family.format.keySize, values + i * family.format.valueSize, family.format, family.generation)
    }

    public var rawKeys: UnsafeRawPointer { keys }
    public var rawValues: UnsafeRawPointer { values }
    public var keySize: Int { family.format.keySize }
    public var valueSize: Int { family.format.valueSize }

    public func over(keys: UnsafeRawPointer, values: UnsafeRawPointer, count: Int) -> CalicoBatch {
        CalicoBatch(keys: keys, values: values, family: family, count: count)
    }
}

/// Calico's eBPF dataplane maps (v3.29 to today, IPv4 and IPv6), read the way Calico's own
/// programs read them. ctctl never creates or writes anything in Calico's directory: its
/// writers' lock lives beside it (`lockDirectory`), and the NAT and route maps are always
/// opened read-only.
public final class CalicoDataplane: @unchecked Sendable {
    public let pinDir: PinDirectory
    public let readOnly: Bool
    let families: [CalicoFamily]
    let timeouts: Timeouts?
    public let caveats: [String]
    /// What ctctl chose by itself (which ct map, when two are pinned).
    public let notes: [String]
    let btfChecked: Bool
    /// Buffers for lookups by key outside a scan's threads.
    public private(set) lazy var defaultScratch = makeScratch()
    /// The view the last staleRules read (a pass's remover compares orphans with it).
    var lastView: CalicoServiceView?
    /// The backends' digest and when it was taken (serviceVersion reads them once a second).
    private var backendDigest: (at: UInt64, value: UInt64)?
    /// The watching heal's readers of the NAT maps, by map fd: kept, so a poll allocates
    /// nothing (a fresh 4096-entry buffer every 100 ms costs more than the read).
    private var digestReaders: [Int32: RawBatchReader] = [:]
    /// The watching heal's in-kernel look at the services (CalicoWatcher), once it asked for
    /// one and the kernel allowed it.
    private var watcher: CalicoWatcher?

    init(
        pinDir: PinDirectory, readOnly: Bool, families: [CalicoFamily], timeouts: Timeouts?, caveats: [String],
        notes: [String], btfChecked: Bool
    ) {
        self.pinDir = pinDir
        self.readOnly = readOnly
        self.families = families
        self.timeouts = timeouts
        self.caveats = caveats
        self.notes = notes
        self.btfChecked = btfChecked
    }

    func family(_ v6: Bool) -> CalicoFamily? { families.first { $0.format.v6 == v6 } }

    var allMaps: [BPFMap] { families.flatMap(\.maps) }

    /// Where ctctl keeps its own lock for this Calico directory: on the same bpffs, outside
    /// Calico's directory (`/sys/fs/bpf/tc/globals` -> `/sys/fs/bpf/ctctl-calico/tc-globals`),
    /// so a ctctl on the host and one in a pod that mounts the host's bpffs share it.
    public static func lockDirectory(for dir: PinDirectory) -> PinDirectory {
        var root = dir.path
        var st = stat()
        guard stat(root, &st) == 0 else { return PinDirectory(dir.path + "-ctctl-lock") }
        let dev = st.st_dev
        while let slash = root.lastIndex(of: "/"), root != "/" {
            let parent = slash == root.startIndex ? "/" : String(root[..<slash])
            var pst = stat()
            guard stat(parent, &pst) == 0, pst.st_dev == dev, PinDirectory.isBPFFS(parent) else { break }
            root = parent
        }
        let rel = dir.path.dropFirst(root.count).split(separator: "/").joined(separator: "-")
        return PinDirectory((root == "/" ? "" : root) + "/ctctl-calico/" + (rel.isEmpty ? "root" : rel))
    }
}

extension CalicoDataplane: Dataplane {
    public static var layoutName: String { "calico" }
    public static var defaultPinDir: PinDirectory { PinDirectory(Calico.defaultPinDir) }

    public static func detect(_ dir: PinDirectory) -> Bool {
        var st = stat()
        return [false, true].contains { v6 in
            [3, 4].contains { stat(dir.pin(Calico.ctPin(v6, $0)), &st) == 0 }
        }
    }

    public static func open(_ dir: PinDirectory, readOnly: Bool, options: LayoutOptions) throws(CtctlError)
        -> CalicoDataplane
    {
        try dir.requireBPFFS()
        var version: CalicoVersion? = nil
        if let text = options.calicoVersion {
            guard let v = CalicoVersion(text) else {
                throw .usage("bad --calico-version '\(text)': write a version such as v3.29, v3.30.2 or v3.31")
            }
            version = v
        }
        var opener = CalicoOpener(dir: dir, readOnly: readOnly, version: version)
        var families: [CalicoFamily] = []
        for v6 in [false, true] { if let f = try opener.open(v6: v6) { families.append(f) } }
        guard !families.isEmpty else {
            throw CtctlError(
                .unavailable,
                "no Calico conntrack map (cali_v4_ct4, cali_v4_ct3 or their IPv6 twins) at \(dir.path): is calico-node running with the eBPF dataplane here?"
            )
        }
        var caveats = opener.caveats
        if !opener.unknownVersion.isEmpty {
            let maps = opener.unknownVersion.joined(separator: " and ")
            caveats.append(
                "\(maps) \(opener.unknownVersion.count == 1 ? "is a ct3 map" : "are ct3 maps") of Calico v3.29 or v3.30, which the maps cannot tell apart: offset 0 is `created` on v3.29 and `rst_seen` on v3.30, so creation times and flags above bit 15 are not shown (give --calico-version to settle it)"
            )
        }
        if opener.btfUnchecked {
            caveats.append(
                "BTF not checked: reading a map's BTF needs CAP_SYS_ADMIN; the maps' types, sizes and flags were checked")
        }
        return CalicoDataplane(
            pinDir: dir, readOnly: readOnly, families: families, timeouts: options.timeouts, caveats: caveats,
            notes: opener.notes, btfChecked: opener.btfChecked && !opener.btfUnchecked)
    }

    public var summary: String {
        let maps = families.map(\.ct.pin).joined(separator: ", ")
        let gens = Set(families.map(\.generation.rawValue)).sorted().joined(separator: ", ")
        return "Calico \(gens) maps at \(pinDir.path) (\(maps); \(btfChecked ? "BTF checked" : "BTF not checked"))"
    }

    public var conntrackCapacity: Int { families.reduce(0) { $0 + Int($1.ct.info.maxEntries) } }

    public func verifyPinned(progress: String?) throws(CtctlError) {
        for map in allMaps {
            let now = try pinnedID(map.path)
            guard now != map.info.id else { continue }
            throw CtctlError(
                .unavailable,
                "Calico's \(map.pin) at \(pinDir.path) was \(now == nil ? "unpinned" : "re-pinned (felix restarted, resized or upgraded its maps)") while this command used it\(progress.map { ": stopped after \($0)" } ?? ""); nothing was written to the new maps: run the command again",
                cause: .dataplaneReplaced)
        }
    }

    /// The conntrack and frontend maps only: what the watching heal reads between passes.
    public func stillPinned() -> Bool {
        families.allSatisfy { f in [f.ct, f.frontends].allSatisfy { (try? pinnedID($0.path)) == $0.info.id } }
    }

    public func writerLock(timeoutMs: Int) throws(CtctlError) -> WriterLock {
        let dir = CalicoDataplane.lockDirectory(for: pinDir)
        let parent = String(dir.path[..<dir.path.lastIndex(of: "/")!])
        for d in [parent, dir.path] {
            do { try Errno.libc { mkdir(d, 0o700) } } catch  where error.code == EEXIST {} catch {
                throw CtctlError.from(error, doing: "creating ctctl's lock directory for Calico's maps", path: d)
            }
        }
        let lock = try WriterLock(dir, timeoutMs: timeoutMs)
        try verify(holding: lock)
        return lock
    }

    public func verify(holding lock: WriterLock) throws(CtctlError) {
        guard lock.stillHeld else {
            throw CtctlError(
                .unavailable, "ctctl's lock directory for \(pinDir.path) was removed while this command waited: run it again",
                cause: .dataplaneReplaced)
        }
        try verifyPinned(progress: nil)
    }

    // MARK: reading

    /// Each family's conntrack map split into parts (an IPv6 map is usually small: its parts
    /// end up empty and cost one call each).
    public func scanParts(_ n: Int) -> [ScanPart] {
        families.indices.flatMap { i in ScanPart.split(map: i, total: families[i].ctBuckets, n) }
    }

    public func scan(_ part: ScanPart, _ body: (CalicoBatch, Bool) throws -> Bool) throws {
        let f = families[part.map]
        let reader = RawBatchReader(keySize: f.format.keySize, valueSize: f.format.valueSize, capacity: 8192)
        try part.read(f.ct, reader) { n, uncertain in
            try body(CalicoBatch(keys: reader.keys, values: reader.values, family: f, count: n), uncertain)
        }
    }

    public func makeScratch() -> CalicoScratch { CalicoScratch() }

    public func entries(of flow: FlowKey, _ body: ([CalicoEntry]) throws -> Void) throws {
        guard let f = family(flow.src.address.family == .v6) else { return try body([]) }
        let found = EntryBuffer(keySize: f.format.keySize, valueSize: f.format.valueSize, capacity: 4)
        let b = defaultScratch.of(f.format.v6)
        var seen = HandledKeys(reserve: 0)
        func add(_ key: UnsafeRawPointer) throws {
            if seen.contains(key, count: f.format.keySize) || found.isFull { return }
            seen.insert(key, count: f.format.keySize)
            guard try f.ct.lookup(key, into: b.value) else { return }
            found.append(key: key, value: b.value, nil)
        }
        f.format.writeKey(b.key, proto: flow.proto.number, flow.src, flow.dst)
        let first = UnsafeMutableRawPointer.allocate(byteCount: f.format.keySize, alignment: 8)
        defer { first.deallocate() }
        first.copyMemory(from: b.key, byteCount: f.format.keySize)
        try add(first)
        var i = 0
        while i < found.count {
            let e = f.entry(found.key(i), found.value(i))
            if e.isNAT { try partner(of: e) { p in if let p { try add(p.key) } } }
            i += 1
        }
        try body((0..<found.count).map { f.entry(found.key($0), found.value($0)) })
    }

    /// The datapath's own rule: a NAT_FWD's NAT_REV is the entry at its nat_rev_key, of type
    /// NAT_REV; a NAT_REV's NAT_FWD is at the key of its original client and VIP (or with
    /// source port 0, Calico's port-conflict path), of type NAT_FWD, pointing back at it.
    public func partner(of e: CalicoEntry, scratch: CalicoScratch, _ body: (CalicoEntry?) throws -> Void) throws {
        guard e.isNAT, let f = family(e.format.v6) else { return try body(nil) }
        let size = f.format.keySize
        let b = scratch.of(e.format.v6)
        if e.isForward {
            b.partnerKey.copyMemory(from: e.revKey, byteCount: size)
            let ok =
                try f.ct.lookup(UnsafeRawPointer(b.partnerKey), into: b.partnerValue)
                && b.partnerValue.load(fromByteOffset: CalicoFormat.type, as: UInt8.self) == Calico.typeNATReverse
            return try body(ok ? f.entry(b.partnerKey, b.partnerValue) : nil)
        }
        for sport in [e.originalClientPort, 0] {
            e.writeForwardKey(b.partnerKey, sport: sport)
            guard try f.ct.lookup(UnsafeRawPointer(b.partnerKey), into: b.partnerValue),
                b.partnerValue.load(fromByteOffset: CalicoFormat.type, as: UInt8.self) == Calico.typeNATForward,
                memcmp(b.partnerValue + CalicoFormat.natRevKey, e.key, size) == 0
            else { continue }
            return try body(f.entry(b.partnerKey, b.partnerValue))
        }
        try body(nil)
    }

    /// (family, forward key, reverse key): the forward half is its own key and its
    /// nat_rev_key; the reverse half is the forward key it implies and its own key.
    public func ledgerIdentity(_ e: CalicoEntry, into w: UnsafeMutablePointer<UInt64>, scratch: CalicoScratch) -> Int {
        w[0] = UInt64(e.familyRaw)
        if e.isForward {
            e.format.keyWords(e.key, into: w + 1)
            e.format.keyWords(e.revKey, into: w + 6)
            return 1
        }
        let key = scratch.of(e.format.v6).key
        e.writeForwardKey(key)
        e.format.keyWords(key, into: w + 1)
        e.format.keyWords(e.key, into: w + 6)
        return -1
    }

    public func reread(_ c: PairLedger.Element, scratch: CalicoScratch, _ body: (CalicoEntry) throws -> Void) throws {
        guard let f = family(c.tag == 6) else { return }
        let b = scratch.of(c.tag == 6)
        let raw = b.key
        var bytes = c.presentKey.flatMap { w in (0..<8).map { UInt8(truncatingIfNeeded: w >> UInt64(8 * $0)) } }
        bytes = Array(bytes.prefix(f.format.keySize))
        raw.copyMemory(from: bytes, byteCount: f.format.keySize)
        guard try f.ct.lookup(UnsafeRawPointer(raw), into: b.value),
            b.value.load(fromByteOffset: CalicoFormat.type, as: UInt8.self) == c.presentType.rawValue
        else { return }
        // the body may look the partner up: the entry lives in its own copy
        let key = UnsafeMutableRawPointer.allocate(byteCount: f.format.keySize, alignment: 8)
        let value = UnsafeMutableRawPointer.allocate(byteCount: f.format.valueSize, alignment: 8)
        defer {
            key.deallocate()
            value.deallocate()
        }
        key.copyMemory(from: raw, byteCount: f.format.keySize)
        value.copyMemory(from: b.value, byteCount: f.format.valueSize)
        try body(f.entry(key, value))
    }

    // MARK: judging

    /// A reading command gets a view read twice, 200 ms apart, the same both times. A pass
    /// that deletes (holding the lock) reads once and goes on at once: its remover holds every
    /// orphan-nat verdict until 200 ms after the read, and deletes only if that service, read
    /// again then, is still what the view says (the same rule, overlapped with the scan).
    public func staleRules(holdingLock: Bool) throws -> CalicoRules {
        let view = holdingLock ? try snapshot().view(families, stable: false) : try readView(stableNs: 200_000_000)
        lastView = view
        return CalicoRules(view: view, timeouts: timeouts)
    }

    /// One view of both families' frontends and backends, read again at least `stableNs`
    /// later until two reads agree.
    func readView(stableNs: UInt64) throws(CtctlError) -> CalicoServiceView {
        var previous = try snapshot()
        var at = Timestamp.monotonicNow()
        for _ in 0..<25 {
            let wait = at + stableNs
            let now = Timestamp.monotonicNow()
            if wait > now { usleep(UInt32((wait - now) / 1000)) }
            let next = try snapshot()
            if next.equals(previous) { return next.view(families, stable: true) }
            previous = next
            at = Timestamp.monotonicNow()
        }
        throw CtctlError(
            .software,
            "Calico's services at \(pinDir.path) kept changing for \(25 * stableNs / 1_000_000) ms (felix is rewriting them): try again"
        )
    }

    struct Snapshot {
        var frontends: [[CalicoFrontend]] = []
        var backends: [[CalicoBackend]] = []

        func equals(_ o: Snapshot) -> Bool { frontends == o.frontends && backends == o.backends }

        func view(_ families: [CalicoFamily], stable: Bool) -> CalicoServiceView {
            var v4: CalicoFamilyView? = nil
            var v6: CalicoFamilyView? = nil
            for (i, f) in families.enumerated() {
                let v = CalicoFamilyView(
                    format: f.format, frontends: frontends[i], backends: backends[i], routes: CalicoRoutes(f.routes, f.format))
                if f.format.v6 { v6 = v } else { v4 = v }
            }
            return CalicoServiceView(v4: v4, v6: v6, readAt: Timestamp.monotonicNow(), stable: stable)
        }
    }

    func snapshot() throws(CtctlError) -> Snapshot {
        var s = Snapshot()
        for f in families {
            s.frontends.append(try CalicoDataplane.readFrontends(f))
            s.backends.append(try CalicoDataplane.readBackends(f))
        }
        return s
    }

    /// Every frontend, in a stable order (an LPM trie's batch read walks its keys).
    static func readFrontends(_ f: CalicoFamily) throws(CtctlError) -> [CalicoFrontend] {
        let fmt = f.format
        var out: [CalicoFrontend] = []
        var seen = Set<[UInt8]>()
        let reader = RawBatchReader(keySize: fmt.feKeySize, valueSize: CalicoFormat.feValueSize, capacity: 4096)
        do {
            try reader.read(f.frontends) { n in
                for i in 0..<n {
                    let k = reader.keys + i * fmt.feKeySize
                    guard seen.insert(Array(UnsafeRawBufferPointer(start: k, count: fmt.feKeySize))).inserted else { continue }
                    out.append(CalicoFrontend(key: k, value: reader.values + i * CalicoFormat.feValueSize, fmt))
                }
                return true
            }
        } catch let e as CtctlError { throw e } catch { throw CtctlError(.software, "\(error)") }
        return out.sorted {
            ($0.vip.hi, $0.vip.lo, $0.port, $0.proto, $0.prefixBits) < ($1.vip.hi, $1.vip.lo, $1.port, $1.proto, $1.prefixBits)
        }
    }

    static func readBackends(_ f: CalicoFamily) throws(CtctlError) -> [CalicoBackend] {
        let fmt = f.format
        var out: [CalicoBackend] = []
        let reader = RawBatchReader(keySize: CalicoFormat.beKeySize, valueSize: fmt.beValueSize, capacity: 4096)
        do {
            try reader.read(f.backends) { n in
                for i in 0..<n {
                    let k = reader.keys + i * CalicoFormat.beKeySize
                    let v = reader.values + i * fmt.beValueSize
                    out.append(
                        CalicoBackend(
                            id: k.loadUnaligned(as: UInt32.self), ordinal: k.loadUnaligned(fromByteOffset: 4, as: UInt32.self),
                            endpoint: Endpoint(
                                address: IPAddress(raw: v, v6: fmt.v6),
                                port: v.loadUnaligned(fromByteOffset: fmt.bePort, as: UInt16.self)
                            )))
                }
                return true
            }
        } catch let e as CtctlError { throw e } catch { throw CtctlError(.software, "\(error)") }
        return out.sorted { ($0.id, $0.ordinal) < ($1.id, $1.ordinal) }
    }

    // MARK: deleting

    public func remover(lock: WriterLock?, report: @escaping RemovalReport<CalicoEntry>) throws -> CalicoRemover {
        try CalicoRemover(self, lock: lock, report: report)
    }

    // MARK: the rest

    public func services() throws -> [ServiceSummary] {
        let snap = try snapshot()
        var out: [ServiceSummary] = []
        for (i, f) in families.enumerated() {
            let byID = Dictionary(grouping: snap.backends[i], by: \.id)
            for fe in snap.frontends[i] {
                out.append(CalicoDataplane.summary(fe, f.format, byID[fe.id] ?? []))
            }
        }
        return out
    }

    static func summary(_ fe: CalicoFrontend, _ fmt: CalicoFormat, _ backends: [CalicoBackend]) -> ServiceSummary {
        let ref = ServiceRef(vip: Endpoint(address: fe.vip, port: fe.port), proto: IPProto(fe.proto))
        var scope: [String] = []
        if fe.isNodePort { scope.append("nodeport: any host address") }
        let bits = fe.sourceBits(fmt)
        if bits > 0 { scope.append("from \(IPNetwork(address: fe.source, prefix: bits))") }
        let state: FrontendState.Kind
        var note: String? = nil
        var listed: [Endpoint?] = []
        if fe.flags & Calico.natMaglev != 0 {
            state = .unjudged
            note = "Maglev (\(fe.count) backends): its flows are never judged"
        } else if fe.count == Calico.dropCount {
            state = .drop
            note = "drop entry: packets from outside the source ranges are dropped"
        } else if fe.flags & Calico.natExclude != 0 {
            state = .excluded
            note = "NAT excluded: passed untranslated"
        } else {
            let byOrdinal = Dictionary(backends.map { ($0.ordinal, $0.endpoint) }, uniquingKeysWith: { a, _ in a })
            listed = (0..<min(fe.count, 1 << 16)).map { byOrdinal[$0] }
            state = fe.count == 0 ? .noBackends : .active
            if fe.count == 0 { note = "none (Calico answers unreachable)" }
        }
        if fe.local > 0 || fe.flags & (Calico.natInternalLocal | Calico.natExternalLocal) != 0 {
            scope.append("\(fe.local) local")
        }
        return ServiceSummary(
            ref: ref, id: fe.id, scope: scope.isEmpty ? nil : scope.joined(separator: ", "), backends: listed,
            backendCount: fe.count, state: state, note: note)
    }

    public func counters() throws -> [DatapathCounter] { [] }

    public func serviceEpoch() throws -> UInt32? { nil }

    public func watchServices() -> String? {
        do {
            watcher = try CalicoWatcher(self)
            return "watching Calico's services in the kernel: the staged keys looked up every poll, read in full on a change"
        } catch {
            watcher = nil
            return "watching Calico's services by reading them in full every poll: \(error.message)"
        }
    }

    /// With a watcher, its version; without, a digest of every frontend (one batch read of
    /// each family's trie), and of the backends, read again when a second has passed: Calico
    /// has no service epoch.
    public func serviceVersion() throws -> UInt64 {
        if let w = watcher {
            do { return try w.serviceVersion() } catch {
                // more services than its arrays hold, or the kernel refused a run: read in
                // full from now on, as without it
                watcher = nil
            }
        }
        let now = Timestamp.monotonicNow()
        if backendDigest == nil || now - backendDigest!.at >= 1_000_000_000 {
            var h = CalicoDataplane.fnvStart
            for f in families {
                try digest(f.backends, CalicoFormat.beKeySize, f.format.beValueSize, &h)
            }
            backendDigest = (now, h)
        }
        var h = backendDigest!.value
        for f in families { try digest(f.frontends, f.format.feKeySize, CalicoFormat.feValueSize, &h) }
        return h
    }

    static let fnvStart: UInt64 = 0xcbf2_9ce4_8422_2325

    /// Folds every key and value of `map` into `h`, one batch read: each entry hashed 8
    /// bytes at a time (the watching heal does this ten times a second).
    func digest(_ map: BPFMap, _ keySize: Int, _ valueSize: Int, _ h: inout UInt64) throws {
        let reader =
            digestReaders[map.fd]
            ?? {
                let r = RawBatchReader(keySize: keySize, valueSize: valueSize, capacity: 4096)
                digestReaders[map.fd] = r
                return r
            }()
        var sum: UInt64 = 0
        try reader.read(map) { n in
            // order-free: the sum of each entry's hash, so iteration order cannot matter
            for i in 0..<n {
                var e = CalicoDataplane.fnvStart
                CalicoDataplane.mix(reader.keys + i * keySize, keySize, &e)
                CalicoDataplane.mix(reader.values + i * valueSize, valueSize, &e)
                sum &+= e
            }
            return true
        }
        h = (h ^ sum) &* 0x100_0000_01b3
    }

    /// Mixes `count` bytes at `p` into `e`, a word at a time (the tail byte by byte).
    static func mix(_ p: UnsafeRawPointer, _ count: Int, _ e: inout UInt64) {
        var i = 0
        while i + 8 <= count {
            e = (e ^ p.loadUnaligned(fromByteOffset: i, as: UInt64.self)) &* 0x100_0000_01b3
            e ^= e >> 29
            i += 8
        }
        while i < count {
            e = (e ^ UInt64(p.load(fromByteOffset: i, as: UInt8.self))) &* 0x100_0000_01b3
            i += 1
        }
    }

    public func status() throws -> DataplaneStatus {
        DataplaneStatus(
            layout: Self.layoutName, pinDir: pinDir.path,
            maps: try allMaps.map { m throws(CtctlError) in
                // the conntrack maps are counted; the NAT and route maps only described
                m.info.type == BPF_MAP_TYPE_LPM_TRIE.rawValue
                    ? .init(name: m.pin, info: m.info, entries: nil) : try .counted(m)
            },
            caveats: notes + caveats, summary: summary)
    }
}
