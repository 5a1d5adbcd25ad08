import CLibBPF
import ConntrackKit
import Foundation
import Glibc
import NetLab

/// Sockets for the traffic drills, made on threads that live in a test namespace.
enum Net {
    /// Moves the calling thread into network namespace `name` for good (its sockets are
    /// made there). Only for threads the drill owns.
    static func enter(_ name: String) throws {
        let fd = open(NetworkNamespace.path(name), O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw TopologyError(message: "open netns \(name): errno \(errno)") }
        defer { close(fd) }
        guard CLibBPF_setns_net(fd) == 0 else { throw TopologyError(message: "setns \(name) failed") }
    }

    /// The kernel's TcpExt counters (/proc/net/netstat) of namespace `name`; empty if they
    /// cannot be read.
    static func tcpExt(in name: String) -> [String: UInt64] {
        let text = try? NetworkNamespace.run(in: name) {
            try String(contentsOfFile: "/proc/thread-self/net/netstat", encoding: .utf8)
        }
        let lines = (text ?? "").split(separator: "\n").filter { $0.hasPrefix("TcpExt:") }
        guard lines.count == 2 else { return [:] }
        let names = lines[0].split(separator: " ").dropFirst()
        let values = lines[1].split(separator: " ").dropFirst()
        return Dictionary(zip(names.map(String.init), values.compactMap { UInt64($0) }), uniquingKeysWith: +)
    }

    static func timeout(_ fd: Int32, seconds: Double) {
        var tv = timeval(tv_sec: Int(seconds), tv_usec: Int((seconds - Double(Int(seconds))) * 1e6))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    /// A socket of `type` bound to `local` (port 0: any), or -1.
    static func socket(_ type: Int32, bind local: Endpoint) -> Int32 {
        let fd = Glibc.socket(local.address.isV4 ? AF_INET : AF_INET6, type | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return -1 }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        if UDPSocket.withSockaddr(local, { Glibc.bind(fd, $0, $1) }) != 0 {
            close(fd)
            return -1
        }
        return fd
    }

    /// The local port a socket got.
    static func localPort(_ fd: Int32) -> UInt16 {
        var ss = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &ss) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        return UDPSocket.endpoint(ss).port
    }

    static func connect(_ fd: Int32, _ to: Endpoint) -> Bool {
        UDPSocket.withSockaddr(to) { Glibc.connect(fd, $0, $1) } == 0
    }

    static func sendAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } == bytes.count
    }

    /// Everything until EOF (or the timeout): nil on an error or a timeout.
    static func readToEnd(_ fd: Int32, limit: Int = 4096) -> [UInt8]? {
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 1024)
        while out.count < limit {
            let n = recv(fd, &buf, buf.count, 0)
            if n == 0 { return out }
            if n < 0 {
                if errno == EINTR { continue }
                return nil
            }
            out += buf[..<n]
        }
        return out
    }

    /// One line (up to "\n"), or nil.
    static func readLine(_ fd: Int32) -> String? {
        var out: [UInt8] = []
        var b: UInt8 = 0
        while out.count < 256 {
            let n = recv(fd, &b, 1, 0)
            if n == 1 {
                if b == 10 { return String(decoding: out, as: UTF8.self) }
                out.append(b)
            } else if n < 0 && errno == EINTR {
                continue
            } else {
                return out.isEmpty ? nil : String(decoding: out, as: UTF8.self)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
