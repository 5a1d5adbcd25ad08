import CLibBPF
import Testing

@testable import ConntrackKit

extension PairLedger {
    /// A reference-layout half, by the layout's own identity.
    func add(_ e: ReferenceEntry) {
        let w = UnsafeMutablePointer<UInt64>.allocate(capacity: PairLedger.identityWords)
        defer { w.deallocate() }
        add(w, sign: ReferenceDataplane.ledgerIdentity(e, into: w))
    }
}

extension PairLedger.Element {
    var presentReferenceKey: ctctl_ct_key {
        var k = ctctl_ct_key()
        withUnsafeMutableBytes(of: &k) { raw in
            for (i, w) in presentKey.enumerated() { raw.storeBytes(of: w, toByteOffset: i * 8, as: UInt64.self) }
        }
        return k
    }
}

@Suite("the pair ledger (no kernel)")
struct PairLedgerTests {
    static func pair(_ i: Int, created: UInt64 = 1000) -> (Synthetic, Synthetic) {
        Synthetic.pair(
            .udp, client: "198.18.\(i / 60000 % 250).\(i / 250 % 240 + 1):\(1024 + i % 60000)",
            vip: "198.19.0.\(i % 7 + 1):161", backend: "198.18.200.\(i % 5 + 1):1161", created: created, lastSeen: created)
    }

    @Test("intact pairs cancel; lone halves come back whole, either half, whatever the order")
    func loneHalves() {
        let ledger = PairLedger()
        var lone: [(ctctl_ct_key, UInt64, Int)] = []
        for i in 0..<20_000 {
            let (f, r) = PairLedgerTests.pair(i, created: UInt64(1000 + i))
            switch i % 100 {
            case 7:
                f.with { ledger.add($0) }
                lone.append((f.key, UInt64(1000 + i), 1))
            case 13:
                r.with { ledger.add($0) }
                lone.append((r.key, UInt64(1000 + i), -1))
            default:
                if i % 2 == 0 {
                    r.with { ledger.add($0) }
                    f.with { ledger.add($0) }
                } else {
                    f.with { ledger.add($0) }
                    r.with { ledger.add($0) }
                }
            }
        }
        let (elements, complete) = ledger.decode()
        #expect(complete)
        #expect(elements.count == lone.count)
        let got = Set(elements.map { "\(FlowKey($0.presentReferenceKey)) \($0.tag) \($0.sign)" })
        let want = Set(lone.map { "\(FlowKey($0.0)) \($0.1) \($0.2)" })
        #expect(got == want)
    }

    @Test("a pair whose halves disagree (another created time, a partner not pointing back) does not cancel")
    func mismatched() {
        let ledger = PairLedger()
        let (f, r) = PairLedgerTests.pair(1, created: 500)
        var r2 = r
        r2.value.created_ns = 501
        f.with { ledger.add($0) }
        r2.with { ledger.add($0) }
        #expect(ledger.decode().elements.count == 2)
    }

    @Test("more lone halves than it can hold: decoding says it is incomplete")
    func overflow() {
        let ledger = PairLedger(bits: 6)  // 3 x 64 cells
        for i in 0..<1000 { PairLedgerTests.pair(i).0.with { ledger.add($0) } }
        #expect(!ledger.decode().complete)
    }
}
