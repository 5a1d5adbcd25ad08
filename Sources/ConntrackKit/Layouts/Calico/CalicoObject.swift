import CLibBPF
import Glibc

/// ctctl's BPF object for Calico's maps (bpf/ctctl_calico.bpf.c): the compare-and-delete
/// (CalicoStager) and the service watch (CalicoWatcher) each load it with the programs they
/// run and Calico's maps they use.
enum CalicoObject {
    static let name = "ctctl-calico.bpf.o"
    static let environment = "CTCTL_CALICO_BPF_OBJECT"

    /// The object, opened and not yet loaded; `setUp` prepares it (maps reused, programs
    /// chosen). Closed again if `setUp` throws.
    static func open(_ setUp: (OpaquePointer, String) throws(CtctlError) -> Void) throws(CtctlError) -> (
        object: OpaquePointer, path: String
    ) {
        let path = try Loader.findObject(name, environment: environment)
        LibBPFLog.quiet()
        CLibBPF_clear_log()
        guard let obj = bpf_object__open_file(path, nil) else {
            throw CtctlError(.software, "cannot open BPF object \(path): \(Errno.current) \(Loader.libbpfLogTail(300))")
        }
        do throws(CtctlError) {
            try setUp(obj, path)
        } catch {
            bpf_object__close(obj)
            throw error
        }
        return (obj, path)
    }

    /// Puts Calico's own maps in place of the object's placeholders: for each family, the maps
    /// `pick` names by kind ("ct", "fe", "be"), as `<kind>_v4` / `<kind>_v6`.
    static func reuse(
        _ obj: OpaquePointer, path: String, _ families: [CalicoFamily], _ pick: (CalicoFamily) -> [(String, BPFMap)]
    ) throws(CtctlError) {
        for f in families {
            for (kind, map) in pick(f) {
                let name = kind + (f.format.v6 ? "_v6" : "_v4")
                guard let m = bpf_object__find_map_by_name(obj, name) else {
                    throw CtctlError(.badLayout, "\(path) is not ctctl's Calico object (no \(name)): rebuild it with this ctctl")
                }
                let r = bpf_map__reuse_fd(m, map.fd)
                if r != 0 { throw CtctlError.from(Errno(-r), doing: "using", path: map.path) }
            }
        }
    }

    /// The fds of a loaded object's two programs of one kind, by family (true: IPv6).
    static func programs(_ obj: OpaquePointer, v4: String, v6: String, path: String) throws(CtctlError) -> [Bool: Int32] {
        var fds: [Bool: Int32] = [:]
        for (family, name) in [(false, v4), (true, v6)] {
            guard let p = bpf_object__find_program_by_name(obj, name) else {
                throw CtctlError(.badLayout, "\(path) lacks its program \(name): rebuild it with this ctctl")
            }
            fds[family] = bpf_program__fd(p)
        }
        return fds
    }

    /// A dummy frame: the object's programs are TC programs (a sleepable program may not use
    /// Calico's LPM tries) that read and write only maps.
    private static let frame = [UInt8](repeating: 0, count: 64)

    /// Runs one of the object's programs once (BPF_PROG_TEST_RUN); its return value.
    static func run(_ fd: Int32, doing what: String, path: String) throws(CtctlError) -> UInt32 {
        var retval: UInt32 = 0
        var duration: UInt32 = 0
        do throws(Errno) {
            try Errno.bpf {
                frame.withUnsafeBytes {
                    CLibBPF_prog_test_run(fd, $0.baseAddress, UInt32($0.count), nil, nil, nil, 0, 1, &retval, &duration)
                }
            }
        } catch {
            throw CtctlError.from(error, doing: "running \(what)", path: path)
        }
        return retval
    }

    /// An array map of a loaded object, mapped into this process (BPF_F_MMAPABLE).
    final class Mapped<T> {
        let pointer: UnsafeMutablePointer<T>
        let length: Int

        init(_ obj: OpaquePointer, _ map: String, count: Int, path: String) throws(CtctlError) {
            guard let m = bpf_object__find_map_by_name(obj, map), bpf_map__value_size(m) == UInt32(MemoryLayout<T>.size)
            else {
                throw CtctlError(.badLayout, "\(path) has another \(map) layout: rebuild it with this ctctl")
            }
            let page = Int(getpagesize())
            length = (count * MemoryLayout<T>.stride + page - 1) / page * page
            guard let p = mmap(nil, length, PROT_READ | PROT_WRITE, MAP_SHARED, bpf_map__fd(m), 0), p != MAP_FAILED else {
                throw CtctlError.from(Errno.current, doing: "mapping \(map) of", path: path)
            }
            pointer = p.bindMemory(to: T.self, capacity: count)
        }

        deinit { munmap(pointer, length) }
    }
}
