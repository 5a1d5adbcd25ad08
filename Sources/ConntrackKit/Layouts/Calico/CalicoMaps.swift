import CLibBPF
import Glibc

/// One address family's Calico maps, opened and verified: conntrack, NAT frontends, NAT
/// backends and routes.
final class CalicoFamily: @unchecked Sendable {
    let format: CalicoFormat
    let ct: BPFMap
    let generation: CalicoGeneration
    let frontends: BPFMap
    let backends: BPFMap
    let routes: BPFMap
    /// The conntrack map's bucket count (nil: read it with one thread).
    lazy var ctBuckets: UInt32? = RawBatchReader.bucketCount(ct)

    init(format: CalicoFormat, ct: BPFMap, generation: CalicoGeneration, frontends: BPFMap, backends: BPFMap, routes: BPFMap) {
        self.format = format
        self.ct = ct
        self.generation = generation
        self.frontends = frontends
        self.backends = backends
        self.routes = routes
    }

    var maps: [BPFMap] { [ct, frontends, backends, routes] }

    func entry(_ key: UnsafeRawPointer, _ value: UnsafeRawPointer) -> CalicoEntry {
        CalicoEntry(key, value, format, generation)
    }
}

/// One thread's buffers for lookups by key in Calico's conntrack maps, both families.
public final class CalicoScratch {
    final class Buffers {
        let key: UnsafeMutableRawPointer
        let value: UnsafeMutableRawPointer
        let partnerKey: UnsafeMutableRawPointer
        let partnerValue: UnsafeMutableRawPointer

        init(_ f: CalicoFormat) {
            key = .allocate(byteCount: f.keySize, alignment: 8)
            value = .allocate(byteCount: f.valueSize, alignment: 8)
            partnerKey = .allocate(byteCount: f.keySize, alignment: 8)
            partnerValue = .allocate(byteCount: f.valueSize, alignment: 8)
        }

        deinit {
            key.deallocate()
            value.deallocate()
            partnerKey.deallocate()
            partnerValue.deallocate()
        }
    }

    let v4 = Buffers(CalicoFormat(v6: false))
    let v6 = Buffers(CalicoFormat(v6: true))

    @inline(__always) func of(_ v6: Bool) -> Buffers { v6 ? self.v6 : v4 }
}

/// Opening Calico's maps: which exist, which conntrack generation the datapath uses, and
/// whether each map is what ctctl reads (type, sizes, flags; with BTF, every member).
struct CalicoOpener {
    let dir: PinDirectory
    let readOnly: Bool
    let version: CalicoVersion?
    var caveats: [String] = []
    var notes: [String] = []
    /// ct3 maps whose Calico version (v3.29 or v3.30) they cannot tell.
    var unknownVersion: [String] = []
    /// Whether some map's BTF could not be read (no CAP_SYS_ADMIN).
    var btfUnchecked = false
    var btfChecked = false

    func exists(_ pin: String) -> Bool {
        var st = stat()
        return stat(dir.pin(pin), &st) == 0
    }

    mutating func open(v6: Bool) throws(CtctlError) -> CalicoFamily? {
        let format = CalicoFormat(v6: v6)
        let has3 = exists(Calico.ctPin(v6, 3))
        let has4 = exists(Calico.ctPin(v6, 4))
        guard has3 || has4 else { return nil }
        var gen = has4 ? 4 : 3
        if has3 && has4 { gen = try chooseGeneration(v6: v6, format: format) }
        let ct = try openMap(Calico.ctPin(v6, gen), writable: true)
        let expectedType = gen == 4 ? BPF_MAP_TYPE_LRU_HASH : BPF_MAP_TYPE_HASH
        try ct.expect(
            type: expectedType, keySize: format.keySize, valueSize: format.valueSize, whose: "Calico's conntrack map")
        try expectFlags(ct, gen == 4 ? 0 : UInt32(BPF_F_NO_PREALLOC), "Calico's conntrack map")
        try checkBTF(ct, key: format.ctKeyBTF, value: format.ctValueBTF, also: [CalicoFormat.legBTF], required: gen == 4)
        let generation = try self.generation(ct, gen: gen, format: format)

        let fe = try openMap(Calico.frontendPin(v6), writable: false)
        try fe.expect(
            type: BPF_MAP_TYPE_LPM_TRIE, keySize: format.feKeySize, valueSize: CalicoFormat.feValueSize,
            whose: "Calico's NAT frontend map")
        try checkBTF(fe, key: format.feKeyBTF, value: CalicoFormat.feValueBTF, also: [], required: false)
        let be = try openMap(Calico.backendPin(v6), writable: false)
        try be.expect(
            type: BPF_MAP_TYPE_HASH, keySize: CalicoFormat.beKeySize, valueSize: format.beValueSize,
            whose: "Calico's NAT backend map")
        try checkBTF(be, key: CalicoFormat.beKeyBTF, value: format.beValueBTF, also: [], required: false)
        let rt = try openMap(Calico.routesPin(v6), writable: false)
        try rt.expect(
            type: BPF_MAP_TYPE_LPM_TRIE, keySize: format.rtKeySize, valueSize: format.rtValueSize,
            whose: "Calico's routes map")
        try checkBTF(rt, key: format.rtKeyBTF, value: format.rtValueBTF, also: [], required: false)
        return CalicoFamily(format: format, ct: ct, generation: generation, frontends: fe, backends: be, routes: rt)
    }

    /// ctctl writes only conntrack maps (and only with the writers' lock); the NAT and route
    /// maps are felix's and always opened read-only.
    func openMap(_ pin: String, writable: Bool) throws(CtctlError) -> BPFMap {
        try BPFMap.open(
            dir.pin(pin), readOnly: readOnly || !writable,
            missing: "no \(pin) at \(dir.path): Calico's maps are incomplete (is calico-node running with the eBPF dataplane?)")
    }

    func expectFlags(_ map: BPFMap, _ flags: UInt32, _ whose: String) throws(CtctlError) {
        // felix sets exactly these; other bits would mean another creator
        guard map.info.flags & ~UInt32(BPF_F_RDONLY | BPF_F_WRONLY) == flags else {
            throw CtctlError(
                .badLayout,
                "\(map.path) has map flags 0x\(String(map.info.flags, radix: 16)), expected 0x\(String(flags, radix: 16)): it is not \(whose); refusing to use it"
            )
        }
    }

    /// With BTF, every member ctctl reads must be where ctctl reads it (exit 65 naming the
    /// map and the field otherwise). Without the privilege to read BTF, say so.
    mutating func checkBTF(
        _ map: BPFMap, key: BTFExpectation, value: BTFExpectation, also: [BTFExpectation], required: Bool
    ) throws(CtctlError) {
        guard map.info.btfID != 0 else {
            if required {
                caveats.append(
                    "\(map.pin) carries no BTF (felix v3.31+ creates it with BTF): its layout was checked by type, sizes and flags only"
                )
            }
            return
        }
        let btf: BTF
        do { btf = try BTF(id: map.info.btfID, forMap: map.path) } catch {
            if error.errno == EPERM || error.errno == EACCES {
                btfUnchecked = true
                return
            }
            throw error
        }
        var problems = key.problems(in: btf, typeID: map.info.btfKeyTypeID)
        problems += value.problems(in: btf, typeID: map.info.btfValueTypeID)
        for s in also { problems += s.problems(in: btf, typeID: nil) }
        if !problems.isEmpty {
            throw CtctlError(
                .badLayout,
                "\(map.path) does not have the layout ctctl reads: \(problems.joined(separator: "; ")): refusing to use it")
        }
        btfChecked = true
    }

    /// Which conntrack generation the datapath uses when felix left both pinned (an upgrade
    /// in progress): the one its loaded programs reference, else the one written last.
    mutating func chooseGeneration(v6: Bool, format: CalicoFormat) throws(CtctlError) -> Int {
        let m3 = try BPFMap.open(dir.pin(Calico.ctPin(v6, 3)), readOnly: true)
        let m4 = try BPFMap.open(dir.pin(Calico.ctPin(v6, 4)), readOnly: true)
        if let used = CalicoOpener.usedByPrograms([m3.info.id, m4.info.id]) {
            let gen = used == m4.info.id ? 4 : 3
            notes.append(
                "both \(m3.pin) and \(m4.pin) are pinned (an upgrade in progress?): using \(gen == 4 ? m4.pin : m3.pin), the one Calico's programs use"
            )
            return gen
        }
        let last3 = CalicoOpener.lastSeen(m3, format)
        let last4 = CalicoOpener.lastSeen(m4, format)
        let gen = last4 >= last3 ? 4 : 3
        notes.append(
            "both \(m3.pin) and \(m4.pin) are pinned (an upgrade in progress?): using \(gen == 4 ? m4.pin : m3.pin), the one written to last (the programs that use them could not be listed)"
        )
        return gen
    }

    /// The first of `ids` a loaded BPF program references; nil if none does or programs
    /// cannot be listed (that needs CAP_SYS_ADMIN).
    static func usedByPrograms(_ ids: [UInt32]) -> UInt32? {
        var id: UInt32 = 0
        var maps = [UInt32](repeating: 0, count: 64)
        var steps = 0
        while CLibBPF_prog_next_id(id, &id) == 0 && steps < 100_000 {
            steps += 1
            let n = CLibBPF_prog_map_ids(id, &maps, UInt32(maps.count))
            guard n > 0 else { continue }
            for m in maps.prefix(Int(min(n, Int32(maps.count)))) where ids.contains(m) { return m }
        }
        return nil
    }

    /// The newest last_seen in the map's first batch.
    static func lastSeen(_ map: BPFMap, _ format: CalicoFormat) -> UInt64 {
        let reader = RawBatchReader(keySize: format.keySize, valueSize: format.valueSize, capacity: 4096)
        var newest: UInt64 = 0
        try? reader.read(map) { n in
            for i in 0..<n {
                let t = reader.values.loadUnaligned(fromByteOffset: i * format.valueSize + CalicoFormat.lastSeen, as: UInt64.self)
                newest = max(newest, t)
            }
            return false
        }
        return newest
    }

    /// The conntrack generation: ct4 is v3.31+; ct3 is v3.29 or v3.30, told apart by
    /// --calico-version or by the workload bit v3.30 sets in a workload's leg.
    mutating func generation(_ ct: BPFMap, gen: Int, format: CalicoFormat) throws(CtctlError) -> CalicoGeneration {
        if gen == 4 {
            if let version, version < CalicoVersion(3, 31) {
                throw CtctlError(
                    .badLayout,
                    "\(ct.path) is a Calico v3.31+ map (ct4), but --calico-version says \(version): refusing to guess which is wrong"
                )
            }
            return .ct4
        }
        if let version {
            if version >= CalicoVersion(3, 31) {
                throw CtctlError(
                    .badLayout,
                    "\(ct.path) is a Calico v3.29/v3.30 map (ct3), but --calico-version says \(version): refusing to guess which is wrong"
                )
            }
            return version < CalicoVersion(3, 30) ? .ct3v329 : .ct3v330
        }
        if CalicoOpener.workloadBitSeen(ct, format) { return .ct3v330 }
        unknownVersion.append(ct.pin)
        return .ct3Unknown
    }

    /// Does a leg of an entry in the first batch carry the workload bit (v3.30 and later)?
    static func workloadBitSeen(_ map: BPFMap, _ format: CalicoFormat) -> Bool {
        let reader = RawBatchReader(keySize: format.keySize, valueSize: format.valueSize, capacity: 4096)
        var seen = false
        try? reader.read(map) { n in
            for i in 0..<n where !seen {
                let v = reader.values + i * format.valueSize
                guard v.load(fromByteOffset: CalicoFormat.type, as: UInt8.self) != Calico.typeNATForward else { continue }
                for leg in [CalicoFormat.legAB, CalicoFormat.legBA] {
                    let bits = v.loadUnaligned(fromByteOffset: leg + CalicoFormat.legBits, as: UInt32.self)
                    if bits & Calico.legWorkload != 0 { seen = true }
                }
            }
            return false
        }
        return seen
    }
}

/// A Calico version as `--calico-version` takes it: v3.29, 3.30.2, v3.31 ...
public struct CalicoVersion: Comparable, Sendable, CustomStringConvertible {
    public let major: Int
    public let minor: Int

    public init(_ major: Int, _ minor: Int) {
        self.major = major
        self.minor = minor
    }

    public init?(_ text: String) {
        var t = Substring(text)
        if t.hasPrefix("v") { t = t.dropFirst() }
        let parts = t.split(separator: ".")
        guard parts.count >= 2, parts.count <= 3, let a = Int(parts[0]), let b = Int(parts[1]),
            parts.count < 3 || Int(parts[2]) != nil
        else { return nil }
        self.init(a, b)
    }

    public static func < (x: CalicoVersion, y: CalicoVersion) -> Bool { (x.major, x.minor) < (y.major, y.minor) }
    public var description: String { "v\(major).\(minor)" }
}
