import CLibBPF
import Glibc

/// How `ctctl dataplane load` configures the datapath (set before load, then frozen).
public struct LoadOptions: Sendable {
    public var ctSize: UInt32 = CTCTL_CT_DEFAULT_ENTRIES
    public var serviceEpoch = true
    public var timeouts = Timeouts()

    public init() {}
}

/// Finds, loads, pins and unpins the dataplane's BPF object.
public enum Loader {
    public static let objectName = "ctctl.bpf.o"
    public static let objectEnvironment = "CTCTL_BPF_OBJECT"

    /// Every pin a loaded dataplane has, and nothing else: unload removes exactly these.
    public static var allPins: [String] { MapSpec.all.map(\.pin) + ProgramSpec.all.map(\.pin) }

    /// The BPF object: $CTCTL_BPF_OBJECT, else beside the executable, else in
    /// ../lib/ctctl/ relative to it (the installed layout). Never the source tree.
    public static func findObject() throws(CtctlError) -> String {
        try findObject(objectName, environment: objectEnvironment)
    }

    /// A BPF object ctctl ships, by name: `$environment`, else beside the executable, else in
    /// ../lib/ctctl/.
    static func findObject(_ name: String, environment: String) throws(CtctlError) -> String {
        if let env = getenv(environment), env.pointee != 0 {
            let p = String(cString: env)
            guard access(p, R_OK) == 0 else {
                throw CtctlError(.unavailable, "\(environment)=\(p) is not a readable file")
            }
            return p
        }
        let exeDir = executableDirectory()
        let candidates = [exeDir + "/" + name, exeDir + "/../lib/ctctl/" + name]
        for c in candidates where access(c, R_OK) == 0 { return c }
        throw CtctlError(
            .unavailable,
            "the BPF object \(name) is not installed (looked in \(candidates.joined(separator: " and "))): run `make install`, or set \(environment)"
        )
    }

    static func executableDirectory() -> String {
        var buf = [CChar](repeating: 0, count: Int(PATH_MAX))
        let n = readlink("/proc/self/exe", &buf, buf.count - 1)
        guard n > 0 else { return "." }
        let exe = String(decoding: buf[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        guard let slash = exe.lastIndex(of: "/") else { return "." }
        return String(exe[..<slash])
    }

    static func libbpfLogTail(_ limit: Int = 1500) -> String {
        var buf = [CChar](repeating: 0, count: limit)
        CLibBPF_copy_log(&buf, UInt32(limit))
        let n = buf.firstIndex(of: 0) ?? buf.count
        return String(decoding: buf[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Loads the object, configures it, pins every map and program under `pinDir`.
    /// On any failure it removes what it pinned: a failed load changes nothing.
    public static func load(_ pinDir: PinDirectory, options: LoadOptions, objectPath: String? = nil) throws(CtctlError) {
        guard options.ctSize >= 1024 else {
            throw .usage("--ct-size \(options.ctSize) is too small: at least 1024 entries")
        }
        try pinDir.ensureBPFFS()
        if pinDir.exists {
            var st = stat()
            if stat(pinDir.pin(CTCTL_PIN_CONFIG), &st) == 0 {
                throw CtctlError(
                    .software,
                    "a dataplane is already loaded at \(pinDir.path): use it, or `ctctl dataplane unload --pin-dir \(pinDir.path)` first"
                )
            }
            if let leftover = directoryEntries(pinDir.path).first {
                throw CtctlError(
                    .software,
                    "\(pinDir.path) is not empty (it holds '\(leftover)') and is not a ctctl dataplane: choose another --pin-dir")
            }
        }
        let path = if let objectPath { objectPath } else { try findObject() }
        LibBPFLog.quiet()
        CLibBPF_clear_log()
        guard let obj = bpf_object__open_file(path, nil) else {
            throw CtctlError(.software, "cannot open BPF object \(path): \(Errno.current) \(libbpfLogTail(300))")
        }
        defer { bpf_object__close(obj) }

        guard let rodata = bpf_object__find_map_by_name(obj, ".rodata"),
            let ct = bpf_object__find_map_by_name(obj, "ct")
        else {
            throw CtctlError(.badLayout, "\(path) is not the ctctl dataplane object (no .rodata or ct map)")
        }
        var size = 0
        guard bpf_map__initial_value(rodata, &size) != nil, size == MemoryLayout<ctctl_config>.size else {
            throw CtctlError(
                .badLayout,
                "\(path) has a .rodata of \(size) bytes, expected \(MemoryLayout<ctctl_config>.size): rebuild it with this ctctl")
        }
        var cfg = ctctl_config()
        cfg.magic = CTCTL_MAGIC
        cfg.abi_version = CTCTL_ABI_VERSION
        cfg.flags = options.serviceEpoch ? CTCTL_CFG_F_SERVICE_EPOCH : 0
        cfg.timeout_ns = (options.timeouts.udp, options.timeouts.tcp, options.timeouts.tcpClosing, options.timeouts.other)
        var ret = bpf_map__set_initial_value(rodata, &cfg, MemoryLayout<ctctl_config>.size)
        if ret == 0 { ret = bpf_map__set_max_entries(ct, options.ctSize) }
        if ret != 0 {
            throw CtctlError(.software, "cannot configure \(path): \(Errno(-ret))")
        }
        ret = bpf_object__load(obj)
        if ret != 0 {
            let e = Errno(-ret)
            let log = libbpfLogTail()
            // the verifier also answers EACCES: its log says so, a missing capability does not
            if e.isPermission && !log.contains("PROG LOAD LOG") {
                throw CtctlError(.noPermission, "permission denied loading the dataplane: \(CtctlError.privilegeHint)")
            }
            throw CtctlError(.software, "the kernel refused the dataplane (\(e)): \(log)")
        }

        var created = true
        do { try Errno.libc { mkdir(pinDir.path, 0o700) } } catch {
            guard error.code == EEXIST else { throw CtctlError.from(error, doing: "creating pin directory", path: pinDir.path) }
            created = false
        }
        var pinned: [String] = []
        do throws(CtctlError) {
            // every map and program, with how to pin it (nil: the object lacks it)
            let pinners: [(kind: String, name: String, pin: String, pinTo: (String) -> Int32?)] =
                MapSpec.all.map { m in
                    (
                        "map", m.objectName, m.pin,
                        { p in bpf_object__find_map_by_name(obj, m.objectName).map { bpf_map__pin($0, p) } }
                    )
                }
                + ProgramSpec.all.map { g in
                    (
                        "program", g.objectName, g.pin,
                        { p in bpf_object__find_program_by_name(obj, g.objectName).map { bpf_program__pin($0, p) } }
                    )
                }
            for x in pinners {
                let p = pinDir.pin(x.pin)
                guard let r = x.pinTo(p) else {
                    throw CtctlError(.badLayout, "\(path) has no \(x.kind) '\(x.name)': rebuild it with this ctctl")
                }
                if r != 0 { throw CtctlError.from(Errno(-r), doing: "pinning", path: p) }
                pinned.append(p)
            }
            let dp = try ReferenceDataplane(pinDir, readOnly: false)
            try dp.state().pointee.loaded_at = UInt64(time(nil))
        } catch {
            for p in pinned.reversed() { unlink(p) }
            if created { rmdir(pinDir.path) }
            throw error
        }
    }

    static func directoryEntries(_ path: String) -> [String] {
        guard let d = opendir(path) else { return [] }
        defer { closedir(d) }
        var names: [String] = []
        while let e = readdir(d) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    /// Removes exactly the pins `load` made, then the directory. Refuses while the
    /// datapath is still attached anywhere ctctl recorded.
    public static func unload(_ pinDir: PinDirectory) throws(CtctlError) {
        let dp = try ReferenceDataplane(pinDir, readOnly: false)
        let lock = try dp.writerLock(timeoutMs: 30_000)
        try withExtendedLifetime(lock) { () throws(CtctlError) in
            let live = try Attachments.list(dp).filter { $0.state == .attached }
            if !live.isEmpty {
                let first = live[0]
                throw CtctlError(
                    .software,
                    "the dataplane at \(pinDir.path) is still attached to \(live.map(\.place).joined(separator: ", ")): detach first (`ctctl dataplane detach \(first.ifname)\(first.netns.isEmpty ? "" : " --netns \(first.netns)")`)"
                )
            }
            try unpin(pinDir)
        }
    }

    /// Removes every pin of `allPins` and the directory (the caller holds the lock).
    static func unpin(_ pinDir: PinDirectory) throws(CtctlError) {
        for pin in allPins {
            let p = pinDir.pin(pin)
            do { try Errno.libc { unlink(p) } } catch  where error.code != ENOENT {
                throw CtctlError.from(error, doing: "unpinning", path: p)
            } catch {}
        }
        do { try Errno.libc { rmdir(pinDir.path) } } catch  where error.code != ENOENT {
            let others = directoryEntries(pinDir.path)
            throw CtctlError(
                .software,
                "unpinned the dataplane, but \(pinDir.path) still holds \(others.joined(separator: ", ")), which ctctl did not create: left in place"
            )
        } catch {}
    }
}
