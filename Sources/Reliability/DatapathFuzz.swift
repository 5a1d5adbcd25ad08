import CLibBPF
import ConntrackKit
import Foundation
import TestSupport

/// Datapath fuzzing: seeded random and mutated packets through the TC program
/// (BPF_PROG_TEST_RUN), each output frame checked from scratch (TestSupport.FrameCheck,
/// which shares no code with the datapath):
///
/// - the verdict is pass (TC_ACT_OK) or drop (TC_ACT_SHOT), nothing else;
/// - a frame that left changed has the same length, and differs from what came in only in
///   the fields a translation rewrites (addresses, ports, checksums; for an ICMP error also
///   the quote's);
/// - it is translated whole: an address and its port move together, from a VIP to one of its
///   backends (DNAT) or from a backend to its VIP (the reverse), never half;
/// - every checksum that held on the way in holds on the way out (outer IPv4 header, UDP,
///   TCP, ICMP, ICMPv6, the quoted IPv4 header and quoted L4), and a UDP checksum of zero
///   stays zero.
///
/// Each packet's verdict class is named by the datapath counters it moved.
public struct DatapathFuzz {
    public struct Report: Sendable {
        public var seed: UInt64 = 0
        public var packets = 0
        /// verdict class -> packets
        public var classes: [String: Int] = [:]
        public var translated = 0
        public var failures: [String] = []
        public var failureCount = 0
        public var seconds = 0.0
    }

    struct Service {
        let vip: Endpoint
        let proto: IPProto
        var backends: [Endpoint]
    }

    let seed: UInt64
    let count: Int
    var rng: SeededRandom
    var services: [Service] = [
        Service(
            vip: Endpoint("198.19.0.10:161")!, proto: .udp,
            backends: [Endpoint("198.18.2.2:1161")!, Endpoint("198.18.3.2:1161")!]),
        Service(vip: Endpoint("198.19.0.20:80")!, proto: .tcp, backends: [Endpoint("198.18.2.2:8080")!]),
        Service(
            vip: Endpoint("[2001:db8:ff::10]:53")!, proto: .udp,
            backends: [Endpoint("[2001:db8:2::2]:53")!, Endpoint("[2001:db8:3::2]:53")!]),
        Service(vip: Endpoint("[2001:db8:ff::20]:443")!, proto: .tcp, backends: [Endpoint("[2001:db8:2::2]:8443")!]),
        Service(vip: Endpoint("198.19.0.30:53")!, proto: .udp, backends: []),
    ]
    /// Every backend a VIP ever had in this run (replies of old flows are still translated).
    var everBackends: [String: Set<Endpoint>] = [:]
    static let spare4 = Endpoint("198.18.4.2:1161")!

    public init(seed: UInt64, packets: Int) {
        self.seed = seed
        count = packets
        rng = SeededRandom(seed: seed)
    }

    static func key(_ vip: Endpoint, _ proto: UInt8) -> String { "\(vip)/\(proto)" }

    mutating func program(_ dp: ReferenceDataplane, lock: WriterLock) throws {
        for s in services {
            try Services.set(dp, ServiceRef(vip: s.vip, proto: s.proto), backends: s.backends, lock: lock)
            everBackends[DatapathFuzz.key(s.vip, s.proto.number), default: []].formUnion(s.backends)
        }
    }

    // MARK: packets

    func clients(v6: Bool) -> [Endpoint] {
        (2...5).flatMap { h in
            (40000..<40004).map { p in Endpoint(v6 ? "[2001:db8:1::\(h)]:\(p)" : "198.18.1.\(h):\(p)")! }
        }
    }

    mutating func payload() -> [UInt8] { rng.bytes(rng.below(64)) }

    mutating func l4(_ proto: IPProto, _ src: Endpoint, _ dst: Endpoint) -> [UInt8] {
        proto == .tcp
            ? Packets.tcp(src, dst, flags: rng.pick([0x02, 0x10, 0x11, 0x04, 0x18, 0x12]), payload: payload())
            : Packets.udp(src, dst, payload: payload(), zeroChecksum: src.address.isV4 && rng.chance(10))
    }

    /// One packet, before mutation.
    mutating func template() -> [UInt8] {
        let v6 = rng.chance(40)
        let svcs = services.filter { ($0.vip.address.family == .v6) == v6 }
        let svc = rng.pick(svcs)
        let client = rng.pick(clients(v6: v6))
        let backend = svc.backends.isEmpty ? (v6 ? Endpoint("[2001:db8:2::2]:53")! : DatapathFuzz.spare4) : rng.pick(svc.backends)
        let router = IPAddress(v6 ? "2001:db8:4::2" : "198.18.4.2")!
        switch rng.below(100) {
        case 0..<35: return l4(svc.proto, client, svc.vip)
        case 35..<45:
            // not a service: a host, another port, another protocol
            let host = Endpoint(v6 ? "[2001:db8:9::9]:53" : "198.18.9.9:53")!
            return rng.chance(50)
                ? l4(svc.proto, client, host)
                : l4(svc.proto == .udp ? .tcp : .udp, client, Endpoint(address: svc.vip.address, port: svc.vip.port &+ 1))
        case 45..<65: return l4(svc.proto, backend, client)  // a reply
        case 65..<85:
            // an ICMP error: from the backend or a router beyond (quoting client -> backend),
            // or from a router on the client's side (quoting a reply VIP -> client)
            let aboutReply = rng.chance(30)
            var quote = Packets.ipPacket(aboutReply ? l4(svc.proto, svc.vip, client) : l4(svc.proto, client, backend))
            if rng.chance(50) { quote = Array(quote.prefix(v6 ? 48 : 28)) }  // a router quotes 8 bytes of L4
            let (type, code): (UInt8, UInt8) =
                v6 ? rng.pick([(1, 4), (2, 0), (3, 0), (4, 0)]) : rng.pick([(3, 3), (3, 4), (11, 0), (12, 0)])
            let from = aboutReply || rng.chance(50) ? router : backend.address
            let to = aboutReply ? svc.vip.address : client.address
            return Packets.icmpError(from, to, type: type, code: code, rest: [0, 0, 5, 0], quote: quote)
        case 85..<90:
            // ICMP that is not an error, or another protocol
            var f = l4(.udp, client, svc.vip)
            if v6 { f[20] = rng.pick([58, 132, 47]) } else { f[23] = rng.pick([1, 132, 47]) }
            return f
        case 90..<95:
            return Packets.macs + rng.pick([[0x08, 0x06], [0x81, 0x00], [0x88, 0xcc]]) + rng.bytes(rng.below(80))
        default:
            return rng.bytes(rng.below(160))
        }
    }

    /// Mutations: truncation, flipped bytes, IP options, fragments, IPv6 extension headers,
    /// wrong lengths, garbage after the packet.
    mutating func mutate(_ input: [UInt8]) -> [UInt8] {
        var f = input
        for _ in 0..<(1 + rng.below(3)) {
            let v6 = f.count > 13 && f[12] == 0x86
            switch rng.below(9) {
            case 0: f = Array(f.prefix(rng.below(f.count + 1)))
            case 1:
                for _ in 0..<(1 + rng.below(4)) where !f.isEmpty { f[rng.below(f.count)] = UInt8(truncatingIfNeeded: rng.next()) }
            case 2:
                // IPv4 options: IHL 6..15, option bytes inserted
                guard !v6, f.count > 34 else { break }
                let words = 1 + rng.below(10)
                f.insert(contentsOf: rng.bytes(words * 4), at: 34)
                f[14] = 0x40 | UInt8(5 + words)
                if rng.chance(70) {
                    let tot = Int(FrameCheckAccess.u16(f, 16)) + words * 4
                    f[16] = UInt8(truncatingIfNeeded: tot >> 8)
                    f[17] = UInt8(truncatingIfNeeded: tot)
                }
            case 3:
                guard !v6, f.count > 21 else { break }
                f[20] = rng.pick([0x20, 0x00, 0x3f, 0x40]) | UInt8(rng.below(2))
                f[21] = UInt8(truncatingIfNeeded: rng.next())
            case 4:
                // an IPv6 extension header before the L4 header
                guard v6, f.count >= 54 else { break }
                let next = f[20]
                f.insert(contentsOf: [next, 0] + rng.bytes(6), at: 54)
                f[20] = rng.pick([0, 43, 44, 60, 51])
                if rng.chance(70) {
                    let plen = Int(FrameCheckAccess.u16(f, 18)) + 8
                    f[18] = UInt8(truncatingIfNeeded: plen >> 8)
                    f[19] = UInt8(truncatingIfNeeded: plen)
                }
            case 5:
                // a wrong IP length
                let off = v6 ? 18 : 16
                guard f.count > off + 1 else { break }
                f[off] = UInt8(truncatingIfNeeded: rng.next())
                f[off + 1] = UInt8(truncatingIfNeeded: rng.next())
            case 6:
                // a wrong UDP length, or a TCP data offset
                let l4 = v6 ? 54 : 34
                guard f.count > l4 + 12 else { break }
                if rng.chance(50) {
                    f[l4 + 4] = UInt8(truncatingIfNeeded: rng.next())
                } else {
                    f[l4 + 12] = UInt8(truncatingIfNeeded: rng.next())
                }
            case 7: f += rng.bytes(1 + rng.below(40))  // bytes after the IP packet (Ethernet padding)
            default:
                // the quote of an ICMP error: cut short, or flipped
                let q = v6 ? 62 : 42
                guard f.count > q + 1 else { break }
                if rng.chance(50) {
                    f = Array(f.prefix(q + rng.below(f.count - q)))
                } else {
                    f[q + rng.below(f.count - q)] ^= 0xff
                }
            }
        }
        return f
    }

    // MARK: checking

    /// Checks one translated frame; returns what is wrong, or nil.
    func check(_ input: [UInt8], _ output: [UInt8]) -> String? {
        guard output.count == input.count else { return "length \(input.count) -> \(output.count)" }
        let fin = FrameCheck.facts(input)
        let fout = FrameCheck.facts(output)
        guard fin.ip, fout.ip, let a = fin.tuple, let b = fout.tuple else {
            return "a frame the datapath does not read was changed"
        }
        // bytes outside the translated fields are unchanged
        let alen = fin.v6 ? 16 : 4
        var allowed = Set<Int>()
        for t in [a] + (fin.quote.map { [$0] } ?? []) {
            allowed.formUnion(t.srcOff..<(t.srcOff + alen))
            allowed.formUnion(t.dstOff..<(t.dstOff + alen))
            if t.portsOff != a.portsOff || fin.icmpType == nil { allowed.formUnion(t.portsOff..<(t.portsOff + 4)) }
        }
        for off in fin.checksumOffsets { allowed.formUnion(off..<(off + 2)) }
        if let off = (0..<input.count).first(where: { input[$0] != output[$0] && !allowed.contains($0) }) {
            return "byte \(off) changed outside the translated fields"
        }
        // every checksum that held still holds; a zero UDP checksum stays zero
        for (name, ok) in fin.verifiable where ok && fout.verifiable[name] != true {
            return "the \(name) checksum held on the way in, not on the way out"
        }
        if fin.udpZeroChecksum && !fout.udpZeroChecksum { return "a zero UDP checksum was filled in" }
        if fin.quoteUDPZeroChecksum && !(fout.quote.map { _ in fout.quoteUDPZeroChecksum } ?? true) {
            return "a zero quoted UDP checksum was filled in"
        }
        guard fin.icmpType != nil else { return translatedWhole(a, b, proto: fin.proto, quoted: false) }
        // an ICMP error: the quote is translated whole (the inverse of the packet it quotes),
        // the outer header as the quote says
        guard let qa = fin.quote, let qb = fout.quote else { return "a quote appeared or vanished" }
        if let why = translatedWhole(qa, qb, proto: fin.quoteProto, quoted: true) { return "quote: \(why)" }
        if qa.dst != qb.dst || qa.dport != qb.dport {
            // about the client's packet: outer source backend -> VIP, or kept
            guard b.dst == a.dst, b.src == a.src || (a.src == qa.dst && b.src == qb.dst) else {
                return "outer header \(a.src) -> \(a.dst) became \(b.src) -> \(b.dst) for a quote \(qa.dst) -> \(qb.dst)"
            }
        } else {
            // about a reply: outer destination VIP -> backend, or kept
            guard b.src == a.src, b.dst == a.dst || (a.dst == qa.src && b.dst == qb.src) else {
                return "outer header \(a.src) -> \(a.dst) became \(b.src) -> \(b.dst) for a quote \(qa.src) -> \(qb.src)"
            }
        }
        return nil
    }

    /// One side moved whole: the destination from a VIP to one of its backends, or the
    /// source from a backend to its VIP. A quote moves the other way (it quotes a packet
    /// that was translated so): the destination back from a backend to its VIP, the source
    /// back from the VIP to the backend.
    func translatedWhole(_ a: FrameFacts.Tuple, _ b: FrameFacts.Tuple, proto: UInt8, quoted: Bool) -> String? {
        let src = (a.src != b.src || a.sport != b.sport)
        let dst = (a.dst != b.dst || a.dport != b.dport)
        guard src != dst else { return src ? "both sides changed" : "nothing changed but checksums" }
        let from = dst ? Endpoint(address: a.dst, port: a.dport) : Endpoint(address: a.src, port: a.sport)
        let to = dst ? Endpoint(address: b.dst, port: b.dport) : Endpoint(address: b.src, port: b.sport)
        // (VIP, backend) of the move
        let (vip, backend) = dst != quoted ? (from, to) : (to, from)
        guard everBackends[DatapathFuzz.key(vip, proto)]?.contains(backend) == true else {
            return "\(dst ? "destination" : "source") \(from) became \(to): not a VIP and one of its backends"
        }
        return nil
    }

    // MARK: running

    /// Runs the packets through a dataplane loaded for this run (removed after).
    public mutating func run(progress: ((Int) -> Void)? = nil) throws -> Report {
        let pins = PinDirectory("/sys/fs/bpf/ctctl-fuzz-\(getpid())-\(seed)")
        try Loader.load(pins, options: LoadOptions())
        defer { try? Loader.unload(pins) }
        let dp = try ReferenceDataplane(pins, readOnly: false)
        try program(dp, lock: WriterLock(pins))
        let prog = try TCProgram(dp)
        var report = Report()
        report.seed = seed
        let start = Date()
        var counters = try dp.counterTotals().map(\.value)
        let quiet: Set<String> = ["packets"]
        for i in 0..<count {
            if i > 0 && i % 50_000 == 0 {
                // services change now and then: the epoch re-check and re-balancing run too
                let s = rng.below(services.count - 1)
                services[s].backends = services[s].backends.isEmpty ? [] : [rng.pick(services[s].backends)]
                if rng.chance(50), let b = services[s].backends.first {
                    services[s].backends.append(Endpoint(address: b.address, port: b.port &+ 1))
                }
                try program(dp, lock: WriterLock(pins))
            }
            var packet = template()
            if rng.chance(50) { packet = mutate(packet) }
            // the kernel hands TC nothing shorter than an Ethernet header (nor does test_run)
            if packet.count < 14 { packet += rng.bytes(14 - packet.count) }
            guard let run = try prog.runIfAccepted(packet) else {
                // the kernel's test_run refuses some frames itself (an IP ethertype with less
                // than an IP header behind it): they never reach the program here
                report.classes["not run: refused by BPF_PROG_TEST_RUN", default: 0] += 1
                report.packets += 1
                continue
            }
            let now = try dp.counterTotals().map(\.value)
            let moved = zip(DatapathCounter.names, zip(now, counters)).filter { $1.0 != $1.1 && !quiet.contains($0) }.map(\.0)
            counters = now
            let verdict = run.verdict == TCRun.ok ? "pass" : run.verdict == TCRun.shot ? "drop" : "verdict \(run.verdict)"
            let changed = run.packet != packet
            let cls = "\(verdict)\(changed ? ", translated" : ""): \(moved.isEmpty ? "-" : moved.joined(separator: "+"))"
            report.classes[cls, default: 0] += 1
            var problem: String? = nil
            if run.verdict != TCRun.ok && run.verdict != TCRun.shot {
                problem = "verdict \(run.verdict)"
            } else if run.verdict == TCRun.ok && changed {
                report.translated += 1
                problem = check(packet, run.packet)
            }
            if let problem {
                report.failureCount += 1
                if report.failures.count < 20 {
                    report.failures.append(
                        "packet \(i) (seed \(seed)): \(problem); in \(packet.map { String(format: "%02x", $0) }.joined())")
                }
            }
            report.packets += 1
            if i % 10_000 == 0 { progress?(i) }
        }
        report.seconds = Date().timeIntervalSince(start)
        return report
    }
}

/// FrameCheck's byte reader, for the mutations.
enum FrameCheckAccess {
    static func u16(_ b: [UInt8], _ i: Int) -> UInt16 { UInt16(b[i]) << 8 | UInt16(b[i + 1]) }
}
