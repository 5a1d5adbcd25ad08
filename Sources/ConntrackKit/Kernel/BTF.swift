import CLibBPF
import Glibc

/// A map's BTF (its creator's type information), loaded from the kernel by id: what a layout
/// checks another dataplane's maps against, member by member.
final class BTF {
    private let handle: UnsafeMutableRawPointer

    /// Loads BTF object `id`. Needs CAP_SYS_ADMIN: without it the error's `errno` is EPERM
    /// and the caller reports the layout as "BTF not checked".
    init(id: UInt32, forMap path: String) throws(CtctlError) {
        var err: Int32 = 0
        guard let h = CLibBPF_btf_load(id, &err) else {
            throw CtctlError.from(Errno(-err), doing: "loading the BTF of", path: path)
        }
        handle = h
    }

    deinit { CLibBPF_btf_free(handle) }

    /// The name of type `id` (past typedefs), nil if there is none.
    func typeName(_ id: UInt32) -> String? { CLibBPF_btf_type_name(handle, id).map { String(cString: $0) } }

    func structSize(_ name: String) -> Int? {
        let n = CLibBPF_btf_struct_size(handle, name)
        return n < 0 ? nil : Int(n)
    }

    /// Member `member` of struct `name` (through anonymous members): bit offset and size.
    func member(_ name: String, _ member: String) -> (bitOffset: Int, bits: Int)? {
        var off: UInt32 = 0
        var bits: UInt32 = 0
        guard CLibBPF_btf_member(handle, name, member, &off, &bits) == 0 else { return nil }
        return (Int(off), Int(bits))
    }
}

/// What a layout expects of a struct in a map's BTF: its name, size, and members at byte
/// offsets with byte sizes.
struct BTFExpectation {
    let structName: String
    let size: Int
    let members: [(name: String, offset: Int, size: Int)]

    /// The differences between `btf` and this expectation, one phrase each ("calico_ct_value.
    /// last_seen is 64 bits at bit 96, ctctl reads 64 bits at bit 64"). `typeID`: the map's
    /// key or value type, which must be this struct (nil: a struct inside one, by name).
    func problems(in btf: BTF, typeID: UInt32?) -> [String] {
        var out: [String] = []
        if let typeID, case let name = btf.typeName(typeID), name != structName {
            return ["its BTF type is \(name.map { "'\($0)'" } ?? "missing"), ctctl reads struct \(structName)"]
        }
        guard let s = btf.structSize(structName) else { return ["its BTF has no struct \(structName)"] }
        if s != size { out.append("struct \(structName) is \(s) bytes, ctctl reads \(size)") }
        for m in members {
            guard let found = btf.member(structName, m.name) else {
                out.append("struct \(structName) has no member \(m.name)")
                continue
            }
            if found.bitOffset != m.offset * 8 || found.bits != m.size * 8 {
                out.append(
                    "\(structName).\(m.name) is \(found.bits) bits at bit \(found.bitOffset), ctctl reads \(m.size * 8) bits at bit \(m.offset * 8)"
                )
            }
        }
        return out
    }
}
