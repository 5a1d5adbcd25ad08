import CLibBPF
import Glibc

/// The kernel id of a BPF object (map or program) open at `fd`: bpf_map_info and
/// bpf_prog_info both start with `type` then `id`, and the kernel fills what fits.
func objectID(fd: Int32) throws(Errno) -> UInt32 {
    var head: (UInt32, UInt32) = (0, 0)
    var len = UInt32(MemoryLayout<(UInt32, UInt32)>.size)
    try Errno.check { bpf_obj_get_info_by_fd(fd, &head, &len) }
    return head.1
}

/// The kernel id of the object pinned at `path` now, or nil if nothing is pinned there.
func pinnedID(_ path: String) throws(Errno) -> UInt32? {
    let fd: Int32
    do { fd = try Errno.check { CLibBPF_obj_get(path, 1) } } catch  where error.code == ENOENT { return nil }
    defer { close(fd) }
    return try objectID(fd: fd)
}
