import ConntrackKit
import Foundation
import Glibc

/// What a finished command printed, and how it exited.
public struct CommandResult: Sendable {
    public let status: Int32
    public let out: String
    public let err: String

    public init(status: Int32, out: String, err: String) {
        self.status = status
        self.out = out
        self.err = err
    }
}

/// Runs a command (found on PATH unless the path is absolute) and waits for it.
/// `environment` adds to (or overrides) this process's environment.
public func runCommand(_ args: [String], environment: [String: String] = [:]) throws -> CommandResult {
    let p = Process()
    if !environment.isEmpty {
        p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    }
    if args[0].hasPrefix("/") {
        p.executableURL = URL(fileURLWithPath: args[0])
        p.arguments = Array(args.dropFirst())
    } else {
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = args
    }
    let out = Pipe()
    let err = Pipe()
    p.standardOutput = out
    p.standardError = err
    try p.run()
    let o = out.fileHandleForReading.readDataToEndOfFile()
    let e = err.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return CommandResult(
        status: p.terminationStatus, out: String(decoding: o, as: UTF8.self), err: String(decoding: e, as: UTF8.self))
}

/// Runs a command; throws with its stderr when it fails.
@discardableResult
public func sh(_ args: [String], allowFailure: Bool = false) throws -> String {
    let r = try runCommand(args)
    if r.status != 0 && !allowFailure {
        throw TopologyError(message: "\(args.joined(separator: " ")) failed (\(r.status)): \(r.err)")
    }
    return r.out
}

public struct TopologyError: Error, CustomStringConvertible {
    public let message: String
    public init(message: String) { self.message = message }
    public var description: String { message }
}

/// Test hosts in network namespaces this test creates:
///
///   client (eth0) <-> (nc) node (nb1) <-> (eth0) backend1
///                             (nb2) <-> (eth0) backend2
///                             (nb3) <-> (eth0) router (eth1) <-> (eth0) backend3   (withRouter)
///
/// With a router, the link between the router and backend3 has an MTU of 1280 (the IPv6
/// minimum), the others 1500: a larger packet to backend3 makes the router answer with
/// fragmentation-needed (IPv4) or packet-too-big (IPv6).
/// The node forwards; the dataplane attaches to nc and nb1/nb2 ingress. Addresses are
/// 198.18.0.0/15 and 2001:db8::/32 only, inside these namespaces.
///
/// Checksums are verified for real: the node's veths have TX checksum offload off, so
/// the kernel finishes each forwarded packet's checksum in software, and the hosts have
/// RX checksumming off, so their stack verifies every datagram (veth otherwise marks
/// packets CHECKSUM_UNNECESSARY). With `partialChecksums` the hosts send with TX offload
/// on: packets reach the dataplane as CHECKSUM_PARTIAL, which exercises the
/// pseudo-header path of the rewrite; without it they arrive with full checksums.
public final class Topology {
    public let id: String
    public let client: String
    public let node: String
    public let backend1: String
    public let backend2: String
    /// withRouter only.
    public let router: String
    public let backend3: String
    public let withRouter: Bool
    private var created: [String] = []

    public static let clientV4 = "198.18.1.2", clientV6 = "2001:db8:1::2"
    public static let vipV4 = "198.19.0.10", vipV6 = "2001:db8:ff::10"
    public static let backendV4 = ["198.18.2.2", "198.18.3.2"], backendV6 = ["2001:db8:2::2", "2001:db8:3::2"]
    /// withRouter: the router's address towards the node, and backend3 behind it.
    public static let routerV4 = "198.18.4.2", routerV6 = "2001:db8:4::2"
    public static let backend3V4 = "198.18.5.2", backend3V6 = "2001:db8:5::2"
    public static let farMTU = 1280

    public let partialChecksums: Bool

    public init(_ tag: String, partialChecksums: Bool = true, withRouter: Bool = false) throws {
        self.partialChecksums = partialChecksums
        self.withRouter = withRouter
        id = "ctctl-\(getpid())-\(tag)-\(String(UInt32.random(in: 0..<UInt32.max), radix: 36))"
        client = id + "-client"
        node = id + "-node"
        backend1 = id + "-be1"
        backend2 = id + "-be2"
        router = id + "-rt"
        backend3 = id + "-be3"
        do {
            try build()
        } catch {
            cleanup()
            throw error
        }
    }

    private func build() throws {
        for ns in [client, node, backend1, backend2] + (withRouter ? [router, backend3] : []) {
            try sh(["ip", "netns", "add", ns])
            created.append(ns)
            try sh(["ip", "-n", ns, "link", "set", "lo", "up"])
            // No duplicate address detection: link-local addresses that are still
            // tentative stall neighbour discovery for the first seconds.
            try sh([
                "ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0",
                "net.ipv6.conf.default.accept_dad=0",
            ])
        }
        let links: [(String, String, Int)] = [("nc", client, 1), ("nb1", backend1, 2), ("nb2", backend2, 3)]
        for (nodeIf, peer, subnet) in links {
            try sh(["ip", "-n", node, "link", "add", nodeIf, "type", "veth", "peer", "name", "eth0", "netns", peer])
            try sh(["ip", "-n", node, "addr", "add", "198.18.\(subnet).1/24", "dev", nodeIf])
            try sh(["ip", "-n", node, "addr", "add", "2001:db8:\(subnet)::1/64", "dev", nodeIf, "nodad"])
            try sh(["ip", "-n", peer, "addr", "add", "198.18.\(subnet).2/24", "dev", "eth0"])
            try sh(["ip", "-n", peer, "addr", "add", "2001:db8:\(subnet)::2/64", "dev", "eth0", "nodad"])
            try sh(["ip", "-n", node, "link", "set", nodeIf, "up"])
            try sh(["ip", "-n", peer, "link", "set", "eth0", "up"])
            try sh(["ip", "-n", peer, "route", "add", "default", "via", "198.18.\(subnet).1"])
            try sh(["ip", "-n", peer, "-6", "route", "add", "default", "via", "2001:db8:\(subnet)::1"])
            try sh(["ip", "netns", "exec", node, "ethtool", "-K", nodeIf, "tx", "off"])
            try sh(["ip", "netns", "exec", peer, "ethtool", "-K", "eth0", "rx", "off", "tx", partialChecksums ? "on" : "off"])
            try sh(["ip", "netns", "exec", node, "sysctl", "-qw", "net.ipv4.conf.\(nodeIf).rp_filter=0"])
        }
        try sh([
            "ip", "netns", "exec", node, "sysctl", "-qw", "net.ipv4.ip_forward=1",
            "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0",
            "net.ipv6.conf.all.forwarding=1",
        ])
        if withRouter { try buildRouter() }
    }

    /// node (nb3) <-> (eth0) router (eth1) <-> (eth0) backend3, the last link with MTU 1280.
    private func buildRouter() throws {
        try sh(["ip", "-n", node, "link", "add", "nb3", "type", "veth", "peer", "name", "eth0", "netns", router])
        try sh(["ip", "-n", router, "link", "add", "eth1", "type", "veth", "peer", "name", "eth0", "netns", backend3])
        let addrs: [(String, String, String, String)] = [
            (node, "nb3", "198.18.4.1/24", "2001:db8:4::1/64"), (router, "eth0", "198.18.4.2/24", "2001:db8:4::2/64"),
            (router, "eth1", "198.18.5.1/24", "2001:db8:5::1/64"), (backend3, "eth0", "198.18.5.2/24", "2001:db8:5::2/64"),
        ]
        for (ns, ifname, v4, v6) in addrs {
            try sh(["ip", "-n", ns, "addr", "add", v4, "dev", ifname])
            try sh(["ip", "-n", ns, "addr", "add", v6, "dev", ifname, "nodad"])
            if ns != node && (ns == backend3 || ifname == "eth1") {
                try sh(["ip", "-n", ns, "link", "set", ifname, "mtu", String(Topology.farMTU)])
            }
            try sh(["ip", "-n", ns, "link", "set", ifname, "up"])
            try sh(["ip", "netns", "exec", ns, "ethtool", "-K", ifname, "tx", "off", "rx", "off"])
        }
        try sh(["ip", "-n", node, "route", "add", "198.18.5.0/24", "via", "198.18.4.2"])
        try sh(["ip", "-n", node, "-6", "route", "add", "2001:db8:5::/64", "via", "2001:db8:4::2"])
        try sh(["ip", "-n", router, "route", "add", "default", "via", "198.18.4.1"])
        try sh(["ip", "-n", router, "-6", "route", "add", "default", "via", "2001:db8:4::1"])
        try sh(["ip", "-n", backend3, "route", "add", "default", "via", "198.18.5.1"])
        try sh(["ip", "-n", backend3, "-6", "route", "add", "default", "via", "2001:db8:5::1"])
        try sh(["ip", "netns", "exec", node, "sysctl", "-qw", "net.ipv4.conf.nb3.rp_filter=0"])
        try sh([
            "ip", "netns", "exec", router, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv4.conf.all.rp_filter=0",
            "net.ipv6.conf.all.forwarding=1",
        ])
    }

    /// Deletes exactly the namespaces this topology created (their veths go with them).
    public func cleanup() {
        for ns in created.reversed() {
            _ = try? sh(["ip", "netns", "del", ns], allowFailure: true)
        }
        created.removeAll()
    }

    deinit { cleanup() }
}

/// A UDP socket created inside a network namespace (it stays there), bounded waits only.
public final class UDPSocket {
    public let fd: Int32
    public let v6: Bool

    public init(netns: String, bind local: Endpoint) throws {
        v6 = !local.address.isV4
        fd = try NetworkNamespace.run(in: netns) {
            socket(local.address.isV4 ? AF_INET : AF_INET6, Int32(SOCK_DGRAM.rawValue), 0)
        }
        guard fd >= 0 else { throw TopologyError(message: "socket: errno \(errno)") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        if v6 { setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &one, socklen_t(MemoryLayout<Int32>.size)) }
        let rc = UDPSocket.withSockaddr(local) { bind(fd, $0, $1) }
        guard rc == 0 else {
            close(fd)
            throw TopologyError(message: "bind \(local) in \(netns): errno \(errno)")
        }
    }

    deinit { close(fd) }

    public static func withSockaddr<T>(_ e: Endpoint, _ body: (UnsafePointer<sockaddr>, socklen_t) -> T) -> T {
        let bytes = e.address.bytes
        if e.address.isV4 {
            var sa = sockaddr_in()
            sa.sin_family = sa_family_t(AF_INET)
            sa.sin_port = e.port.bigEndian
            withUnsafeMutableBytes(of: &sa.sin_addr) { for i in 0..<4 { $0[i] = bytes[i] } }
            return withUnsafePointer(to: &sa) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
        }
        var sa = sockaddr_in6()
        sa.sin6_family = sa_family_t(AF_INET6)
        sa.sin6_port = e.port.bigEndian
        withUnsafeMutableBytes(of: &sa.sin6_addr) { for i in 0..<16 { $0[i] = bytes[i] } }
        return withUnsafePointer(to: &sa) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in6>.size)) }
        }
    }

    /// connect(2): sends go to `dst`, and ICMP errors about them come back as errors.
    public func connect(to dst: Endpoint) throws {
        let rc = UDPSocket.withSockaddr(dst) { Glibc.connect(fd, $0, $1) }
        guard rc == 0 else { throw TopologyError(message: "connect \(dst): errno \(errno)") }
    }

    /// Path-MTU discovery on: the don't-fragment bit set, never fragmented locally.
    public func setDontFragment() {
        var on: Int32 = 2  // IP_PMTUDISC_DO / IPV6_PMTUDISC_DO
        if v6 {
            setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_MTU_DISCOVER, &on, socklen_t(MemoryLayout<Int32>.size))
        } else {
            setsockopt(fd, Int32(IPPROTO_IP), IP_MTU_DISCOVER, &on, socklen_t(MemoryLayout<Int32>.size))
        }
    }

    /// send(2) on a connected socket: 0, or the errno.
    public func send(_ payload: [UInt8]) -> Int32 {
        let n = payload.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, 0) }
        return n < 0 ? errno : 0
    }

    /// Waits (bounded) for what a connected socket reports next: nil for a datagram or a
    /// timeout, or the errno of an error the kernel queued (ECONNREFUSED ...).
    public func pendingError(timeoutMs: Int32) -> Int32? {
        var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&pfd, 1, timeoutMs) == 1 else { return nil }
        var buf = [UInt8](repeating: 0, count: 2048)
        let n = recv(fd, &buf, buf.count, Int32(MSG_DONTWAIT))
        return n < 0 ? errno : nil
    }

    public func send(_ payload: [UInt8], to dst: Endpoint) throws {
        let n = UDPSocket.withSockaddr(dst) { sa, len in
            payload.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, 0, sa, len) }
        }
        guard n == payload.count else { throw TopologyError(message: "sendto \(dst): errno \(errno)") }
    }

    /// One datagram, or nil after timeoutMs.
    public func receive(timeoutMs: Int32) -> (payload: [UInt8], from: Endpoint)? {
        var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&pfd, 1, timeoutMs) == 1 else { return nil }
        var buf = [UInt8](repeating: 0, count: 2048)
        var ss = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let n = withUnsafeMutablePointer(to: &ss) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(fd, &buf, buf.count, 0, $0, &len) }
        }
        guard n >= 0 else { return nil }
        return (Array(buf[..<n]), UDPSocket.endpoint(ss))
    }

    /// Discards whatever is queued.
    public func drain() { while receive(timeoutMs: 0) != nil {} }

    public static func endpoint(_ ss: sockaddr_storage) -> Endpoint {
        var ss = ss
        if Int32(ss.ss_family) == AF_INET {
            return withUnsafeBytes(of: &ss) { raw in
                let port = UInt16(raw[2]) << 8 | UInt16(raw[3])
                return Endpoint(address: IPAddress("\(raw[4]).\(raw[5]).\(raw[6]).\(raw[7])")!, port: port)
            }
        }
        return withUnsafeBytes(of: &ss) { raw in
            let port = UInt16(raw[2]) << 8 | UInt16(raw[3])
            var hi: UInt64 = 0
            var lo: UInt64 = 0
            for i in 8..<16 { hi = hi << 8 | UInt64(raw[i]) }
            for i in 16..<24 { lo = lo << 8 | UInt64(raw[i]) }
            return Endpoint(address: IPAddress(family: .v6, hi: hi, lo: lo), port: port)
        }
    }
}
