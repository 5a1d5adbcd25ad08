import CLibBPF
import Glibc

/// The kernel id of a BPF object (map or program) open at `fd`: bpf_map_info and
/// bpf_prog_info both start with `type` then `id`, and the kernel fills what fits.
func objectID(fd: Int32, path: String) throws(CtctlError) -> UInt32 {
    var head: (UInt32, UInt32) = (0, 0)
    var len = UInt32(MemoryLayout<(UInt32, UInt32)>.size)
    do { try Errno.bpf { bpf_obj_get_info_by_fd(fd, &head, &len) } } catch {
        throw CtctlError.from(error, doing: "inspecting", path: path)
    }
    return head.1
}

/// The kernel id of the object pinned at `path` now, or nil if nothing is pinned there.
func pinnedID(_ path: String) throws(CtctlError) -> UInt32? {
    let fd: FileDescriptor
    do { fd = FileDescriptor(owning: try Errno.bpf { CLibBPF_obj_get(path, 1) }) } catch {
        if error.code == ENOENT { return nil }
        throw CtctlError.from(error, doing: "checking", path: path)
    }
    return try objectID(fd: fd.raw, path: path)
}

/// Opens the program pinned at `path` (a BPF_OBJ_GET of a program: read-write). `missing`:
/// what to tell the operator when nothing is pinned there.
func openProgram(_ path: String, missing: String) throws(CtctlError) -> FileDescriptor {
    do { return FileDescriptor(owning: try Errno.bpf { CLibBPF_obj_get(path, 0) }) } catch {
        if error.code == ENOENT { throw CtctlError(.unavailable, missing) }
        throw CtctlError.from(error, doing: "opening program", path: path)
    }
}
