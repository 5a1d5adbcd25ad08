import CLibBPF
import Glibc

/// Kernel facts about an open map (BPF_OBJ_GET_INFO_BY_FD).
public struct MapInfo: Sendable {
    public let id: UInt32
    public let type: UInt32
    public let keySize: Int
    public let valueSize: Int
    public let maxEntries: UInt32
    public let flags: UInt32

    public var typeName: String {
        switch type {
        case BPF_MAP_TYPE_HASH.rawValue: return "hash"
        case BPF_MAP_TYPE_ARRAY.rawValue: return "array"
        case BPF_MAP_TYPE_PERCPU_ARRAY.rawValue: return "percpu_array"
        case BPF_MAP_TYPE_LRU_HASH.rawValue: return "lru_hash"
        default: return "type \(type)"
        }
    }
}

/// An open BPF map; closes its fd when released.
public final class BPFMap: @unchecked Sendable {
    public let fd: Int32
    public let path: String
    /// The pin's name in its directory.
    public var pin: String { path.split(separator: "/").last.map(String.init) ?? path }
    public let info: MapInfo
    public let readOnly: Bool

    init(fd: Int32, path: String, readOnly: Bool) throws(Errno) {
        self.fd = fd
        self.path = path
        self.readOnly = readOnly
        var raw = bpf_map_info()
        var len = UInt32(MemoryLayout<bpf_map_info>.size)
        do {
            try Errno.check { bpf_obj_get_info_by_fd(fd, &raw, &len) }
        } catch {
            close(fd)
            throw error
        }
        info = MapInfo(
            id: raw.id, type: raw.type, keySize: Int(raw.key_size), valueSize: Int(raw.value_size),
            maxEntries: raw.max_entries, flags: raw.map_flags)
    }

    deinit { close(fd) }

    /// Opens the map pinned at `path` and checks it against `spec`.
    /// Errors name the path and the fix; a layout mismatch is refused (exit 65).
    public static func open(_ path: String, spec: MapSpec, readOnly: Bool) throws(CtctlError) -> BPFMap {
        let map: BPFMap
        do {
            let fd = try Errno.check { CLibBPF_obj_get(path, readOnly ? 1 : 0) }
            map = try BPFMap(fd: fd, path: path, readOnly: readOnly)
        } catch {
            if error.code == ENOENT {
                throw CtctlError(.unavailable, "no map at \(path): is the dataplane loaded? (`ctctl dataplane load`)")
            }
            if error.code == EINVAL {
                throw CtctlError(.badLayout, "\(path) is not a BPF map: refusing to use it")
            }
            throw CtctlError.from(error, doing: "opening", path: path)
        }
        let i = map.info
        var problems: [String] = []
        if i.type != spec.type.rawValue {
            problems.append(
                "type \(i.typeName), expected \(MapInfo(id: 0, type: spec.type.rawValue, keySize: 0, valueSize: 0, maxEntries: 0, flags: 0).typeName)"
            )
        }
        if i.keySize != spec.keySize { problems.append("key size \(i.keySize), expected \(spec.keySize)") }
        if i.valueSize != spec.valueSize { problems.append("value size \(i.valueSize), expected \(spec.valueSize)") }
        if !problems.isEmpty {
            throw CtctlError(
                .badLayout,
                "\(path) has another layout (\(problems.joined(separator: ", "))): it was not made by this ctctl (map ABI \(CTCTL_ABI_VERSION)); refusing to use it"
            )
        }
        return map
    }

    // MARK: element access (raw, sizes checked at open)

    /// Copies the value for `key` into `value`; false if there is none.
    public func lookup(_ key: UnsafeRawPointer, into value: UnsafeMutableRawPointer) throws(Errno) -> Bool {
        do {
            try Errno.check { bpf_map_lookup_elem(fd, key, value) }
            return true
        } catch  where error.code == ENOENT {
            return false
        }
    }

    public func update(_ key: UnsafeRawPointer, _ value: UnsafeRawPointer, flags: UInt64 = UInt64(BPF_ANY)) throws(Errno) {
        try Errno.check { bpf_map_update_elem(fd, key, value, flags) }
    }

    /// Deletes `key`; false if it was not there.
    @discardableResult
    public func delete(_ key: UnsafeRawPointer) throws(Errno) -> Bool {
        do {
            try Errno.check { bpf_map_delete_elem(fd, key) }
            return true
        } catch  where error.code == ENOENT {
            return false
        }
    }

    /// Typed helpers for the small fixed-layout maps.
    public func lookup<K, V>(_ key: K, as: V.Type) throws(Errno) -> V? {
        var k = key
        let v = UnsafeMutablePointer<V>.allocate(capacity: 1)
        defer { v.deallocate() }
        let found = try withUnsafeBytes(of: &k) { (kp) throws(Errno) -> Bool in try lookup(kp.baseAddress!, into: v) }
        return found ? v.move() : nil
    }

    public func update<K, V>(_ key: K, _ value: V, flags: UInt64 = UInt64(BPF_ANY)) throws(Errno) {
        var k = key
        var v = value
        try withUnsafeBytes(of: &k) { (kp) throws(Errno) in
            try withUnsafeBytes(of: &v) { (vp) throws(Errno) in try update(kp.baseAddress!, vp.baseAddress!, flags: flags) }
        }
    }

    @discardableResult
    public func delete<K>(_ key: K) throws(Errno) -> Bool {
        var k = key
        return try withUnsafeBytes(of: &k) { (kp) throws(Errno) -> Bool in try delete(kp.baseAddress!) }
    }

    /// Maps the map's value area (BPF_F_MMAPABLE arrays): shared with the kernel.
    public func mmapValues(length: Int) throws(Errno) -> UnsafeMutableRawPointer {
        let prot = readOnly ? PROT_READ : PROT_READ | PROT_WRITE
        guard let p = mmap(nil, length, prot, MAP_SHARED, fd, 0), p != MAP_FAILED else {
            throw Errno(errno)
        }
        return p
    }
}
