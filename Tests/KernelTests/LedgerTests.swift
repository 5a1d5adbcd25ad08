import CLibBPF
import TestSupport
import Testing

@testable import ConntrackKit

@Suite("stale judging: the pair ledger agrees with a lookup of every partner")
struct LedgerTests {
    @Test("ledger, direct partner checks, and an overflowed ledger give the same verdicts on a realistic fill")
    func equivalence() throws {
        var o = LoadOptions()
        o.ctSize = 1 << 18
        o.timeouts = try Timeouts(parsing: "udp=30s,tcp=120s")
        try withDataplane("ledger", options: o) { t in
            let fill = BenchFill(entries: 100_000)
            try fill.createServices(t.dp, lock: t.lock())
            let counts = try fill.write(t.dp, now: Timestamp.monotonicNow())
            let now = Timestamp.monotonicNow()
            func verdicts(_ make: (StaleJudge<ReferenceRules>) -> EntryScan<ReferenceDataplane>) throws -> [String: String] {
                let judge = StaleJudge(try t.dp.staleRules(holdingLock: false), now: now)
                let scan = make(judge)
                var out: [String: String] = [:]
                try scan.run { e, r in out[FlowKey(e.key.pointee).description] = r!.rawValue }
                return out
            }
            let ledger = try verdicts { EntryScan(t.dp, filter: ConntrackFilter(), judge: $0) }
            let direct = try verdicts { EntryScan(t.dp, filter: ConntrackFilter(), judge: $0, ledger: false) }
            let overflowed = try verdicts { EntryScan(t.dp, filter: ConntrackFilter(), judge: $0, ledgerBits: 8) }
            #expect(ledger.count == counts.stale)
            #expect(ledger == direct)
            #expect(overflowed == direct)
            #expect(ledger.values.filter { $0 == "half-pair" }.count == counts.halfPairs)
        }
    }
}
