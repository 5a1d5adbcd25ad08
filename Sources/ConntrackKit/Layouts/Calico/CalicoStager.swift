import CLibBPF
import Glibc

/// ctctl's compare-and-delete program for Calico's conntrack maps (bpf/ctctl_calico.bpf.c),
/// loaded for one command with Calico's own map fds in place of its placeholders, and
/// unloaded when the command ends: nothing is pinned, nothing is created in Calico's
/// directory. Up to CTCTL_CALICO_STAGE_SLOTS entries a run, one BPF_PROG_TEST_RUN each.
final class CalicoStager {
    static let capacity = Int(CTCTL_CALICO_STAGE_SLOTS)
    private let object: OpaquePointer
    private let programs: [Bool: Int32]
    private let stage: CalicoObject.Mapped<ctctl_calico_slot>
    var slots: UnsafeMutablePointer<ctctl_calico_slot> { stage.pointer }
    let path: String

    /// `dp` must hold writable fds to Calico's conntrack maps, and the caller the writers' lock.
    init(_ dp: CalicoDataplane, lock: WriterLock) throws(CtctlError) {
        try dp.verify(holding: lock)
        let (obj, path) = try CalicoObject.open { obj, path throws(CtctlError) in
            for f in dp.families {
                guard let m = bpf_object__find_map_by_name(obj, f.format.v6 ? "ct_v6" : "ct_v4") else {
                    throw CtctlError(.badLayout, "\(path) is not ctctl's Calico object (no ct map): rebuild it with this ctctl")
                }
                let r = bpf_map__reuse_fd(m, f.ct.fd)
                if r != 0 { throw CtctlError.from(Errno(-r), doing: "using", path: f.ct.path) }
            }
            // the watch (CalicoWatcher) is not this command's: its programs stay unloaded and
            // its arrays one slot long
            for name in ["calico_watch_v4", "calico_watch_v6"] {
                if let p = bpf_object__find_program_by_name(obj, name) { bpf_program__set_autoload(p, false) }
            }
            for name in ["watch_fe", "watch_be"] {
                if let m = bpf_object__find_map_by_name(obj, name) { bpf_map__set_max_entries(m, 1) }
            }
            try CalicoObject.load(
                obj, what: "ctctl's compare-and-delete for Calico's maps",
                denied: "permission denied loading ctctl's Calico program: \(CtctlError.privilegeHint)")
        }
        var ok = false
        defer { if !ok { bpf_object__close(obj) } }
        stage = try CalicoObject.Mapped(obj, "stage", count: CalicoStager.capacity, path: path)
        self.path = path
        object = obj
        programs = try CalicoObject.programs(obj, v4: "calico_stage_v4", v6: "calico_stage_v6", path: path)
        ok = true
    }

    deinit { bpf_object__close(object) }

    /// Runs the family's program over slots 0..<count; the results are in the slots.
    func run(v6: Bool, count: Int) throws(CtctlError) {
        _ = try runStageProgram(
            programs[v6]!, count: count, what: "ctctl's compare-and-delete for Calico's maps", path: path)
    }
}
