import CLibBPF
import Glibc

/// ctctl's compare-and-delete program for Calico's conntrack maps (bpf/ctctl_calico.bpf.c),
/// loaded for one command with Calico's own map fds in place of its placeholders, and
/// unloaded when the command ends: nothing is pinned, nothing is created in Calico's
/// directory. Up to CTCTL_CALICO_STAGE_SLOTS entries a run, one BPF_PROG_TEST_RUN each.
final class CalicoStager {
    static let capacity = Int(CTCTL_CALICO_STAGE_SLOTS)
    static let objectName = "ctctl-calico.bpf.o"
    static let objectEnvironment = "CTCTL_CALICO_BPF_OBJECT"

    private let object: OpaquePointer
    private let programs: [Bool: Int32]
    let slots: UnsafeMutablePointer<ctctl_calico_slot>
    private let mappedLength: Int
    let path: String

    /// `dp` must hold writable fds to Calico's conntrack maps, and the caller the writers' lock.
    init(_ dp: CalicoDataplane, lock: WriterLock) throws(CtctlError) {
        try dp.verify(holding: lock)
        path = try Loader.findObject(CalicoStager.objectName, environment: CalicoStager.objectEnvironment)
        LibBPFLog.quiet()
        CLibBPF_clear_log()
        guard let obj = bpf_object__open_file(path, nil) else {
            throw CtctlError(.software, "cannot open BPF object \(path): \(Errno.current) \(Loader.libbpfLogTail(300))")
        }
        var ok = false
        defer { if !ok { bpf_object__close(obj) } }
        for f in dp.families {
            guard let m = bpf_object__find_map_by_name(obj, f.format.v6 ? "ct_v6" : "ct_v4") else {
                throw CtctlError(.badLayout, "\(path) is not ctctl's Calico object (no ct map): rebuild it with this ctctl")
            }
            let r = bpf_map__reuse_fd(m, f.ct.fd)
            if r != 0 { throw CtctlError.from(Errno(-r), doing: "using", path: f.ct.path) }
        }
        let r = bpf_object__load(obj)
        if r != 0 {
            let e = Errno(-r)
            let log = Loader.libbpfLogTail()
            if e.isPermission && !log.contains("PROG LOAD LOG") {
                throw CtctlError(.noPermission, "permission denied loading ctctl's Calico program: \(CtctlError.privilegeHint)")
            }
            throw CtctlError(.software, "the kernel refused ctctl's compare-and-delete for Calico's maps (\(e)): \(log)")
        }
        var progs: [Bool: Int32] = [:]
        for v6 in [false, true] {
            guard let p = bpf_object__find_program_by_name(obj, v6 ? "calico_stage_v6" : "calico_stage_v4") else {
                throw CtctlError(.badLayout, "\(path) lacks its programs: rebuild it with this ctctl")
            }
            progs[v6] = bpf_program__fd(p)
        }
        guard let stage = bpf_object__find_map_by_name(obj, "stage"),
            bpf_map__value_size(stage) == UInt32(MemoryLayout<ctctl_calico_slot>.size)
        else {
            throw CtctlError(.badLayout, "\(path) has another stage layout: rebuild it with this ctctl")
        }
        let page = Int(getpagesize())
        mappedLength = (CalicoStager.capacity * MemoryLayout<ctctl_calico_slot>.stride + page - 1) / page * page
        guard let m = mmap(nil, mappedLength, PROT_READ | PROT_WRITE, MAP_SHARED, bpf_map__fd(stage), 0), m != MAP_FAILED
        else {
            throw CtctlError.from(Errno.current, doing: "mapping the stage of", path: path)
        }
        slots = m.bindMemory(to: ctctl_calico_slot.self, capacity: CalicoStager.capacity)
        object = obj
        programs = progs
        ok = true
    }

    deinit {
        munmap(slots, mappedLength)
        bpf_object__close(object)
    }

    /// Runs the family's program over slots 0..<count; the results are in the slots.
    func run(v6: Bool, count: Int) throws(CtctlError) {
        _ = try runStageProgram(
            programs[v6]!, count: count, what: "ctctl's compare-and-delete for Calico's maps", path: path)
    }
}
