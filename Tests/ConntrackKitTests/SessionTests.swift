import Testing

@testable import ConntrackKit

@Suite("which dataplane a command opens (no kernel)")
struct SessionTests {
    func choose(_ explicit: String?, _ named: (any Dataplane.Type)?, holding: [(any Dataplane.Type, String)])
        -> (String, String, String?)
    {
        let (pins, type, notice) = Session.choose(explicit: explicit.map(PinDirectory.init), named: named) { t, dir in
            holding.contains { ObjectIdentifier($0.0) == ObjectIdentifier(t) && $0.1 == dir.path }
        }
        return (pins.path, type.layoutName, notice)
    }

    @Test("no directory named: ctctl's own if it is there, else Calico's, and it says so")
    func fallback() {
        let both = choose(
            nil, nil, holding: [(ReferenceDataplane.self, "/sys/fs/bpf/ctctl"), (CalicoDataplane.self, "/sys/fs/bpf/tc/globals")])
        #expect(both.0 == "/sys/fs/bpf/ctctl" && both.1 == "ctctl" && both.2 == nil)
        let calico = choose(nil, nil, holding: [(CalicoDataplane.self, "/sys/fs/bpf/tc/globals")])
        #expect(calico.0 == "/sys/fs/bpf/tc/globals" && calico.1 == "calico")
        #expect(calico.2?.contains("using the calico maps at /sys/fs/bpf/tc/globals") == true)
        let none = choose(nil, nil, holding: [])
        #expect(none.0 == "/sys/fs/bpf/ctctl" && none.1 == "ctctl", "nothing anywhere: ctctl's errors say how to load one")
    }

    @Test("a directory named: the layout found there; a layout named: its default directory")
    func named() {
        #expect(choose("/x/tc/globals", nil, holding: [(CalicoDataplane.self, "/x/tc/globals")]).1 == "calico")
        #expect(choose("/x/ctctl", nil, holding: []).1 == "ctctl")
        #expect(choose(nil, CalicoDataplane.self, holding: []).0 == "/sys/fs/bpf/tc/globals")
        #expect(choose("/y", CalicoDataplane.self, holding: [(ReferenceDataplane.self, "/y")]).1 == "calico", "--layout wins")
    }
}
