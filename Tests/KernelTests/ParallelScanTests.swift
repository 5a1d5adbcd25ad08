import CLibBPF
import Foundation
import Testing

@testable import ConntrackKit

/// Reading a conntrack map with several threads over disjoint bucket ranges reads exactly
/// what one thread reads: every entry once, none lost, on static maps of many sizes and fills,
/// and no entry twice on a map the datapath is writing meanwhile.
@Suite("parallel scans over bucket ranges")
struct ParallelScanTests {
    /// Writes `n` random normal entries (fixed seed) with batch updates; returns how many
    /// the map holds afterwards (an LRU map may evict some).
    static func fill(_ dp: ReferenceDataplane, _ n: Int, seed: UInt64) throws {
        var rng = seed
        func next() -> UInt64 {
            rng = rng &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return rng >> 11
        }
        let batch = 4096
        var keys = [ctctl_ct_key](repeating: ctctl_ct_key(), count: batch)
        var values = [ctctl_ct_value](repeating: ctctl_ct_value(), count: batch)
        var written = 0
        let now = Timestamp.monotonicNow()
        while written < n {
            let m = min(batch, n - written)
            for i in 0..<m {
                let r = next()
                let src = Endpoint(
                    address: IPAddress(family: .v4, hi: (0xC612_0000 | (r & 0xffff)) << 32, lo: 0),
                    port: UInt16(truncatingIfNeeded: r >> 16))
                let dst = Endpoint(
                    address: IPAddress(family: .v4, hi: (0xC613_0000 | ((r >> 32) & 0xffff)) << 32, lo: 0),
                    port: UInt16(truncatingIfNeeded: r >> 48))
                keys[i] = FlowKey(proto: .udp, src: src, dst: dst).raw
                values[i] = ctctl_ct_value()
                values[i].created_ns = now
                values[i].last_seen_ns = now
            }
            var count = UInt32(m)
            #expect(CLibBPF_map_update_batch(dp.ct.fd, keys, values, &count, UInt64(BPF_ANY)) == 0)
            written += m
        }
    }

    typealias Key = ScanKey

    /// Every key a scan with `threads` threads reads.
    static func keys(_ dp: ReferenceDataplane, threads: Int) throws -> [Key] {
        let scan = EntryScan(dp, filter: ConntrackFilter())
        scan.threads = threads
        final class Bag { var keys: [Key] = [] }
        let bags = (0..<threads).map { _ in Bag() }
        try scan.run(sinks: { i in { e, _ in bags[i].keys.append(Key(e.key, 40)) } })
        return bags.flatMap(\.keys)
    }

    static func sorted(_ k: [Key]) -> [Key] { k.sorted { ($0.a, $0.b, $0.c, $0.d, $0.e) < ($1.a, $1.b, $1.c, $1.d, $1.e) } }

    static let maps: [(size: UInt32, fill: Double)] = [1 << 12, 1 << 14, 1 << 16, 1 << 17, 1 << 19].flatMap { size in
        [0.005, 0.1, 0.5, 0.9].map { (size, $0) }
    }

    @Test("N threads read the same multiset of entries as one, on 20 static maps, at 2, 3, 4, 8 and 16 threads")
    func sameAsOneThread() throws {
        #expect(ParallelScanTests.maps.count >= 20)
        for (i, m) in ParallelScanTests.maps.enumerated() {
            var o = LoadOptions()
            o.ctSize = m.size
            try withDataplane("parallel-\(i)", options: o) { t in
                try ParallelScanTests.fill(t.dp, Int(Double(m.size) * m.fill), seed: UInt64(i + 1))
                #expect(RawBatchReader.bucketCount(t.dp.ct) != nil, "bucket count checked for size \(m.size)")
                let one = ParallelScanTests.sorted(try ParallelScanTests.keys(t.dp, threads: 1))
                #expect(Set(one).count == one.count)
                for n in [2, 3, 4, 8, 16] {
                    let many = ParallelScanTests.sorted(try ParallelScanTests.keys(t.dp, threads: n))
                    #expect(many == one, "size \(m.size), fill \(m.fill), \(n) threads: \(many.count) vs \(one.count)")
                }
            }
        }
    }

    @Test("on a map written meanwhile (inserts and deletes), N threads never read an entry twice")
    func liveMapNoDuplicates() throws {
        var o = LoadOptions()
        o.ctSize = 1 << 16
        try withDataplane("parallel-live", options: o) { t in
            try ParallelScanTests.fill(t.dp, 1 << 15, seed: 99)
            let stop = Flag()
            let writer = Thread {
                var seed: UInt64 = 7
                let deadline = Date().addingTimeInterval(20)
                while !stop.isSet && Date() < deadline {
                    // churn: a batch of new entries, and the same number of others deleted
                    seed += 1
                    try? ParallelScanTests.fill(t.dp, 512, seed: seed)
                    let old = try? ParallelScanTests.keys(t.dp, threads: 1).prefix(512)
                    for var k in old ?? [] { _ = withUnsafeBytes(of: &k) { bpf_map_delete_elem(t.dp.ct.fd, $0.baseAddress!) } }
                }
            }
            writer.start()
            defer { stop.set() }
            let deadline = Date().addingTimeInterval(5)
            var scans = 0
            while Date() < deadline && scans < 200 {
                for n in [2, 3, 4, 8] {
                    let keys = try ParallelScanTests.keys(t.dp, threads: n)
                    #expect(Set(keys).count == keys.count, "\(n) threads read an entry twice")
                    scans += 1
                }
            }
            stop.set()
            while writer.isExecuting { Thread.sleep(forTimeInterval: 0.01) }
            #expect(scans > 8)
        }
    }
}
