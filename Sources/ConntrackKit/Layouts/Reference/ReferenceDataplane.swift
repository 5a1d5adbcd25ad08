import CLibBPF
import Glibc

/// ctctl's own dataplane (bpf/), opened from its pin directory with every map's layout
/// checked against the ABI header: the first layout behind the Dataplane seam.
public final class ReferenceDataplane: @unchecked Sendable {
    public let pinDir: PinDirectory
    public let readOnly: Bool
    public let ct: BPFMap
    public let natFrontend: BPFMap
    public let natBackend: BPFMap
    public let counterMap: BPFMap
    public let attachments: BPFMap
    public let stateMap: BPFMap
    public let config: ctctl_config
    private var stateMapping: UnsafeMutablePointer<ctctl_state>?
    /// Buffers for lookups by key outside a scan's threads.
    public private(set) lazy var defaultScratch = makeScratch()
    /// The conntrack map's bucket count (nil: read it with one thread).
    lazy var ctBuckets: UInt32? = RawBatchReader.bucketCount(ct)

    /// Opens every map of the dataplane at `pinDir`. Read-only commands pass
    /// `readOnly: true` and get read-only fds (BPF_F_RDONLY).
    public init(_ pinDir: PinDirectory, readOnly: Bool) throws(CtctlError) {
        LibBPFLog.quiet()
        try pinDir.requireLoaded()
        self.pinDir = pinDir
        self.readOnly = readOnly
        let configMap = try MapSpec.config.open(in: pinDir, readOnly: true)
        guard let cfg = try configMap.lookup(UInt32(0), as: ctctl_config.self), cfg.magic == CTCTL_MAGIC else {
            throw CtctlError(
                .badLayout, "\(configMap.path) is not a ctctl dataplane configuration: refusing to use \(pinDir.path)")
        }
        guard cfg.abi_version == CTCTL_ABI_VERSION else {
            throw CtctlError(
                .badLayout,
                "\(pinDir.path) holds a dataplane with map ABI \(cfg.abi_version); this ctctl speaks ABI \(CTCTL_ABI_VERSION): use the ctctl that loaded it, or unload and load again"
            )
        }
        config = cfg
        ct = try MapSpec.ct.open(in: pinDir, readOnly: readOnly)
        natFrontend = try MapSpec.natFrontend.open(in: pinDir, readOnly: readOnly)
        natBackend = try MapSpec.natBackend.open(in: pinDir, readOnly: readOnly)
        counterMap = try MapSpec.counters.open(in: pinDir, readOnly: true)
        attachments = try MapSpec.attach.open(in: pinDir, readOnly: readOnly)
        stateMap = try MapSpec.state.open(in: pinDir, readOnly: readOnly)
    }

    deinit {
        if let stateMapping { munmap(stateMapping, Int(getpagesize())) }
    }

    public var timeouts: Timeouts { Timeouts(config) }
    public var serviceEpochEnabled: Bool { config.flags & CTCTL_CFG_F_SERVICE_EPOCH != 0 }

    /// The live state (.data), mapped once and shared with the datapath.
    func state() throws(CtctlError) -> UnsafeMutablePointer<ctctl_state> {
        if let stateMapping { return stateMapping }
        let p = try stateMap.mmapValues(length: Int(getpagesize())).bindMemory(to: ctctl_state.self, capacity: 1)
        stateMapping = p
        return p
    }

    /// The live state. Writers read it from the shared mapping; read-only fds cannot be
    /// mapped shared (the kernel clears VM_SHARED for them), so readers look it up.
    func readState() throws(CtctlError) -> ctctl_state {
        if !readOnly { return try state().pointee }
        guard let s = try stateMap.lookup(UInt32(0), as: ctctl_state.self) else {
            throw CtctlError(.badLayout, "\(stateMap.path) is empty: not a ctctl dataplane")
        }
        return s
    }

    /// The global service epoch (for writers, one load from shared memory).
    public func epoch() throws(CtctlError) -> UInt32 {
        if readOnly { return try readState().epoch }
        let s = try state()
        return CLibBPF_atomic_load_u32(&s.pointee.epoch)
    }

    /// Starts a write of the NAT maps: the epoch becomes odd (a sequence counter, see
    /// ctctl_abi.h), atomically. An epoch left odd by a writer that died mid-write is
    /// first made even, so it is odd again now. Callers hold the writers' lock.
    public func beginServiceWrite() throws(CtctlError) {
        let s = try state()
        if CLibBPF_atomic_load_u32(&s.pointee.epoch) & 1 == 1 { _ = CLibBPF_atomic_add_u32(&s.pointee.epoch, 1) }
        _ = CLibBPF_atomic_add_u32(&s.pointee.epoch, 1)
    }

    /// Ends a write of the NAT maps: the epoch becomes even again, one step further.
    /// Returns the new epoch.
    @discardableResult
    public func endServiceWrite() throws(CtctlError) -> UInt32 {
        let s = try state()
        return CLibBPF_atomic_add_u32(&s.pointee.epoch, 1)
    }

    public func loadedAt() throws(CtctlError) -> UInt64 { try readState().loaded_at }

    /// The datapath counters, summed over CPUs, named as the ABI header names them.
    public func counterTotals() throws(CtctlError) -> [DatapathCounter] {
        let ncpu = Int(libbpf_num_possible_cpus())
        let buf = UnsafeMutablePointer<ctctl_counters>.allocate(capacity: max(ncpu, 1))
        defer { buf.deallocate() }
        var key: UInt32 = 0
        _ = try counterMap.lookup(&key, into: buf)
        var totals = [UInt64](repeating: 0, count: DatapathCounter.names.count)
        for cpu in 0..<ncpu {
            withUnsafeBytes(of: &buf[cpu].c) { raw in
                for i in 0..<totals.count {
                    totals[i] &+= raw.load(fromByteOffset: i * 8, as: UInt64.self)
                }
            }
        }
        return totals.enumerated().map { DatapathCounter(name: DatapathCounter.names[$0], value: $1) }
    }

    /// For a writer that just took the lock: the lock is on the pin directory as it is now,
    /// and the maps pinned there are the ones this Dataplane opened. Nothing is written
    /// otherwise (a reload happened while the writer waited for the lock).
    public func verify(holding lock: WriterLock) throws(CtctlError) {
        guard lock.stillHeld else {
            throw CtctlError(
                .unavailable,
                "the dataplane at \(pinDir.path) was unloaded while this command waited for its lock: nothing was written; run the command again",
                cause: .dataplaneReplaced)
        }
        try verifyPinned()
    }

    /// The maps this dataplane was opened with, by pin.
    var openedMaps: [BPFMap] { [ct, natFrontend, natBackend, counterMap, attachments, stateMap] }

    /// Checks that the objects pinned at the pin directory are still the ones this
    /// Dataplane opened (by kernel id), so nothing is read from or written to maps that
    /// were unpinned meanwhile: `dataplane unload` and `load` put new maps at the same
    /// paths. Writers call it after taking the lock, long-lived users at every pass and
    /// batch. `only`: check just these pins (the watching heal's cheap poll).
    public func verifyPinned(only: [String]? = nil, progress: String? = nil) throws(CtctlError) {
        for map in openedMaps where only.map({ $0.contains(map.pin) }) ?? true {
            let now: UInt32?
            now = try pinnedID(map.path)
            guard now != map.info.id else { continue }
            let what = now == nil ? "was unloaded" : "was unloaded and loaded again (new maps at the same paths)"
            throw CtctlError(
                .unavailable,
                "the dataplane at \(pinDir.path) \(what) while this command used it\(progress.map { ": stopped after \($0)" } ?? ""); nothing was written to the new maps, and no NAT pair was left half deleted: run the command again",
                cause: .dataplaneReplaced)
        }
    }
}
