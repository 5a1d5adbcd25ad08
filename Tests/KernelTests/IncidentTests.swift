import ConntrackKit
import NetLab
import Testing

@Suite("the incident, end to end (the demo's scenarios, short)")
struct IncidentTests {
    @Test("stuck while unfixed; each fix recovers; a running heal in under a second; the epoch fix on the next packet")
    func incident() throws {
        var config = Incident.Config(ctctl: ctctlBinary())
        config.phaseSeconds = 0.8
        config.narrate = false
        config.handleSignals = false
        let incident = Incident(config)
        try incident.run()

        let phases = Dictionary(
            incident.phases.map { ($0.0, ($0.1, $0.2)) }, uniquingKeysWith: { a, b in (a.0 + b.0, a.1 + b.1) })
        let up = try #require(phases["up"])
        #expect(up.1 > 0 && up.1 == up.0, "with the service up every datagram arrives: \(up)")
        #expect(phases["deleted"]?.1 == 0, "nothing arrives while the service is gone")
        let stuck = try #require(phases["stuck"])
        #expect(stuck.0 > 0 && stuck.1 == 0, "nothing arrives after the service came back, unfixed: \(stuck)")

        let results = Dictionary(uniqueKeysWithValues: incident.results.map { ($0.scenario, $0) })
        #expect(results.count == 4)
        for name in ["ctctl conntrack remove", "ctctl heal --once"] {
            let r = try #require(results[name])
            #expect(r.deliveredWhileStuck == 0, "\(name): stuck until the fix")
            #expect(r.recoverySeconds != nil, "\(name) recovers the flow")
            #expect((r.recoverySeconds ?? 99) < 1.0, "\(name): delivery within a second of the command")
        }
        let heal = try #require(results["running ctctl heal"])
        #expect(
            (heal.recoverySeconds ?? 99) < 1.0,
            "a running heal recovers in under a second: \(String(describing: heal.recoverySeconds))")
        let epoch = try #require(results["epoch fix (datapath)"])
        #expect(
            epoch.firstPacketDelivered,
            "the first datagram sent after the service came back is delivered: recovery within one send interval")
        #expect((epoch.recoverySeconds ?? 99) < 1.0)
    }
}
