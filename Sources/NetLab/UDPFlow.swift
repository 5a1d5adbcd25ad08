import ConntrackKit
import Foundation

/// Steady UDP from one fixed source address and port (an SNMP poller, say) to a target,
/// with backends that count what they receive. Every datagram carries a sequence
/// number; send and receive times are kept, so outages and recoveries can be measured
/// to the packet. Bounded: it stops after `maxPackets` datagrams or `maxSeconds`.
public final class UDPFlow: @unchecked Sendable {
    public let intervalNs: UInt64
    let client: UDPSocket
    let target: Endpoint
    let receivers: [UDPSocket]
    let maxPackets: Int
    let maxSeconds: Double
    private let lock = NSLock()
    private var sendTimes: [UInt64] = []
    private var receiveTimes: [Int: UInt64] = [:]
    private var receivedBy: [Int: Int] = [:]
    private var stopping = false
    private var threads: [Thread] = []

    /// `receivers`: (network namespace, bind endpoint) of each backend.
    public init(
        clientNetns: String, from source: Endpoint, to target: Endpoint, receivers: [(String, Endpoint)],
        intervalMs: Int = 20, maxPackets: Int = 20_000, maxSeconds: Double = 300
    ) throws {
        client = try UDPSocket(netns: clientNetns, bind: source)
        self.receivers = try receivers.map { try UDPSocket(netns: $0.0, bind: $0.1) }
        self.target = target
        intervalNs = UInt64(intervalMs) * 1_000_000
        self.maxPackets = maxPackets
        self.maxSeconds = maxSeconds
    }

    public static func now() -> UInt64 { Timestamp.monotonicNow() }

    public func start() {
        let started = UDPFlow.now()
        let sender = Thread { [self] in
            var seq = 0
            var next = UDPFlow.now()
            while !isStopping && seq < maxPackets && Double(UDPFlow.now() - started) / 1e9 < maxSeconds {
                let t = UDPFlow.now()
                lock.lock()
                sendTimes.append(t)
                lock.unlock()
                try? client.send(Array("poll \(seq)".utf8), to: target)
                seq += 1
                next += intervalNs
                let now = UDPFlow.now()
                if next > now {
                    var ts = timespec(tv_sec: Int((next - now) / 1_000_000_000), tv_nsec: Int((next - now) % 1_000_000_000))
                    nanosleep(&ts, nil)
                }
            }
        }
        let receiver = Thread { [self] in
            var fds = receivers.map { pollfd(fd: $0.fd, events: Int16(POLLIN), revents: 0) }
            while !isStopping && Double(UDPFlow.now() - started) / 1e9 < maxSeconds + 1 {
                guard poll(&fds, nfds_t(fds.count), 20) > 0 else { continue }
                for (i, s) in receivers.enumerated() where fds[i].revents & Int16(POLLIN) != 0 {
                    while let got = s.receive(timeoutMs: 0) {
                        let t = UDPFlow.now()
                        let text = String(decoding: got.payload, as: UTF8.self)
                        guard text.hasPrefix("poll "), let seq = Int(text.dropFirst(5)) else { continue }
                        lock.lock()
                        if receiveTimes[seq] == nil {
                            receiveTimes[seq] = t
                            receivedBy[seq] = i
                        }
                        lock.unlock()
                    }
                }
            }
        }
        threads = [sender, receiver]
        sender.start()
        receiver.start()
    }

    var isStopping: Bool {
        lock.lock()
        defer { lock.unlock() }
        return stopping
    }

    public func stop() {
        lock.lock()
        stopping = true
        lock.unlock()
        while threads.contains(where: { !$0.isFinished }) { Thread.sleep(forTimeInterval: 0.005) }
    }

    /// Datagrams sent in [from, to), and how many of them reached a backend.
    public func window(from: UInt64, to: UInt64) -> (sent: Int, delivered: Int) {
        lock.lock()
        defer { lock.unlock() }
        var sent = 0
        var delivered = 0
        for (seq, t) in sendTimes.enumerated() where t >= from && t < to {
            sent += 1
            if receiveTimes[seq] != nil { delivered += 1 }
        }
        return (sent, delivered)
    }

    /// Datagrams that reached each backend, sent in [from, to).
    public func perBackend(from: UInt64, to: UInt64) -> [Int] {
        lock.lock()
        defer { lock.unlock() }
        var counts = Array(repeating: 0, count: receivers.count)
        for (seq, t) in sendTimes.enumerated() where t >= from && t < to {
            if let b = receivedBy[seq] { counts[b] += 1 }
        }
        return counts
    }

    /// The first delivery of a datagram sent at or after `t`: (its sequence number, when
    /// it was sent, when it arrived), or nil.
    public func firstDelivery(sentAfter t: UInt64) -> (seq: Int, sent: UInt64, received: UInt64)? {
        lock.lock()
        defer { lock.unlock() }
        guard let first = sendTimes.firstIndex(where: { $0 >= t }) else { return nil }
        for seq in first..<sendTimes.count {
            if let r = receiveTimes[seq] { return (seq, sendTimes[seq], r) }
        }
        return nil
    }

    /// The sequence number of the first datagram sent at or after `t`.
    public func firstSent(after t: UInt64) -> Int? {
        lock.lock()
        defer { lock.unlock() }
        return sendTimes.firstIndex(where: { $0 >= t })
    }

    /// Waits (bounded) until a datagram sent at or after `t` reaches a backend.
    public func waitForDelivery(sentAfter t: UInt64, timeout: Double) -> (seq: Int, sent: UInt64, received: UInt64)? {
        let deadline = UDPFlow.now() + UInt64(timeout * 1e9)
        while UDPFlow.now() < deadline {
            if let d = firstDelivery(sentAfter: t) { return d }
            Thread.sleep(forTimeInterval: 0.002)
        }
        return nil
    }
}
