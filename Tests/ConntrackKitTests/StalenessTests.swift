import CLibBPF
import ConntrackKit
import Testing

@Suite("staleness rules (no kernel)")
struct StalenessTests {
    static let s = 1_000_000_000 as UInt64
    static let now = 1000 * s

    static func view(_ services: [(String, [String])]) -> ReferenceServiceView {
        ReferenceServiceView.of(
            services.enumerated().map { i, x in
                Service(ref: ServiceRef(x.0)!, id: UInt32(i + 1), backends: x.1.map { Endpoint($0) })
            })
    }

    static let live = view([("198.19.0.10:161/udp", ["198.18.2.2:1161", "198.18.3.2:1161"]), ("198.19.0.30:53/udp", [])])

    func judge(_ e: Synthetic, view: ReferenceServiceView = StalenessTests.live, timeouts: Timeouts = Timeouts()) -> StaleVerdict
    {
        e.with { StaleJudge(ReferenceRules(view: view, timeouts: timeouts), now: StalenessTests.now).judge($0) }
    }

    var t: UInt64 { StalenessTests.now }
    var s: UInt64 { StalenessTests.s }

    @Test("missed-nat: a normal entry to what is now a service with backends")
    func missedNAT() {
        #expect(
            judge(.normal(.udp, "198.18.1.2:40000", "198.19.0.10:161", created: t - 5 * s, lastSeen: t)) == .stale(.missedNAT))
        #expect(judge(.normal(.udp, "[2001:db8:1::2]:40000", "[2001:db8::10]:161", created: t - 5 * s, lastSeen: t)) == .fresh)
    }

    @Test("not stale: a normal entry to a non-service, another port, another protocol, a service with no backends")
    func normalNotStale() {
        for (p, dst) in [
            (IPProto.udp, "198.18.9.9:53"), (.udp, "198.19.0.10:162"), (.tcp, "198.19.0.10:161"), (.udp, "198.19.0.30:53"),
        ] {
            #expect(judge(.normal(p, "198.18.1.2:40000", dst, created: t - 5 * s, lastSeen: t)) == .fresh, "\(p) \(dst)")
        }
        // the late-reply entry backend -> client is not addressed to the service
        #expect(judge(.normal(.udp, "198.18.2.2:1161", "198.18.1.2:40000", created: t - 5 * s, lastSeen: t)) == .fresh)
    }

    @Test("orphan-nat: the service is gone, or the backend is no longer one of its backends (both halves)")
    func orphanNAT() {
        let (f, r) = Synthetic.pair(
            .udp, client: "198.18.1.2:40000", vip: "198.19.0.10:161", backend: "198.18.2.2:1161", created: t - 5 * s, lastSeen: t)
        #expect(judge(f) == .fresh && judge(r) == .fresh)
        let gone = StalenessTests.view([])
        #expect(judge(f, view: gone) == .stale(.orphanNAT) && judge(r, view: gone) == .stale(.orphanNAT))
        let moved = StalenessTests.view([("198.19.0.10:161/udp", ["198.18.3.2:1161"])])
        #expect(judge(f, view: moved) == .stale(.orphanNAT) && judge(r, view: moved) == .stale(.orphanNAT))
        let otherPort = StalenessTests.view([("198.19.0.10:161/udp", ["198.18.2.2:1162"])])
        #expect(judge(f, view: otherPort) == .stale(.orphanNAT))
    }

    @Test("not stale: a NAT entry whose backend was removed and added back (under a new service id)")
    func backendBack() {
        let (f, r) = Synthetic.pair(
            .udp, client: "198.18.1.2:40000", vip: "198.19.0.10:161", backend: "198.18.2.2:1161", created: t - 5 * s, lastSeen: t)
        let recreated = ReferenceServiceView.of([
            Service(
                ref: ServiceRef("198.19.0.10:161/udp")!, id: 99,
                backends: [Endpoint("198.18.4.2:1161"), Endpoint("198.18.2.2:1161")])
        ])
        #expect(judge(f, view: recreated) == .fresh && judge(r, view: recreated) == .fresh)
    }

    @Test("half-pair is judged only past the grace period, through the kernel's partner check")
    func halfPairGrace() {
        let (young, _) = Synthetic.pair(
            .udp, client: "198.18.1.2:40000", vip: "198.19.0.10:161", backend: "198.18.2.2:1161", created: t - 9 * s, lastSeen: t)
        #expect(judge(young) == .fresh, "a fresh half pair inside the grace period is not stale")
        let (old, _) = Synthetic.pair(
            .udp, client: "198.18.1.2:40000", vip: "198.19.0.10:161", backend: "198.18.2.2:1161", created: t - 11 * s, lastSeen: t
        )
        #expect(judge(old) == .nat(idle: false, old: true))
    }

    @Test("expired: idle past the protocol's timeout; TCP after FIN or RST uses the closing timeout")
    func expired() {
        #expect(
            judge(.normal(.udp, "198.18.1.2:1", "198.18.9.9:53", created: t - 100 * s, lastSeen: t - 61 * s)) == .stale(.expired))
        #expect(judge(.normal(.udp, "198.18.1.2:1", "198.18.9.9:53", created: t - 100 * s, lastSeen: t - 59 * s)) == .fresh)
        #expect(judge(.normal(.tcp, "198.18.1.2:1", "198.18.9.9:80", created: t - 100 * s, lastSeen: t - 61 * s)) == .fresh)
        #expect(
            judge(
                .normal(.tcp, "198.18.1.2:1", "198.18.9.9:80", created: t - 100 * s, lastSeen: t - 31 * s, flags: CTCTL_CT_F_FIN))
                == .stale(.expired))
        #expect(
            judge(.normal(IPProto(132), "198.18.1.2:1", "198.18.9.9:9", created: t - 900 * s, lastSeen: t - 601 * s))
                == .stale(.expired))
        #expect(
            judge(.normal(.udp, "198.18.1.2:1", "198.18.9.9:53", created: t, lastSeen: t + 5)) == .fresh,
            "last seen after our clock read")
        let short = try! Timeouts(parsing: "udp=2s")
        #expect(
            judge(.normal(.udp, "198.18.1.2:1", "198.18.9.9:53", created: t - 5 * s, lastSeen: t - 3 * s), timeouts: short)
                == .stale(.expired))
    }

    @Test("an idle NAT half is judged with its partner (a pair expires as one flow)")
    func natIdle() {
        let (f, r) = Synthetic.pair(
            .udp, client: "198.18.1.2:40000", vip: "198.19.0.10:161", backend: "198.18.2.2:1161", created: t - 5 * s,
            lastSeen: t - 3 * s)
        let short = try! Timeouts(parsing: "udp=2s")
        #expect(
            judge(f, timeouts: short) == .nat(idle: true, old: false) && judge(r, timeouts: short) == .nat(idle: true, old: false)
        )
    }

    @Test("the incident is named before idleness: a stuck flow is missed-nat even when idle")
    func priority() {
        #expect(
            judge(.normal(.udp, "198.18.1.2:40000", "198.19.0.10:161", created: t - 100 * s, lastSeen: t - 70 * s))
                == .stale(.missedNAT))
        let (f, _) = Synthetic.pair(
            .udp, client: "198.18.1.2:40000", vip: "198.19.0.10:161", backend: "198.18.2.2:1161", created: t - 100 * s,
            lastSeen: t - 70 * s)
        #expect(judge(f, view: StalenessTests.view([])) == .stale(.orphanNAT))
    }
}
