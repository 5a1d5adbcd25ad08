import CLibBPF
import Glibc

/// Runs work inside a named network namespace (/run/netns/NAME) on the calling
/// thread, then returns to the original one. Used instead of `ip netns exec`,
/// which remounts /sys and so hides bpffs (docs/runbook.md).
public enum NetworkNamespace {
    public static let runDirectory = "/run/netns"

    public static func path(_ name: String) -> String { runDirectory + "/" + name }

    public static func exists(_ name: String) -> Bool {
        var st = stat()
        return stat(path(name), &st) == 0
    }

    /// `name` nil or empty: run in the current namespace.
    public static func run<T>(in name: String?, _ body: () throws -> T) throws -> T {
        guard let name, !name.isEmpty else { return try body() }
        guard !name.contains("/"), name != ".", name != ".." else {
            throw CtctlError.usage(
                "bad network namespace name '\(name)': give the name under \(runDirectory) (see `ip netns list`)")
        }
        let target: FileDescriptor
        do { target = try FileDescriptor.open(path(name), O_RDONLY) } catch {
            if error.code == ENOENT {
                throw CtctlError.usage("no network namespace '\(name)' (\(path(name)) does not exist): see `ip netns list`")
            }
            throw CtctlError.from(error, doing: "opening network namespace", path: path(name))
        }
        let original: FileDescriptor
        do { original = try FileDescriptor.open("/proc/thread-self/ns/net", O_RDONLY) } catch {
            throw CtctlError.from(error, doing: "opening", path: "/proc/thread-self/ns/net")
        }
        do {
            try Errno.bpf { CLibBPF_setns_net(target.raw) }
        } catch {
            throw CtctlError.from(error, doing: "entering network namespace", path: path(name))
        }
        defer {
            // Returning can only fail if the original namespace vanished, which it cannot
            // while we hold its fd; stay loud if it ever does.
            if CLibBPF_setns_net(original.raw) != 0 {
                fatalError("ctctl: could not return to the original network namespace")
            }
        }
        return try body()
    }

    /// The interface index of `ifname` in the current namespace.
    public static func interfaceIndex(_ ifname: String, netns: String?) throws(CtctlError) -> Int32 {
        guard !ifname.isEmpty, ifname.utf8.count < 16 else {
            throw .usage("bad interface name '\(ifname)': 1 to 15 characters")
        }
        let idx = if_nametoindex(ifname)
        if idx == 0 {
            let place = netns.map { "network namespace '\($0)'" } ?? "this network namespace"
            throw .usage(
                "no interface '\(ifname)' in \(place): see `ip link`\(netns.map { " (`nsenter --net=\(path($0)) ip link`)" } ?? "")"
            )
        }
        return Int32(idx)
    }
}
