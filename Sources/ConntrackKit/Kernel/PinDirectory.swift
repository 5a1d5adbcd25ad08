import CLibBPF
import Glibc

/// The directory on bpffs where one dataplane's maps and programs are pinned.
public struct PinDirectory: Sendable, CustomStringConvertible {
    public static let defaultPath = "/sys/fs/bpf/ctctl"
    public static let environmentVariable = "CTCTL_PIN_DIR"
    static let bpffsRoot = "/sys/fs/bpf"

    public let path: String

    public init(_ path: String) {
        var p = path
        while p.count > 1 && p.hasSuffix("/") { p.removeLast() }
        self.path = p
    }

    /// `--pin-dir`, else $CTCTL_PIN_DIR, else /sys/fs/bpf/ctctl.
    public static func resolve(_ option: String?) -> PinDirectory {
        if let option, !option.isEmpty { return PinDirectory(option) }
        if let env = getenv(environmentVariable), env.pointee != 0 { return PinDirectory(String(cString: env)) }
        return PinDirectory(defaultPath)
    }

    public var description: String { path }

    public func pin(_ name: String) -> String { path + "/" + name }

    public var exists: Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    /// The closest existing ancestor of `p` (itself if it exists).
    static func existingAncestor(_ p: String) -> String {
        var cur = p
        var st = stat()
        while stat(cur, &st) != 0 {
            guard let slash = cur.lastIndex(of: "/"), cur != "/" else { return "/" }
            cur = slash == cur.startIndex ? "/" : String(cur[..<slash])
        }
        return cur
    }

    static func isBPFFS(_ p: String) -> Bool { CLibBPF_is_bpffs(p) == 1 }

    static let notBPFFSHint =
        "if this shell came from `ip netns exec`, that remounted /sys and hid bpffs: use `nsenter --net=/run/netns/NS ctctl ...` instead; otherwise mount it (`mount -t bpf bpf /sys/fs/bpf`) and load the dataplane (`ctctl dataplane load`)"

    /// Every command but load: the pin directory must be on bpffs (exit 69 otherwise).
    public func requireBPFFS() throws(CtctlError) {
        let anchor = PinDirectory.existingAncestor(path)
        if !PinDirectory.isBPFFS(anchor) {
            throw CtctlError(.unavailable, "\(path) is not on a BPF filesystem (bpffs): \(PinDirectory.notBPFFSHint)")
        }
    }

    /// For load: mounts bpffs at /sys/fs/bpf if the pin directory lives there and it is
    /// not mounted yet (idempotent); refuses any other non-bpffs location.
    public func ensureBPFFS() throws(CtctlError) {
        if PinDirectory.isBPFFS(PinDirectory.existingAncestor(path)) { return }
        let root = PinDirectory.bpffsRoot
        guard path == root || path.hasPrefix(root + "/") else {
            throw CtctlError(
                .unavailable,
                "\(path) is not on a BPF filesystem (bpffs): choose a --pin-dir under \(root), or mount one first (`mount -t bpf bpf DIR`)"
            )
        }
        var st = stat()
        if stat(root, &st) != 0 {
            throw CtctlError(.unavailable, "\(root) does not exist: is sysfs mounted? (\(PinDirectory.notBPFFSHint))")
        }
        do {
            try Errno.libc { mount("bpf", root, "bpf", 0, "mode=0700") }
        } catch {
            throw CtctlError.from(error, doing: "mounting bpffs at", path: root)
        }
    }

    /// The directory must exist and hold a dataplane: exit 69 with how to load one otherwise.
    public func requireLoaded() throws(CtctlError) {
        try requireBPFFS()
        var st = stat()
        do { try Errno.libc { stat(pin(CTCTL_PIN_CONFIG), &st) } } catch {
            if error.isPermission {
                throw CtctlError(.noPermission, "permission denied reading \(path): \(CtctlError.privilegeHint)")
            }
            throw CtctlError(.unavailable, "no dataplane at \(path): is it loaded? (`ctctl dataplane load --pin-dir \(path)`)")
        }
    }
}
