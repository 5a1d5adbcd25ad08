import CLibBPF
import Foundation
import Logging
import NetLab
import TestSupport
import Testing

@testable import ConntrackKit

/// ctctl repairing Calico's own maps while Calico's own datapath (../shared/calico/calico-lab)
/// writes them: v3.29 and current, IPv4 and IPv6. Every verdict is checked against what
/// Calico's programs do with the next packet.
@Suite("Calico's maps, repaired (calico-lab)", .enabled(if: CalicoLab.available, "../shared/calico is absent"))
struct CalicoWriteTests {
    typealias Net = CalicoReadTests.Net
    static let cases = CalicoReadTests.cases

    /// The incident, by Calico's program: the stuck flow's next packet leaves untranslated.
    /// `healing`: a watching heal runs, and may repair the flow before the last look.
    static func incident(_ lab: CalicoLab, _ n: Net, client: String, healing: Bool = false) throws {
        try lab.setService(n.service, [n.b1])
        #expect(try lab.packet("udp", client, n.vip).nat == "dnat")
        try lab.deleteService(n.service)
        // the orphaned pair goes (felix's scanner, or expiry); the client keeps sending
        try CalicoWriteTests.dropPair(lab, n, client: client)
        #expect(try lab.packet("udp", client, n.vip).nat == "no-nat", "no service: a NORMAL entry")
        try lab.setService(n.service, [n.b1])
        if !healing {
            #expect(try lab.packet("udp", client, n.vip).nat == "no-nat", "the service is back, the flow is not")
        }
    }

    /// Deletes the client's NAT pair as Calico's expiry would (the flow went quiet).
    static func dropPair(_ lab: CalicoLab, _ n: Net, client: String) throws {
        let r = ctctl([
            "conntrack", "remove", "udp", n.vipAddr, Endpoint(client)!.address.description, "--pin-dir", lab.pins.path,
        ])
        #expect(r.status == 0 || r.status == 1, "\(r.err)")
    }

    func entries(_ lab: CalicoLab, _ n: Net, client: String) throws -> [String] {
        try lab.entries(family: n.v6 ? 6 : 4).filter {
            $0.contains(client + " ") || $0.contains(client + "}") || $0.hasSuffix(client)
        }
    }

    @Test("remove fixes the incident: Calico's next packet is translated and Calico writes a fresh pair", arguments: cases)
    func removeFixesTheIncident(_ version: String, _ v6: Bool) throws {
        try withCalicoLab("remove-\(version)-\(v6 ? 6 : 4)", version: version) { lab in
            let n = Net(v6: v6)
            try CalicoWriteTests.incident(lab, n, client: n.stuck)
            let stuckAddr = Endpoint(n.stuck)!.address.description
            let r = ctctl(["conntrack", "remove", "udp", n.vipAddr, stuckAddr, "-o", "json", "--pin-dir", lab.pins.path])
            #expect(r.status == 0, "\(r.err)")
            let removed = try jsonArray(r.out)
            #expect(removed.map { "\($0["type"]!) \($0["result"]!)" } == ["normal deleted"], "\(r.out)")
            #expect(try lab.packet("udp", n.stuck, n.vip).to == n.b1, "Calico translates the next packet")
            let after = try entries(lab, n, client: n.stuck)
            #expect(
                after.filter { $0.contains("type=NAT_FWD") }.count == 1
                    && after.filter { $0.contains("type=NAT_REV") }.count == 1, "\(after)")
            #expect(!after.contains { $0.contains("type=NORMAL") }, "\(after)")
        }
    }

    @Test("heal --once fixes the incident, and keeps what Calico would keep", arguments: cases)
    func healOnceFixesTheIncident(_ version: String, _ v6: Bool) throws {
        try withCalicoLab("heal-\(version)-\(v6 ? 6 : 4)", version: version) { lab in
            let n = Net(v6: v6)
            try CalicoWriteTests.incident(lab, n, client: n.stuck)
            // what Calico would keep: a NAT pair to a live backend, a NORMAL entry to a non-service
            #expect(try lab.packet("udp", n.client, n.vip).nat == "dnat")
            let other = n.w(v6 ? "2001:db8:9::9" : "198.18.9.9", 53)
            #expect(try lab.packet("udp", n.client, other).nat == "no-nat")
            let before = try lab.entries()
            let r = ctctl(["heal", "--once", "-o", "json", "--pin-dir", lab.pins.path])
            #expect(r.status == 0, "\(r.err)")
            let healed = try jsonArray(r.out)
            #expect(healed.map { "\($0["reason"]!) \($0["result"]!)" } == ["missed-nat deleted"], "\(r.out)")
            #expect(r.err.contains("healed: 1 entry deleted"), "\(r.err)")
            #expect(try lab.packet("udp", n.stuck, n.vip).to == n.b1, "Calico translates the stuck flow's next packet")
            let kept = try lab.entries()
            #expect(kept.count == before.count + 1, "the NORMAL went, a NAT pair came, nothing else changed")
            let again = ctctl(["heal", "--once", "--pin-dir", lab.pins.path])
            #expect(again.status == 1, "nothing stale any more: \(again.err)")
        }
    }

    @Test(
        "heal --once on a filled Calico map deletes every stale entry exactly once; orphans wait 200 ms while other deletes go ahead",
        arguments: [1, 2])
    func healOnceThroughThePipeline(_ threads: Int) throws {
        try withCalicoLab("pipeline-\(threads)", version: "head") { lab in
            let n = 250_000
            try CalicoFill.resize(lab.pins, map: "cali_v4_ct4", entries: n)
            let fill = CalicoFill(entries: n)
            try fill.createServices { _ = try lab.lab($0) }
            let counts = try fill.write(lab.pins.pin("cali_v4_ct4"), now: Timestamp.monotonicNow())
            #expect(counts.orphanPairs * 2 > CalicoRemover.orphanCapacity, "a full buffer of orphans is handed over early")
            let r = ctctl(["heal", "--once", "-o", "json", "--threads", "\(threads)", "--pin-dir", lab.pins.path])
            try expectHealedExactly(r, stale: counts.stale, pinDir: lab.pins.path)
        }
    }

    @Test(
        "remove leaves no half pair, unlike Calico's own: the NAT_REV goes with its NAT_FWD, either way round", arguments: cases)
    func removeLeavesNoHalfPair(_ version: String, _ v6: Bool) throws {
        try withCalicoLab("pairs-\(version)-\(v6 ? 6 : 4)", version: version) { lab in
            let n = Net(v6: v6)
            try lab.setService(n.service, [n.b1])
            #expect(try lab.packet("udp", n.client, n.vip).nat == "dnat")
            #expect(try lab.packet("udp", n.after, n.vip).nat == "dnat")
            let clientAddr = Endpoint(n.client)!.address.description
            // by VIP and client (matches the NAT_FWD): its NAT_REV goes too
            let r = ctctl(["conntrack", "remove", "udp", n.vipAddr, clientAddr, "--pin-dir", lab.pins.path])
            #expect(r.status == 0 && r.err.contains("2 entries removed"), "\(r.err)")
            #expect(try entries(lab, n, client: n.client).isEmpty, "no half pair left")
            // by backend and client (matches the NAT_REV): its NAT_FWD goes too
            let afterAddr = Endpoint(n.after)!.address.description
            let b = ctctl([
                "conntrack", "remove", "udp", Endpoint(n.b1)!.address.description, afterAddr, "--pin-dir", lab.pins.path,
            ])
            #expect(b.status == 0 && b.err.contains("2 entries removed"), "\(b.err)")
            #expect(try entries(lab, n, client: n.after).isEmpty, "no half pair left")
            // Calico starts both flows afresh
            #expect(try lab.packet("udp", n.client, n.vip).to == n.b1)
            #expect(try lab.packet("udp", n.after, n.vip).to == n.b1)
        }
    }

    /// Snapshots of judged entries (key and value bytes), kept across a change by Calico.
    struct Judged {
        let key: [UInt8]
        let value: [UInt8]
        let reason: StaleReason
    }

    func judge(_ dp: CalicoDataplane) throws -> [Judged] {
        var out: [Judged] = []
        let judge = StaleJudge(try dp.staleRules(holdingLock: false), now: Timestamp.monotonicNow())
        try EntryScan(dp, filter: ConntrackFilter(), judge: judge).run { e, r in
            out.append(
                Judged(
                    key: Array(UnsafeRawBufferPointer(start: e.key, count: e.format.keySize)),
                    value: Array(UnsafeRawBufferPointer(start: e.value, count: e.format.valueSize)), reason: r!))
        }
        return out
    }

    func delete(_ dp: CalicoDataplane, _ judged: [Judged]) throws -> [DeleteOutcome] {
        var outcomes: [DeleteOutcome] = []
        let lock = try dp.writerLock(timeoutMs: 5000)
        let remover = try dp.remover(lock: lock) { _, _, o in outcomes.append(o) }
        for j in judged {
            let f = dp.families[0]
            try j.key.withUnsafeBytes { k in
                try j.value.withUnsafeBytes { v in try remover.add(f.entry(k.baseAddress!, v.baseAddress!), reason: j.reason) }
            }
        }
        try remover.flush()
        return outcomes
    }

    @Test("a NAT pair Calico re-creates to a different backend between the scan and the delete survives")
    func recreatedPairSurvives() throws {
        for version in ["v3.29", "head"] {
            try withCalicoLab("recreated-\(version)", version: version) { lab in
                let n = Net(v6: false)
                try lab.setService(n.service, [n.b1])
                #expect(try lab.packet("udp", n.client, n.vip).to == n.b1)
                try lab.setService(n.service, [n.b2])  // b1 removed: the pair is orphan-nat
                let dp = try CalicoDataplane.open(lab.pins, readOnly: false, options: LayoutOptions())
                let judged = try judge(dp)
                #expect(judged.map(\.reason) == [.orphanNAT, .orphanNAT])
                // meanwhile the pair expires and the client's next packet makes a new one, to b2
                try CalicoWriteTests.dropPair(lab, n, client: n.client)
                #expect(try lab.packet("udp", n.client, n.vip).to == n.b2)
                let outcomes = try delete(dp, judged)
                #expect(outcomes.sorted { "\($0)" < "\($1)" } == [.changed, .gone], "\(outcomes)")
                let now = try entries(lab, n, client: n.client)
                #expect(now.count == 2 && now.allSatisfy { !$0.contains(n.b1) }, "the new pair to b2 is whole: \(now)")
                #expect(try lab.packet("udp", n.client, n.vip).to == n.b2)
            }
        }
    }

    @Test("a verdict whose rule no longer holds at delete time is kept: the frontend is re-checked right before")
    func ruleRecheckedBeforeDelete() throws {
        try withCalicoLab("recheck", version: "head") { lab in
            let n = Net(v6: false)
            try CalicoWriteTests.incident(lab, n, client: n.stuck)
            let dp = try CalicoDataplane.open(lab.pins, readOnly: false, options: LayoutOptions())
            let judged = try judge(dp)
            #expect(judged.map(\.reason) == [.missedNAT])
            try lab.deleteService(n.service)  // gone again before the delete
            #expect(try delete(dp, judged) == [.noLongerStale])
            #expect(try entries(lab, n, client: n.stuck).count == 1, "the NORMAL entry is kept")
        }
    }

    @Test("a lone NAT_REV, which blackholes its flow in Calico, is healed: the flow is translated again")
    func loneNatRevHealed() throws {
        for version in ["v3.29", "head"] {
            try withCalicoLab("lone-\(version)", version: version) { lab in
                let n = Net(v6: false)
                try lab.setService(n.service, [n.b1])
                #expect(try lab.packet("udp", n.client, n.vip).nat == "dnat")
                // what `calico-node -bpf conntrack remove` leaves: the NAT_FWD gone, the NAT_REV not
                let dp = try CalicoDataplane.open(lab.pins, readOnly: false, options: LayoutOptions())
                let f = dp.families[0]
                let key = dp.defaultScratch.of(false).key
                f.format.writeKey(key, proto: 17, Endpoint(n.client)!, Endpoint(n.vip)!)
                #expect(try f.ct.delete(UnsafeRawPointer(key)))
                #expect(try lab.packet("udp", n.client, n.vip).dropped, "Calico drops the flow")
                let r = ctctl(["heal", "--once", "-o", "json", "--pin-dir", lab.pins.path])
                #expect(try jsonArray(r.out).map { "\($0["reason"]!) \($0["result"]!)" } == ["half-pair deleted"], "\(r.out)")
                #expect(try lab.packet("udp", n.client, n.vip).to == n.b1, "translated again")
            }
        }
    }

    /// Runs the watching heal on a lab in this process until `stop`.
    final class Daemon: @unchecked Sendable {
        let logs = LockedStream()
        private let stopFlag = Flag()
        private var thread: Thread?
        private var finished = Flag()

        init(_ pins: PinDirectory) throws {
            var config = HealDaemon.Config()
            config.intervalNs = 3_600_000_000_000
            let daemon = try HealDaemon(
                .at(pins), config: config, logger: Logger(label: "test", factory: { [logs] _ in LogfmtHandler(stream: logs) }))
            let handed = Unchecked(daemon)
            let stop = stopFlag
            let done = finished
            thread = Thread {
                handed.value.run { stop.isSet }
                done.set()
            }
            thread!.start()
        }

        func stop() {
            stopFlag.set()
            let deadline = Date().addingTimeInterval(10)
            while !finished.isSet && Date() < deadline { Thread.sleep(forTimeInterval: 0.01) }
        }
    }

    /// Sends the client's packet every 20 ms until Calico translates it (at most `seconds`);
    /// returns the seconds from `t0` to the first translated packet.
    static func firstTranslated(_ lab: CalicoLab, _ n: Net, client: String, after t0: UInt64, seconds: Double) throws -> Double? {
        let deadline = t0 + UInt64(seconds * 1e9)
        while Timestamp.monotonicNow() < deadline {
            if try lab.packet("udp", client, n.vip).nat == "dnat" { return Double(Timestamp.monotonicNow() - t0) / 1e9 }
            usleep(20_000)
        }
        return nil
    }

    @Test(
        "a running heal recovers the flow within 1 s of the frontend being written back (Calico's scanner: 10 s)",
        arguments: cases)
    func watchingHeal(_ version: String, _ v6: Bool) throws {
        try withCalicoLab("watch-\(version)-\(v6 ? 6 : 4)", version: version) { lab in
            let n = Net(v6: v6)
            try lab.setService(n.service, [n.b1])
            let daemon = try Daemon(lab.pins)
            defer { daemon.stop() }
            #expect(try lab.packet("udp", n.stuck, n.vip).nat == "dnat")
            try lab.deleteService(n.service)
            // the daemon heals the orphaned pair (bounded wait); the client keeps sending
            let deadline = Date().addingTimeInterval(3)
            while try !entries(lab, n, client: n.stuck).isEmpty && Date() < deadline { usleep(20_000) }
            #expect(try entries(lab, n, client: n.stuck).isEmpty, "the orphaned pair was healed: \(daemon.logs.text)")
            #expect(try lab.packet("udp", n.stuck, n.vip).nat == "no-nat", "no service: a NORMAL entry")
            let t0 = Timestamp.monotonicNow()
            try lab.setService(n.service, [n.b1])
            let took = try CalicoWriteTests.firstTranslated(lab, n, client: n.stuck, after: t0, seconds: 3)
            let seconds = try #require(took, "the flow recovered: \(daemon.logs.text)")
            #expect(seconds < 1.0, "recovered \(seconds) s after the service came back: \(daemon.logs.text)")
            #expect(daemon.logs.text.contains("watching Calico's services in the kernel"), "\(daemon.logs.text)")
            print(
                "calico \(version) ipv\(v6 ? 6 : 4): recovered \(String(format: "%.3f", seconds)) s after the frontend was written back"
            )
        }
    }

    @Test(
        "the watching heal's service version changes with every service change, and only then: read in full, or watched in the kernel",
        arguments: [(false, false), (true, false), (false, true), (true, true)])
    func serviceVersionSeesChanges(_ v6: Bool, _ inKernel: Bool) throws {
        try withCalicoLab("version-\(v6 ? 6 : 4)-\(inKernel)", version: "head") { lab in
            let n = Net(v6: v6)
            let other = v6 ? "[2001:db8:99::1]:53/udp" : "198.19.99.1:53/udp"
            let dp = try CalicoDataplane.open(lab.pins, readOnly: false, options: LayoutOptions())
            if inKernel {
                let how = dp.watchServices() ?? ""
                #expect(how.contains("in the kernel"), "\(how)")
            }
            var seen = [try dp.serviceVersion()]
            func expectChanged(_ what: String, afterBackendPoll: Bool = false) throws {
                if afterBackendPoll { usleep(1_050_000) }  // backends are looked at once a second
                let v = try dp.serviceVersion()
                #expect(v != seen.last, "\(what)")
                #expect(try dp.serviceVersion() == v, "read again without a change: \(what)")
                seen.append(v)
            }
            try lab.setService(n.service, [n.b1])
            try expectChanged("a frontend added")
            try lab.setService(n.service, [n.b1, n.b2])
            try expectChanged("a frontend rewritten in place (two backends)")
            try lab.setService(n.service, [n.b2, n.b1])
            try expectChanged("backends rewritten", afterBackendPoll: true)
            // one frontend deleted and another added between two polls: the trie's size is
            // the same, and the watch must still see it
            try lab.deleteService(n.service)
            try lab.setService(other, [n.b1])
            try expectChanged("a frontend replaced by another")
            try lab.deleteService(other)
            try expectChanged("a frontend deleted")
        }
    }

    @Test("a running heal follows Calico's maps when felix re-pins them (the lab torn down and brought up again)")
    func followsRepin() throws {
        try withCalicoLab("repin", version: "head", onHostBPFFS: true) { lab in
            let n = Net(v6: false)
            let daemon = try Daemon(lab.pins)
            defer { daemon.stop() }
            usleep(200_000)
            try CalicoLab.run(["down", "--bpffs", lab.dir])
            try CalicoLab.run(["up", "--bpffs", lab.dir, "--version", "head"])
            try CalicoWriteTests.incident(lab, n, client: n.stuck, healing: true)
            let recovered = try CalicoWriteTests.firstTranslated(
                lab, n, client: n.stuck, after: Timestamp.monotonicNow(), seconds: 5)
            #expect(recovered != nil, "healed in the new maps: \(daemon.logs.text)")
            #expect(
                daemon.logs.text.contains("following the new maps") || daemon.logs.text.contains("dataplane is back"),
                "\(daemon.logs.text)")
        }
    }

    @Test("dataplane attach refuses an interface that carries Calico's TC programs")
    func attachRefusesCalico() throws {
        try withCalicoLab("attach", version: "head") { lab in
            try withDataplane("calico-attach") { t in
                let ns = "ctctl-\(getpid())-calattach"
                try sh(["ip", "netns", "add", ns])
                defer { _ = try? sh(["ip", "netns", "del", ns], allowFailure: true) }
                for ifname in ["cal0", "free0"] {
                    try sh(["ip", "-n", ns, "link", "add", ifname, "type", "veth", "peer", "name", ifname + "p"])
                }
                let enter = ["nsenter", "--net=/run/netns/\(ns)"]
                try sh(enter + ["tc", "qdisc", "add", "dev", "cal0", "clsact"])
                try sh(
                    enter + [
                        "tc", "filter", "add", "dev", "cal0", "ingress", "bpf", "direct-action", "pinned",
                        lab.dir + "/calico-lab/from_wep_preamble",
                    ])
                let r = ctctl(["dataplane", "attach", "cal0", "--netns", ns, "--pin-dir", t.pins.path])
                #expect(r.status == 64 && r.err.contains("Calico's TC programs"), "\(r.err)")
                let ok = ctctl(["dataplane", "attach", "free0", "--netns", ns, "--pin-dir", t.pins.path])
                #expect(ok.status == 0, "\(ok.err)")
                #expect(ctctl(["dataplane", "detach", "free0", "--netns", ns, "--pin-dir", t.pins.path]).status == 0)
            }
        }
    }
}
