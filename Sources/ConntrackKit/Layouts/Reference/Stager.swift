import CLibBPF
import Glibc

/// Runs ctctl's compare-and-delete program (prog_stage) over keys staged in the `stage`
/// map: up to CTCTL_STAGE_SLOTS entries a run, one BPF_PROG_TEST_RUN each. Every delete
/// ctctl makes goes through here: the kernel re-checks each entry's identity and the rule
/// it was judged by right before it deletes. Requires the writers' lock: there is one
/// stage per dataplane.
public final class Stager {
    public static let capacity = Int(CTCTL_STAGE_SLOTS)

    let dp: ReferenceDataplane
    let stageMap: BPFMap
    let slots: UnsafeMutablePointer<ctctl_stage_slot>
    let prog: FileDescriptor
    let progID: UInt32
    let mappedLength: Int
    public private(set) var count = 0

    public init(_ dp: ReferenceDataplane, lock: WriterLock) throws(CtctlError) {
        try dp.verify(holding: lock)
        self.dp = dp
        stageMap = try MapSpec.stage.open(in: dp.pinDir, readOnly: false)
        guard stageMap.info.maxEntries == CTCTL_STAGE_SLOTS, stageMap.info.flags & UInt32(BPF_F_MMAPABLE) != 0 else {
            throw CtctlError(
                .badLayout,
                "\(stageMap.path) is not the \(CTCTL_STAGE_SLOTS)-slot mmap-able stage of this ABI: refusing to use it")
        }
        let path = dp.pinDir.pin(CTCTL_PIN_PROG_STAGE)
        prog = try openProgram(path, missing: "no program at \(path): is the dataplane loaded? (`ctctl dataplane load`)")
        progID = try objectID(fd: prog.raw, path: path)
        let page = Int(getpagesize())
        mappedLength = (Stager.capacity * MemoryLayout<ctctl_stage_slot>.stride + page - 1) / page * page
        slots = try stageMap.mmapValues(length: mappedLength).bindMemory(to: ctctl_stage_slot.self, capacity: Stager.capacity)
    }

    /// The stage and its program are still the ones pinned (see Dataplane.verifyPinned).
    func verifyPinned() throws(CtctlError) {
        let stageNow = try pinnedID(stageMap.path)
        let progNow = try pinnedID(dp.pinDir.pin(CTCTL_PIN_PROG_STAGE))
        if stageNow != stageMap.info.id || progNow != progID {
            throw CtctlError(
                .unavailable,
                "the dataplane at \(dp.pinDir.path) was unloaded or reloaded while this command used it: nothing more was deleted; run the command again",
                cause: .dataplaneReplaced)
        }
    }

    deinit { munmap(slots, mappedLength) }

    public var isFull: Bool { count == Stager.capacity }

    /// Stages an entry with the identity the caller saw and the rule it judged the entry
    /// by (CTCTL_RULE_REQUESTED: the user asked). The stager must not be full.
    @inline(__always)
    public func add(_ e: ReferenceEntry, rule: ctctl_rule) {
        precondition(count < Stager.capacity)
        let s = slots + count
        s.pointee.key = e.key.pointee
        s.pointee.created_ns = e.createdNs
        s.pointee.type = e.typeRaw
        s.pointee.rule = UInt8(rule.rawValue)
        s.pointee.result = 0
        count += 1
    }

    /// The result bits of slot i after run().
    public func result(_ i: Int) -> UInt8 { slots[i].result }

    /// Runs the program over the staged slots; returns how many entries it deleted
    /// (partners included). Slots stay readable until reset().
    @discardableResult
    public func run() throws(CtctlError) -> Int {
        try runStageProgram(
            prog.raw, count: count, what: "the compare-and-delete program", path: dp.pinDir.pin(CTCTL_PIN_PROG_STAGE))
    }

    public func reset() { count = 0 }
}
