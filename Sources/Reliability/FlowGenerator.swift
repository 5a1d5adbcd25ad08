import ConntrackKit
import Foundation
import Glibc

/// The churn drill's traffic: new flows at a fixed rate from one client address, open loop.
///
/// Each flow is a non-blocking socket waited on with one poll(2) for all, so a flow waiting for its timeout (its
/// service being re-created, or left with no backend) never delays the next one: the rate
/// offered does not depend on how the system under test is doing. Flows: UDP request/response
/// (a request every 0.4 s, three at most), TCP request/response (connect and answer, 3 s
/// each), and one-way UDP flows (a datagram a second for `ChurnDrill.oneWayDatagrams`
/// seconds, counted by the sink a second after the last).
final class FlowGenerator {
    enum Kind { case udp, tcp, oneWay }

    struct Flow {
        let kind: Kind
        let svc: ServiceRef
        let start: UInt64
        var deadline: UInt64
        /// UDP: requests sent; one-way: datagrams sent
        var sent = 0
        var connected = false
        var received: [UInt8] = []
        var oneWayID = 0
        /// what poll(2) waits for on its socket (one-way flows wait for nothing)
        var events: Int16
    }

    let drill: ChurnDrill
    let address: IPAddress
    var flows: [Int32: Flow] = [:]
    var polled: [pollfd] = []

    init(_ drill: ChurnDrill, from address: IPAddress) {
        self.drill = drill
        self.address = address
    }

    deinit { for fd in flows.keys { close(fd) } }

    static let udpTry: UInt64 = 400_000_000
    static let udpTries = 3
    static let tcpTimeout: UInt64 = 3_000_000_000
    static let second: UInt64 = 1_000_000_000

    /// Starts `rate` flows a second until `endAt`, then waits for the last ones to end.
    func run(rate: Double, seed: UInt64, until endAt: UInt64) {
        var rng = SeededRandom(seed: seed)
        let step = UInt64(1e9 / rate)
        var next = drill.now()
        while !drill.stopping {
            var now = drill.now()
            while next <= now && next < endAt {
                switch rng.below(100) {
                case 0..<55: startUDP(rng.chance(80) ? ChurnDrill.udpStable : ChurnDrill.udpChurn)
                case 55..<90: startTCP(rng.chance(80) ? ChurnDrill.tcpStable : ChurnDrill.tcpChurn)
                default: startOneWay()
                }
                next += step
                now = drill.now()
            }
            if next >= endAt && flows.isEmpty { return }
            let wake = min(next < endAt ? next : UInt64.max, flows.values.map(\.deadline).min() ?? UInt64.max)
            let waitMs = wake == UInt64.max ? 100 : Int32(min((wake &- min(wake, now) + 999_999) / 1_000_000, 100))
            polled.removeAll(keepingCapacity: true)
            for (fd, f) in flows where f.events != 0 { polled.append(pollfd(fd: fd, events: f.events, revents: 0)) }
            if poll(&polled, nfds_t(polled.count), waitMs) > 0 {
                for p in polled where p.revents != 0 { ready(p.fd) }
            }
            now = drill.now()
            for (fd, f) in flows where f.deadline <= now { expired(fd, f, now) }
        }
    }

    // MARK: starting

    func open(_ type: Int32, _ svc: ServiceRef) -> Int32? {
        let fd = Net.socket(type | Int32(SOCK_NONBLOCK.rawValue), bind: Endpoint(address: address, port: 0))
        guard fd >= 0 else {
            drill.notStarted(errno)
            return nil
        }
        if !Net.connect(fd, svc.vip) && errno != EINPROGRESS {
            drill.notStarted(errno)
            close(fd)
            return nil
        }
        return fd
    }

    func startUDP(_ svc: ServiceRef) {
        let start = drill.now()
        guard let fd = open(Int32(SOCK_DGRAM.rawValue), svc) else { return }
        flows[fd] = Flow(
            kind: .udp, svc: svc, start: start, deadline: start + FlowGenerator.udpTry, sent: 1, events: Int16(POLLIN))
        _ = Net.sendAll(fd, Array("q".utf8))
    }

    func startTCP(_ svc: ServiceRef) {
        let start = drill.now()
        guard let fd = open(Int32(SOCK_STREAM.rawValue), svc) else { return }
        flows[fd] = Flow(kind: .tcp, svc: svc, start: start, deadline: start + FlowGenerator.tcpTimeout, events: Int16(POLLOUT))
    }

    func startOneWay() {
        let start = drill.now()
        guard let fd = open(Int32(SOCK_DGRAM.rawValue), ChurnDrill.oneWay) else { return }
        var f = Flow(kind: .oneWay, svc: ChurnDrill.oneWay, start: start, deadline: start, events: 0)
        f.oneWayID = drill.nextID()
        flows[fd] = f
        sendOneWay(fd, &flows[fd]!)
    }

    func sendOneWay(_ fd: Int32, _ f: inout Flow) {
        _ = Net.sendAll(fd, Array("oneway \(f.oneWayID) \(f.sent)".utf8))
        f.sent += 1
        f.deadline += FlowGenerator.second
    }

    // MARK: events

    func ready(_ fd: Int32) {
        guard var f = flows[fd] else { return }
        switch f.kind {
        case .udp:
            var buf = [UInt8](repeating: 0, count: 64)
            let n = recv(fd, &buf, buf.count, 0)
            if n > 0 {
                let text = String(decoding: buf[..<n], as: UTF8.self)
                finish(fd, f, ok: text.hasPrefix("ok"), backend: backend(f.svc, text), detail: text)
            } else if n < 0 && errno != EAGAIN && errno != EINTR {
                // refused (an ICMP error): the next request goes now
                f.deadline = drill.now()
                flows[fd] = f
            }
        case .tcp where !f.connected:
            var err: Int32 = 0
            var len = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len)
            guard err == 0 else {
                return finish(fd, f, ok: false, backend: nil, detail: "from \(endpoint(fd)): connect: errno \(err)")
            }
            guard Net.sendAll(fd, Array("GET\n".utf8)) else {
                return finish(fd, f, ok: false, backend: nil, detail: "from \(endpoint(fd)): send: errno \(errno)")
            }
            f.connected = true
            f.deadline = drill.now() + FlowGenerator.tcpTimeout
            f.events = Int16(POLLIN)
            flows[fd] = f
        case .tcp:
            var buf = [UInt8](repeating: 0, count: 512)
            while true {
                let n = recv(fd, &buf, buf.count, 0)
                if n > 0 {
                    f.received += buf[..<n]
                    continue
                }
                if n == 0 {
                    let text = String(decoding: f.received, as: UTF8.self)
                    return finish(fd, f, ok: text.hasPrefix("ok"), backend: backend(f.svc, text), detail: text)
                }
                if errno == EAGAIN || errno == EINTR {
                    flows[fd] = f
                    return
                }
                return finish(fd, f, ok: false, backend: nil, detail: "from \(endpoint(fd)): no response: errno \(errno)")
            }
        case .oneWay:
            return
        }
    }

    func expired(_ fd: Int32, _ flow: Flow, _ now: UInt64) {
        var f = flow
        switch f.kind {
        case .udp where f.sent < FlowGenerator.udpTries:
            f.sent += 1
            f.deadline = now + FlowGenerator.udpTry
            flows[fd] = f
            _ = Net.sendAll(fd, Array("q".utf8))
        case .udp:
            finish(fd, f, ok: false, backend: nil, detail: "from \(endpoint(fd)): no reply to \(f.sent) requests")
        case .tcp:
            let what = f.connected ? "no response in 3 s" : "connect: timed out after 3 s"
            finish(fd, f, ok: false, backend: nil, detail: "from \(endpoint(fd)): \(what)")
        case .oneWay where f.sent < ChurnDrill.oneWayDatagrams:
            sendOneWay(fd, &f)
            flows[fd] = f
        case .oneWay:
            let got = drill.sinkCount(f.oneWayID)
            finish(
                fd, f, ok: got == ChurnDrill.oneWayDatagrams, backend: nil,
                detail: "from \(endpoint(fd)): \(got) of \(ChurnDrill.oneWayDatagrams) datagrams arrived")
        }
    }

    func finish(_ fd: Int32, _ f: Flow, ok: Bool, backend: Endpoint?, detail: @autoclosure () -> String) {
        let kind =
            switch f.kind {
            case .udp: "udp"
            case .tcp: "tcp"
            case .oneWay: "udp one-way"
            }
        drill.record(kind, ok: ok, svc: f.svc, backend: backend, from: f.start, detail: detail())
        flows[fd] = nil
        close(fd)
    }

    /// The backend that answered ("ok be1" / "ok be2").
    func backend(_ svc: ServiceRef, _ text: String) -> Endpoint {
        ChurnDrill.backends(ChurnDrill.ports[svc.description]!)[text.contains("be1") ? 0 : 1]
    }

    func endpoint(_ fd: Int32) -> String { "\(address):\(Net.localPort(fd))" }
}
