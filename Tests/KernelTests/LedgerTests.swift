import CLibBPF
import TestSupport
import Testing

@testable import ConntrackKit

@Suite("stale judging: the pair ledger agrees with a lookup of every partner")
struct LedgerTests {
    @Test("ledger, direct partner checks, and an overflowed ledger give the same verdicts on a realistic fill")
    func equivalence() throws {
        try withFilledDataplane("ledger", entries: 100_000) { t, counts in
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
