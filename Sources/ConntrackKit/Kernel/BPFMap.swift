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
    /// The map's BTF, if it was created with one (0 otherwise).
    public let btfID: UInt32
    public let btfKeyTypeID: UInt32
    public let btfValueTypeID: UInt32

    public var typeName: String { MapInfo.typeName(type) }

    public static func typeName(_ type: UInt32) -> String {
        switch type {
        case BPF_MAP_TYPE_HASH.rawValue: return "hash"
        case BPF_MAP_TYPE_ARRAY.rawValue: return "array"
        case BPF_MAP_TYPE_PERCPU_ARRAY.rawValue: return "percpu_array"
        case BPF_MAP_TYPE_LRU_HASH.rawValue: return "lru_hash"
        case BPF_MAP_TYPE_LPM_TRIE.rawValue: return "lpm_trie"
        case BPF_MAP_TYPE_PERCPU_HASH.rawValue: return "percpu_hash"
        case BPF_MAP_TYPE_LRU_PERCPU_HASH.rawValue: return "lru_percpu_hash"
        default: return "type \(type)"
        }
    }
}

/// An open BPF map; its fd closes when it is released. Every error it throws names the
/// map and what was being done, and carries the errno.
public final class BPFMap: @unchecked Sendable {
    private let owner: FileDescriptor
    public var fd: Int32 { owner.raw }
    public let path: String
    /// The pin's name in its directory.
    public var pin: String { path.split(separator: "/").last.map(String.init) ?? path }
    public let info: MapInfo
    public let readOnly: Bool

    public init(owning fd: FileDescriptor, path: String, readOnly: Bool) throws(CtctlError) {
        owner = fd
        self.path = path
        self.readOnly = readOnly
        var raw = bpf_map_info()
        var len = UInt32(MemoryLayout<bpf_map_info>.size)
        do {
            try Errno.bpf { bpf_obj_get_info_by_fd(fd.raw, &raw, &len) }
        } catch {
            if error.code == EINVAL { throw CtctlError(.badLayout, "\(path) is not a BPF map: refusing to use it") }
            throw CtctlError.from(error, doing: "inspecting", path: path)
        }
        info = MapInfo(
            id: raw.id, type: raw.type, keySize: Int(raw.key_size), valueSize: Int(raw.value_size),
            maxEntries: raw.max_entries, flags: raw.map_flags, btfID: raw.btf_id, btfKeyTypeID: raw.btf_key_type_id,
            btfValueTypeID: raw.btf_value_type_id)
    }

    /// Opens the map pinned at `path` (BPF_F_RDONLY when `readOnly`). `missing`: what to
    /// tell the operator when nothing is pinned there.
    public static func open(_ path: String, readOnly: Bool, missing: String? = nil) throws(CtctlError) -> BPFMap {
        let fd: Int32
        do { fd = try Errno.bpf { CLibBPF_obj_get(path, readOnly ? 1 : 0) } } catch {
            if error.code == ENOENT { throw CtctlError(.unavailable, missing ?? "no map at \(path)") }
            if error.code == EINVAL { throw CtctlError(.badLayout, "\(path) is not a BPF map: refusing to use it") }
            throw CtctlError.from(error, doing: "opening", path: path)
        }
        return try BPFMap(owning: FileDescriptor(owning: fd), path: path, readOnly: readOnly)
    }

    /// Refuses a map whose type, key size or value size is not what a layout reads
    /// (exit 65): nothing is read from it or written to it. `whose`: what it was expected
    /// to be, for the message.
    public func expect(type: bpf_map_type, keySize: Int, valueSize: Int, whose: String) throws(CtctlError) {
        var problems: [String] = []
        if info.type != type.rawValue { problems.append("type \(info.typeName), expected \(MapInfo.typeName(type.rawValue))") }
        if info.keySize != keySize { problems.append("key size \(info.keySize), expected \(keySize)") }
        if info.valueSize != valueSize { problems.append("value size \(info.valueSize), expected \(valueSize)") }
        if !problems.isEmpty {
            throw CtctlError(
                .badLayout,
                "\(path) has another layout (\(problems.joined(separator: ", "))): it is not \(whose); refusing to use it")
        }
    }

    func failed(_ error: Errno, _ doing: String) -> CtctlError { CtctlError.from(error, doing: doing, path: path) }

    // MARK: element access (raw, sizes checked at open)

    /// Copies the value for `key` into `value`; false if there is none.
    public func lookup(_ key: UnsafeRawPointer, into value: UnsafeMutableRawPointer) throws(CtctlError) -> Bool {
        do {
            try Errno.bpf { bpf_map_lookup_elem(fd, key, value) }
            return true
        } catch  where error.code == ENOENT {
            return false
        } catch {
            throw failed(error, "reading")
        }
    }

    public func update(_ key: UnsafeRawPointer, _ value: UnsafeRawPointer, flags: UInt64 = UInt64(BPF_ANY)) throws(CtctlError) {
        do { try Errno.bpf { bpf_map_update_elem(fd, key, value, flags) } } catch { throw failed(error, "writing") }
    }

    /// Deletes `key`; false if it was not there.
    @discardableResult
    public func delete(_ key: UnsafeRawPointer) throws(CtctlError) -> Bool {
        do {
            try Errno.bpf { bpf_map_delete_elem(fd, key) }
            return true
        } catch  where error.code == ENOENT {
            return false
        } catch {
            throw failed(error, "deleting from")
        }
    }

    /// Typed helpers for the small fixed-layout maps.
    public func lookup<K, V>(_ key: K, as: V.Type) throws(CtctlError) -> V? {
        let v = UnsafeMutablePointer<V>.allocate(capacity: 1)
        defer { v.deallocate() }
        let found = try withUnsafeBytes(of: key) { (kp) throws(CtctlError) -> Bool in try lookup(kp.baseAddress!, into: v) }
        return found ? v.move() : nil
    }

    public func update<K, V>(_ key: K, _ value: V, flags: UInt64 = UInt64(BPF_ANY)) throws(CtctlError) {
        try withUnsafeBytes(of: key) { (kp) throws(CtctlError) in
            try withUnsafeBytes(of: value) { (vp) throws(CtctlError) in try update(kp.baseAddress!, vp.baseAddress!, flags: flags)
            }
        }
    }

    @discardableResult
    public func delete<K>(_ key: K) throws(CtctlError) -> Bool {
        try withUnsafeBytes(of: key) { (kp) throws(CtctlError) -> Bool in try delete(kp.baseAddress!) }
    }

    /// Maps the map's value area (BPF_F_MMAPABLE arrays): shared with the kernel.
    public func mmapValues(length: Int) throws(CtctlError) -> UnsafeMutableRawPointer {
        let prot = readOnly ? PROT_READ : PROT_READ | PROT_WRITE
        guard let p = mmap(nil, length, prot, MAP_SHARED, fd, 0), p != MAP_FAILED else {
            throw failed(Errno.current, "mapping")
        }
        return p
    }
}
