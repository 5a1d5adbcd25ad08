import CLibBPF
import Glibc

/// Finds the NAT halves whose partner is missing, in one streaming pass and fixed
/// memory, without a kernel lookup per entry: an invertible Bloom lookup table (IBLT)
/// over pairs.
///
/// Every NAT half older than the grace period adds its pair's identity, (forward key,
/// reverse key, tag), with +1 for a forward half and -1 for a reverse half: the forward
/// half knows the reverse key as its partner and the reverse half knows the forward key
/// (the layout says how: Dataplane.ledgerIdentity), so the two halves of an intact pair
/// add the same identity with opposite signs and cancel exactly. Keys are up to 40 bytes
/// (5 words, zero-padded); the tag is the pair's created time where the layout keeps one.
/// What is left after the scan are the identities whose other half never showed up, and
/// "peeling" the table recovers them in full (keys included), as long as there are not
/// many more of them than the table's capacity (about 75,000 here). A candidate is only a
/// candidate: the caller re-reads it and confirms it with the partner lookup.
public final class PairLedger {
    public static let defaultBits = 15
    /// Words of a pair's identity: the tag, the forward key (5), the reverse key (5).
    public static let identityWords = 11
    static let tables = 3
    /// count, tag, forward key (5 words), reverse key (5 words), check: 13 words a cell
    static let words = 13
    let cells: UnsafeMutablePointer<UInt64>
    let bits: Int
    let perTable: Int
    /// Inserts wait in a writer's queue (their words, sign and cell offsets) and are applied
    /// in bursts: the cells are cache misses, and a tight loop over independent cells lets the
    /// CPU overlap them. Each scanning thread has its own writer; applying takes the lock, so
    /// one ledger serves every thread of a scan.
    static let queueSize = 128
    static let queueStride = 17  // 13 words + sign + 3 cell offsets an element
    let lock = Lock()
    /// The writer of a single-threaded user.
    lazy var writer = Writer(self)

    /// One thread's queue of inserts into the ledger.
    public final class Writer {
        let ledger: PairLedger
        let queue: UnsafeMutablePointer<UInt64>
        var queued = 0

        init(_ ledger: PairLedger) {
            self.ledger = ledger
            queue = .allocate(capacity: PairLedger.queueSize * PairLedger.queueStride)
        }

        deinit { queue.deallocate() }

        /// Adds a pair identity (PairLedger.identityWords words) with its sign (forward: +1,
        /// reverse: -1).
        @inline(__always)
        public func add(_ identity: UnsafePointer<UInt64>, sign: Int) {
            let p = queue + queued * PairLedger.queueStride
            p[0] = 0
            for i in 0..<PairLedger.identityWords { p[1 + i] = identity[i] }
            p[12] = PairLedger.check(p)
            p[13] = UInt64(bitPattern: Int64(sign))
            for t in 0..<PairLedger.tables {
                let c = ledger.cell(t, p[12])
                CLibBPF_prefetch_write(c)
                CLibBPF_prefetch_write(c + 8)  // a cell spans two cache lines
                p[14 + t] = UInt64(c - ledger.cells)
            }
            queued += 1
            if queued == PairLedger.queueSize { drain() }
        }

        /// Applies the queued inserts.
        public func drain() {
            guard queued > 0 else { return }
            ledger.lock.lock()
            for q in 0..<queued {
                let p = queue + q * PairLedger.queueStride
                let sign = p[13]
                for t in 0..<PairLedger.tables {
                    let c = ledger.cells + Int(p[14 + t])
                    c[0] = c[0] &+ sign
                    for i in 1..<PairLedger.words { c[i] ^= p[i] }
                }
            }
            ledger.lock.unlock()
            queued = 0
        }
    }

    /// A pair whose other half never showed up.
    public struct Element: Sendable {
        /// The tag and the present half's key (5 words, as the layout wrote it), inline: tens of
        /// thousands of these stay a few MiB.
        var words: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64)
        /// +1: only the forward half is present; -1: only the reverse half.
        public let sign: Int

        /// `identity`: PairLedger.identityWords words (tag, forward key, reverse key).
        init(identity: UnsafePointer<UInt64>, sign: Int) {
            words = (identity[0], 0, 0, 0, 0, 0)
            let key = identity + (sign > 0 ? 1 : 6)
            withUnsafeMutableBytes(of: &words) { $0.baseAddress!.advanced(by: 8).copyMemory(from: key, byteCount: 40) }
            self.sign = sign
        }

        public var tag: UInt64 { words.0 }
        /// The present half's key.
        public var presentKey: [UInt64] { [words.1, words.2, words.3, words.4, words.5] }
        public var presentType: EntryType { sign > 0 ? .natForward : .natReverse }
    }

    /// 2^bits cells a table (tests make it small to overflow it).
    public init(bits: Int = PairLedger.defaultBits) {
        self.bits = bits
        perTable = 1 << bits
        // calloc: zero pages on demand
        cells = calloc(PairLedger.tables * perTable * PairLedger.words, 8)!.bindMemory(
            to: UInt64.self, capacity: PairLedger.tables * perTable * PairLedger.words)
    }

    deinit {
        free(cells)
    }

    @inline(__always)
    static func mix(_ h: UInt64, _ w: UInt64) -> UInt64 {
        let x = (h ^ w) &* 0x9E37_79B9_7F4A_7C15
        return x ^ (x >> 29)
    }

    @inline(__always)
    static func check(_ w: UnsafePointer<UInt64>) -> UInt64 {
        // the tag and the ten key words (w[1] ... w[11])
        var h: UInt64 = 0x6374_6374_6c65_6467
        for i in 1...11 { h = mix(h, w[i]) }
        return h ^ (h >> 31)
    }

    @inline(__always)
    func cell(_ table: Int, _ id: UInt64) -> UnsafeMutablePointer<UInt64> {
        let h = (id ^ UInt64(table &* 0x5851_F42D)) &* 0xBF58_476D_1CE4_E5B9
        let index = Int(truncatingIfNeeded: h >> UInt64(64 - bits))
        return cells + (table * perTable + index) * PairLedger.words
    }

    /// Applies one element (its 13 words) to its three cells with `sign`.
    @inline(__always)
    func apply(_ w: UnsafePointer<UInt64>, sign: Int) {
        let id = w[12]
        for t in 0..<PairLedger.tables {
            let c = cell(t, id)
            c[0] = c[0] &+ UInt64(bitPattern: Int64(sign))
            for i in 1..<PairLedger.words { c[i] ^= w[i] }
        }
    }

    /// Adds a pair identity through the ledger's own writer (a single-threaded user).
    @inline(__always)
    public func add(_ identity: UnsafePointer<UInt64>, sign: Int) { writer.add(identity, sign: sign) }

    /// The leftover elements, and whether they are all of them (false: the table
    /// overflowed, and some half pairs could not be recovered).
    /// Every writer must have drained first (the ledger's own writer is drained here).
    public func decode() -> (elements: [Element], complete: Bool) {
        writer.drain()
        let total = PairLedger.tables * perTable
        func pure(_ c: UnsafeMutablePointer<UInt64>) -> Bool {
            (c[0] == 1 || c[0] == UInt64.max) && PairLedger.check(c) == c[12]
        }
        var stack: [Int] = []
        for i in 0..<total where pure(cells + i * PairLedger.words) { stack.append(i) }
        var out: [Element] = []
        // at most one element a cell: reserved (untouched pages cost no memory), so the array
        // never grows by copying
        out.reserveCapacity(stack.count == 0 ? 0 : total)
        var w = [UInt64](repeating: 0, count: PairLedger.words)
        while let i = stack.popLast() {
            let c = cells + i * PairLedger.words
            guard pure(c) else { continue }
            let sign = c[0] == 1 ? 1 : -1
            for k in 0..<PairLedger.words { w[k] = c[k] }
            w.withUnsafeBufferPointer { out.append(Element(identity: $0.baseAddress! + 1, sign: sign)) }
            // take it out of its three cells; any that become pure are next
            w.withUnsafeBufferPointer { apply($0.baseAddress!, sign: -sign) }
            for t in 0..<PairLedger.tables {
                let j = (cell(t, w[12]) - cells) / PairLedger.words
                if pure(cells + j * PairLedger.words) { stack.append(j) }
            }
        }
        var complete = true
        for i in 0..<(total * PairLedger.words) where cells[i] != 0 {
            complete = false
            break
        }
        return (out, complete)
    }
}
