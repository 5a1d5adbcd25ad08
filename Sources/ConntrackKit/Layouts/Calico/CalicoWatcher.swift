import CLibBPF
import Glibc

/// The watching heal's cheap look at Calico's services (bpf/include/ctctl_calico.h, "watch").
///
/// Calico has no service epoch, and a batch read of a frontend trie costs the kernel a key
/// walk, an allocation and a lookup per key, ten times a second. So the frontends and backends
/// are read in full only when something changed: their keys are staged in ctctl's own arrays,
/// and each poll runs one program per family (through BPF_PROG_TEST_RUN) that looks every
/// staged key up in Calico's maps and digests what it finds. A key added to a trie is not
/// among them: the trie's size (its fdinfo `memlock`, which counts entries from Linux 6.4 on)
/// shows it. The version moves on any difference, and the keys are read afresh.
final class CalicoWatcher {
    static let feCapacity = Int(CTCTL_CALICO_WATCH_FE)
    static let beCapacity = Int(CTCTL_CALICO_WATCH_BE)
    static let backendEveryNs: UInt64 = 1_000_000_000

    private let object: OpaquePointer
    private let programs: [Bool: Int32]
    private let feKeys: CalicoObject.Mapped<ctctl_calico_watch_key>
    private let beKeys: CalicoObject.Mapped<UInt64>
    private let control: CalicoObject.Mapped<ctctl_calico_watch>
    private let families: [CalicoFamily]
    /// The frame each run is given: a TC program needs one; this one reads none of it.
    private static let frame = [UInt8](repeating: 0, count: 64)

    /// What the last full read saw: the tries' sizes, and the digests of its keys then.
    private var sizes: [UInt64]? = nil
    private var feDigests: [UInt64] = []
    private var beDigests: [UInt64] = []
    private var backendsAt: UInt64 = 0
    private var version: UInt64 = 0

    /// Linux 6.4 and later count a trie's entries in its fdinfo; older kernels do not, and the
    /// watching heal reads the tries in full every poll there.
    static var kernelCountsTrieEntries: Bool {
        var u = utsname()
        uname(&u)
        let release = withUnsafeBytes(of: u.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        let parts = release.split(separator: ".").prefix(2).map { Int($0.prefix { $0.isNumber }) ?? 0 }
        return parts.count == 2 && (parts[0], parts[1]) >= (6, 4)
    }

    init(_ dp: CalicoDataplane) throws(CtctlError) {
        guard CalicoWatcher.kernelCountsTrieEntries else {
            throw CtctlError(.unavailable, "this kernel does not count an LPM trie's entries in its fdinfo (Linux 6.4 on does)")
        }
        families = dp.families
        let (obj, path) = try CalicoObject.open { obj, path throws(CtctlError) in
            for name in ["calico_stage_v4", "calico_stage_v6"] {
                if let p = bpf_object__find_program_by_name(obj, name) { bpf_program__set_autoload(p, false) }
            }
            for f in dp.families {
                let v = f.format.v6 ? "v6" : "v4"
                for (name, map) in [("fe_" + v, f.frontends), ("be_" + v, f.backends)] {
                    guard let m = bpf_object__find_map_by_name(obj, name) else {
                        throw CtctlError(
                            .badLayout, "\(path) is not ctctl's Calico object (no \(name)): rebuild it with this ctctl")
                    }
                    let r = bpf_map__reuse_fd(m, map.fd)
                    if r != 0 { throw CtctlError.from(Errno(-r), doing: "using", path: map.path) }
                }
            }
            // TC programs: the kernel wants CAP_NET_ADMIN besides CAP_BPF to load them
            try CalicoObject.load(
                obj, what: "ctctl's watch of Calico's services",
                denied: "loading ctctl's watch of Calico's services (a TC program) needs CAP_NET_ADMIN as well as CAP_BPF")
        }
        var ok = false
        defer { if !ok { bpf_object__close(obj) } }
        feKeys = try CalicoObject.Mapped(obj, "watch_fe", count: CalicoWatcher.feCapacity, path: path)
        beKeys = try CalicoObject.Mapped(obj, "watch_be", count: CalicoWatcher.beCapacity, path: path)
        control = try CalicoObject.Mapped(obj, "watch_ctl", count: 2, path: path)
        object = obj
        programs = try CalicoObject.programs(obj, v4: "calico_watch_v4", v6: "calico_watch_v6", path: path)
        ok = true
    }

    deinit { bpf_object__close(object) }

    /// The services' version: the same number until something in Calico's frontends or
    /// backends changed (backends looked at once a second).
    func serviceVersion() throws -> UInt64 {
        let now = Timestamp.monotonicNow()
        // the sizes first: a key added after this read makes the next poll's differ
        let current = try families.map { f throws(CtctlError) in try CalicoWatcher.memlock(f.frontends) }
        guard current == sizes else { return try restage(current, now) }
        let backends = now &- backendsAt >= CalicoWatcher.backendEveryNs
        let (fe, be) = try run(backends: backends)
        if fe != feDigests || (backends && be != beDigests) { return try restage(current, now) }
        if backends { backendsAt = now }
        return version
    }

    /// Reads every frontend and backend key afresh, stages them, and takes the digests they
    /// give now as the ones to compare with.
    private func restage(_ current: [UInt64], _ now: UInt64) throws -> UInt64 {
        var fe = 0
        var be = 0
        for f in families {
            let c = control.pointer + (f.format.v6 ? 1 : 0)
            c.pointee = ctctl_calico_watch()
            c.pointee.fe_start = UInt32(fe)
            try CalicoWatcher.readKeys(f.frontends, f.format.feKeySize, CalicoFormat.feValueSize) { key in
                guard fe < CalicoWatcher.feCapacity else {
                    throw CtctlError(.unavailable, "more than \(CalicoWatcher.feCapacity) frontends to watch")
                }
                withUnsafeMutableBytes(of: &feKeys.pointer[fe].key) {
                    $0.baseAddress!.copyMemory(from: key, byteCount: f.format.feKeySize)
                }
                fe += 1
            }
            c.pointee.fe_end = UInt32(fe)
            c.pointee.be_start = UInt32(be)
            try CalicoWatcher.readKeys(f.backends, CalicoFormat.beKeySize, f.format.beValueSize) { key in
                guard be < CalicoWatcher.beCapacity else {
                    throw CtctlError(.unavailable, "more than \(CalicoWatcher.beCapacity) backends to watch")
                }
                beKeys.pointer[be] = key.loadUnaligned(as: UInt64.self)
                be += 1
            }
            c.pointee.be_end = UInt32(be)
        }
        (feDigests, beDigests) = try run(backends: true)
        sizes = current
        backendsAt = now
        version &+= 1
        return version
    }

    /// One run of each family's program: its frontend digests, and backend digests if asked.
    private func run(backends: Bool) throws(CtctlError) -> (fe: [UInt64], be: [UInt64]) {
        var fe: [UInt64] = []
        var be: [UInt64] = []
        for f in families {
            let v6 = f.format.v6
            let c = control.pointer + (v6 ? 1 : 0)
            c.pointee.want_be = backends ? 1 : 0
            var retval: UInt32 = 0
            var duration: UInt32 = 0
            do throws(Errno) {
                try Errno.bpf {
                    CalicoWatcher.frame.withUnsafeBytes {
                        CLibBPF_prog_test_run(
                            programs[v6]!, $0.baseAddress, UInt32($0.count), nil, nil, nil, 0, 1, &retval, &duration)
                    }
                }
            } catch {
                throw CtctlError.from(error, doing: "running ctctl's watch of Calico's services over", path: f.frontends.path)
            }
            guard retval == 0 else {
                throw CtctlError(.software, "ctctl's watch of Calico's services refused its staged ranges (returned \(retval))")
            }
            fe.append(c.pointee.fe_digest)
            be.append(backends ? c.pointee.be_digest : 0)
        }
        return (fe, be)
    }

    /// Every key of `map`, one batch read.
    static func readKeys(_ map: BPFMap, _ keySize: Int, _ valueSize: Int, _ body: (UnsafeRawPointer) throws -> Void) throws {
        let reader = RawBatchReader(keySize: keySize, valueSize: valueSize, capacity: 4096)
        try reader.read(map) { n in
            for i in 0..<n { try body(reader.keys + i * keySize) }
            return true
        }
    }

    /// The map's `memlock` as its fdinfo reports it (for an LPM trie: its entries times their
    /// size, from Linux 6.4 on).
    static func memlock(_ map: BPFMap) throws(CtctlError) -> UInt64 {
        let path = "/proc/self/fdinfo/\(map.fd)"
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw CtctlError.from(Errno.current, doing: "reading", path: path) }
        defer { close(fd) }
        var buf = [UInt8](repeating: 0, count: 1024)
        let n = read(fd, &buf, buf.count)
        guard n > 0 else { throw CtctlError.from(Errno.current, doing: "reading", path: path) }
        let text = String(decoding: buf[..<n], as: UTF8.self)
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix("memlock:") }),
            let value = UInt64(line.dropFirst("memlock:".count).drop { $0 == " " || $0 == "\t" })
        else { throw CtctlError(.software, "\(path) has no memlock line") }
        return value
    }
}
