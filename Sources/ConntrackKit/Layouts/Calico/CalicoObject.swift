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

    /// Loads the object; a refusal names `what`, and a permission refusal (not the verifier's)
    /// says `denied`.
    static func load(_ obj: OpaquePointer, what: String, denied: String) throws(CtctlError) {
        let r = bpf_object__load(obj)
        guard r != 0 else { return }
        let e = Errno(-r)
        let log = Loader.libbpfLogTail()
        if e.isPermission && !log.contains("PROG LOAD LOG") { throw CtctlError(.noPermission, denied) }
        throw CtctlError(.software, "the kernel refused \(what) (\(e)): \(log)")
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
