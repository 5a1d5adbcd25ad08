import CLibBPF
import ConntrackKit
import Foundation
import Testing

/// The ABI header's tables (counters, rules) are the one source: ctctl's names and the docs
/// follow them, and a drift fails here.
@Suite("ABI tables (no kernel)")
struct ABITableTests {
    static let docs = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("docs")

    @Test("every stale reason is the ABI rule of the same name, in order")
    func reasonsAreRules() {
        let rules = (0..<UInt32(CTCTL_RULE_MAX.rawValue)).map { String(cString: CLibBPF_rule_name($0)!) }
        #expect(rules == ["requested"] + StaleReason.allCases.map(\.rawValue))
        #expect(CLibBPF_rule_name(UInt32(CTCTL_RULE_MAX.rawValue)) == nil)
    }

    @Test("every datapath counter has a unique name and a row in docs/maps.md")
    func countersDocumented() throws {
        let names = DatapathCounter.names
        #expect(names.count == Int(CTCTL_CNT_MAX.rawValue))
        #expect(Set(names).count == names.count)
        #expect(names.prefix(3) == ["packets", "ct_hit", "ct_miss"])
        let maps = try String(contentsOf: ABITableTests.docs.appendingPathComponent("maps.md"), encoding: .utf8)
        for (i, name) in names.enumerated() {
            #expect(maps.contains("| \(i) | `\(name)` | \(DatapathCounter.helps[i]) |"), "docs/maps.md row for \(name)")
        }
    }

    @Test("the rules the judge calls are the datapath's (bpf/include/ctctl_rules.h)")
    func rulesFromTheHeader() {
        let s: UInt64 = 1_000_000_000
        let t = try! Timeouts(parsing: "udp=60s,tcp=1h,tcp-closing=3s,other=10m")
        #expect(t.timeout(proto: 6, flags: 0) == 3600 * s)
        #expect(t.timeout(proto: 6, flags: CTCTL_CT_F_FIN) == 3 * s)
        #expect(t.timeout(proto: 6, flags: CTCTL_CT_F_RST) == 3 * s)
        #expect(t.timeout(proto: 17, flags: CTCTL_CT_F_FIN) == 60 * s, "UDP ignores TCP flags")
        #expect(t.timeout(proto: 132, flags: 0) == 600 * s)
        // a half past its own timeout is expired unless its intact partner is live
        #expect(ctctl_expired_entry(1, UInt8(CTCTL_CT_NORMAL.rawValue), 0, 0) == 1)
        #expect(ctctl_expired_entry(1, UInt8(CTCTL_CT_NAT_FWD.rawValue), 1, 0) == 0)
        #expect(ctctl_expired_entry(1, UInt8(CTCTL_CT_NAT_FWD.rawValue), 1, 1) == 1)
        #expect(ctctl_expired_entry(1, UInt8(CTCTL_CT_NAT_REV.rawValue), 0, 0) == 1)
        #expect(ctctl_expired_entry(0, UInt8(CTCTL_CT_NAT_REV.rawValue), 0, 1) == 0)
        #expect(ctctl_frontend_active(0) == 0 && ctctl_frontend_active(1) == 1)
        #expect(ctctl_frontend_active(CTCTL_MAX_BACKENDS) == 1 && ctctl_frontend_active(CTCTL_MAX_BACKENDS + 1) == 0)
    }

    @Test("entry types are the header's CTCTL_CT_* values; every pin is a header pin, each once")
    func entryTypesAndPins() {
        #expect(EntryType.normal.rawValue == UInt8(CTCTL_CT_NORMAL.rawValue))
        #expect(EntryType.natForward.rawValue == UInt8(CTCTL_CT_NAT_FWD.rawValue))
        #expect(EntryType.natReverse.rawValue == UInt8(CTCTL_CT_NAT_REV.rawValue))
        #expect(EntryType.allCases.count == 3)
        let header = [
            CTCTL_PIN_CT, CTCTL_PIN_NAT_FE, CTCTL_PIN_NAT_BE, CTCTL_PIN_COUNTERS, CTCTL_PIN_ATTACH, CTCTL_PIN_STAGE,
            CTCTL_PIN_CONFIG, CTCTL_PIN_STATE, CTCTL_PIN_PROG_TC, CTCTL_PIN_PROG_STAGE,
        ]
        #expect(Loader.allPins.sorted() == header.sorted())
    }
}
