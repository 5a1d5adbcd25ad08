import Glibc
import Synchronization

/// What a scan saw.
public struct ScanTotals: Sendable {
    public var scanned = 0
    public var matched = 0
    public var byReason: [StaleReason: Int] = [:]

    mutating func add(_ o: ScanTotals) {
        scanned += o.scanned
        matched += o.matched
        for (r, n) in o.byReason { byReason[r, default: 0] += n }
    }
}

/// Streams a dataplane's conntrack entries once: filters every entry, and, with a judge,
/// keeps only the stale ones and names why. Memory stays fixed whatever the map size: one
/// map batch a thread and one pair ledger. Reads only, so it runs on read-only fds. The same
/// for every layout: what differs is asked of the layout (Dataplane) and its rules.
///
/// Threads: with `threads` > 1 the maps are read in disjoint bucket ranges at once
/// (Dataplane.scanParts), each thread filtering and judging what it reads and handing it to
/// its own sink; the pair ledger is shared. What needs the whole map (the ledger's half pairs,
/// second looks) runs after every thread is done, on the calling thread, through sink 0.
///
/// Partners: the halves of intact pairs cancel out in the PairLedger as the scan goes, so
/// a half pair costs a partner lookup only once the ledger names it. Idle NAT halves have
/// their partner looked up as they come, because a pair is expired only when its partner
/// is not live by its own state. Without a ledger (`get --explain`, or after the ledger
/// overflowed) every NAT half that needs it is looked up. A layout without creation times
/// confirms a missing partner by a second look (StaleRules.halfPairRecheckNs) after the
/// scan.
public final class EntryScan<D: Dataplane> {
    public typealias Sink = (D.Entry, StaleReason?) throws -> Void

    let dp: D
    let filter: ConntrackFilter
    let judge: StaleJudge<D.Rules>?
    var ledger: PairLedger?
    /// The second pass after a ledger overflow: report half pairs only.
    var onlyHalfPairs = false
    /// Checked after every batch and while resolving the ledger: true stops the scan there
    /// (heal on SIGINT/SIGTERM). Called from every reading thread.
    public var shouldStop: () -> Bool = { false }
    /// Threads reading at once (1: the calling thread only).
    public var threads = 1
    public private(set) var totals = ScanTotals()
    private let stopFlag = Flag()
    public var stopped: Bool { stopFlag.isSet }

    /// A plain listing: every entry the filter matches.
    public init(_ dp: D, filter: ConntrackFilter) {
        self.dp = dp
        self.filter = filter
        judge = nil
    }

    /// Stale entries only, judged by `judge`. `ledger: false` looks every partner up (a
    /// handful of entries).
    public init(_ dp: D, filter: ConntrackFilter, judge: StaleJudge<D.Rules>, ledger: Bool = true) {
        self.dp = dp
        self.filter = filter
        self.judge = judge
        self.ledger = ledger ? PairLedger() : nil
    }

    /// Tests: a ledger of 3 x 2^bits cells.
    init(_ dp: D, filter: ConntrackFilter, judge: StaleJudge<D.Rules>, ledgerBits: Int) {
        self.dp = dp
        self.filter = filter
        self.judge = judge
        ledger = PairLedger(bits: ledgerBits)
    }

    /// What one reading thread keeps.
    final class Worker {
        let sink: Sink
        let scratch: D.Scratch
        let identity = UnsafeMutablePointer<UInt64>.allocate(capacity: PairLedger.identityWords)
        let ledger: PairLedger.Writer?
        /// The scan's judge, this thread's copy.
        let judge: StaleJudge<D.Rules>?
        var totals = ScanTotals()
        /// Half pairs waiting for their second look, and when the last was seen.
        var deferred: [PairLedger.Element] = []
        var lastDeferredAt: UInt64 = 0

        init(_ sink: @escaping Sink, _ scratch: D.Scratch, _ ledger: PairLedger?, _ judge: StaleJudge<D.Rules>?) {
            self.sink = sink
            self.scratch = scratch
            self.ledger = ledger.map { PairLedger.Writer($0) }
            self.judge = judge
        }

        deinit { identity.deallocate() }
    }

    /// On the calling thread, into one sink.
    public func run(_ emit: @escaping Sink) throws {
        let saved = threads
        threads = 1
        defer { threads = saved }
        try run(sinks: { _ in emit })
    }

    /// With `threads` threads, each emitting through its own sink (`sinks(i)`, thread i).
    public func run(sinks: (Int) -> Sink) throws {
        let parts = dp.scanParts(threads)
        let n = max(1, min(threads, parts.count))
        let workers = (0..<n).map {
            Worker(sinks($0), $0 == 0 ? dp.defaultScratch : dp.makeScratch(), ledger, $0 == 0 ? judge : judge?.forThread())
        }
        let boundaries = Boundaries(parts.count)
        if n == 1 {
            for (i, part) in parts.enumerated() where !stopFlag.isSet { try read(part, index: i, workers[0], boundaries) }
        } else {
            try runThreads(parts, workers, boundaries)
        }
        for w in workers { totals.add(w.totals) }
        if stopFlag.isSet { return }
        // what needs the whole map, on this thread
        let main = workers[0]
        for w in workers.dropFirst() {
            main.deferred += w.deferred
            main.lastDeferredAt = max(main.lastDeferredAt, w.lastDeferredAt)
        }
        main.totals = ScanTotals()  // counted above; from here on, what the rest adds
        try boundaries.resolve(dp, parts) { batch in
            for i in 0..<batch.count {
                let e = batch[i]
                guard filter.matches(e) else { continue }
                try emitOrJudge(e, main)
            }
        }
        totals.scanned += boundaries.kept
        // every thread's inserts are in the ledger before it is read
        for w in workers { w.ledger?.drain() }
        try finish(main)
        totals.add(main.totals)
    }

    /// Threads take parts from a shared list until none is left; the first error stops all.
    private func runThreads(_ parts: [ScanPart], _ workers: [Worker], _ boundaries: Boundaries) throws {
        var next = 0
        var failure: Error? = nil
        let lock = Lock()
        let anyStopped = stopFlag
        let group = ThreadGroup()
        for w in workers {
            group.start {
                while true {
                    let (i, done) = lock.withLock { () -> (Int, Bool) in
                        let i = next
                        next += 1
                        return (i, i >= parts.count || failure != nil || anyStopped.isSet)
                    }
                    if done { return }
                    do { try self.read(parts[i], index: i, w, boundaries) } catch {
                        lock.withLock { if failure == nil { failure = error } }
                        anyStopped.set()
                        return
                    }
                }
            }
        }
        group.join()
        if let failure { throw failure }
    }

    /// Reads one part with one worker.
    private func read(_ part: ScanPart, index: Int, _ w: Worker, _ boundaries: Boundaries) throws {
        var remembering = part.buckets != nil
        try dp.scan(part) { batch, uncertain in
            if uncertain {
                // a bucket that may also be the next part's first: decided after every part
                boundaries.hold(index, batch, dp)
                return true
            }
            if remembering && batch.count > 0 {
                boundaries.remember(index, batch)
                remembering = boundaries.wantsMore(index)
            }
            if let judge = w.judge {
                for i in 0..<batch.count {
                    let e = batch[i]
                    guard filter.matches(e) else { continue }
                    try consider(e, judge, w)
                }
            } else {
                for i in 0..<batch.count {
                    let e = batch[i]
                    guard filter.matches(e) else { continue }
                    w.totals.matched += 1
                    try w.sink(e, nil)
                }
            }
            w.totals.scanned += batch.count
            if stopFlag.isSet || shouldStop() { stopFlag.set() }
            try dp.verifyPinned(progress: "\(w.totals.scanned) entries scanned")
            return !stopFlag.isSet
        }
    }

    @inline(__always)
    private func emitOrJudge(_ e: D.Entry, _ w: Worker) throws {
        if let judge = w.judge {
            try consider(e, judge, w)
        } else {
            w.totals.matched += 1
            try w.sink(e, nil)
        }
    }

    /// Judges a few entries read by key (not the map), with the same rules and partner
    /// lookups as a scan; `emit` gets only the stale ones.
    public func judge(_ entries: [D.Entry], _ emit: @escaping Sink) throws {
        guard let judge else { return }
        let w = Worker(emit, dp.defaultScratch, nil, judge)
        for e in entries { try consider(e, judge, w) }
        try finish(w)
        totals.add(w.totals)
    }

    /// One matched entry, judged.
    @inline(__always)
    func consider(_ e: D.Entry, _ judge: StaleJudge<D.Rules>, _ w: Worker) throws {
        switch judge.judge(e) {
        case .fresh: break
        case .stale(let reason): if !onlyHalfPairs { try found(e, reason, w) }
        case .nat(let idle, let old):
            if old, let ledger = w.ledger {
                ledger.add(w.identity, sign: dp.ledgerIdentity(e, into: w.identity, scratch: w.scratch))
            }
            if idle || (old && w.ledger == nil) { try resolvePartner(e, judge, selfIdle: idle, old: old, w) }
        }
    }

    /// After the whole map was read: the verdicts that needed it.
    private func finish(_ w: Worker) throws {
        guard let judge else { return }
        if let decoded = ledger?.decode() {
            ledger = nil  // from here on, partner lookups decide half pairs directly
            guard decoded.complete else {
                // more half pairs than the ledger can name: find them with a second pass
                let second = EntryScan(dp, filter: filter, judge: judge, ledger: false)
                second.onlyHalfPairs = true
                second.shouldStop = shouldStop
                second.threads = threads
                let sink = w.sink
                let lock = Lock()
                // half pairs are few: one sink, taken in turn
                try second.run(sinks: { _ in
                    { e, reason in
                        try lock.withLock {
                            w.totals.matched += 1
                            w.totals.byReason[reason!, default: 0] += 1
                            try sink(e, reason)
                        }
                    }
                })
                if second.stopped { stopFlag.set() }
                return
            }
            if w.deferred.isEmpty { w.deferred = decoded.elements } else { w.deferred += decoded.elements }
            w.lastDeferredAt = Timestamp.monotonicNow()
        }
        guard !w.deferred.isEmpty else { return }
        // the second look of a layout without creation times comes this much later
        let due = w.lastDeferredAt + judge.rules.halfPairRecheckNs
        let now = Timestamp.monotonicNow()
        if due > now { usleep(UInt32(min((due - now) / 1000, 1_000_000))) }
        let candidates = w.deferred
        w.deferred = []
        for (i, c) in candidates.enumerated() {
            if i % 1024 == 1023 && shouldStop() {
                stopFlag.set()
                return
            }
            // re-read (it may have changed since), and check its partner again; the scan
            // judged its expiry already, here only whether its partner is still gone
            try dp.reread(c, scratch: w.scratch) { e in
                guard filter.matches(e), case .nat(_, let old) = judge.judge(e), old else { return }
                try dp.partner(of: e, scratch: w.scratch) { p in if p == nil { try found(e, .halfPair, w) } }
            }
        }
    }

    private func found(_ e: D.Entry, _ reason: StaleReason, _ w: Worker) throws {
        w.totals.matched += 1
        w.totals.byReason[reason, default: 0] += 1
        try w.sink(e, reason)
    }

    /// Looks a NAT half's partner up: a half pair (partner gone or no longer pointing
    /// back) past the grace period is stale; so is a half that is expired by the
    /// datapath's rule (idle, and its partner not live by its own state).
    private func resolvePartner(
        _ e: D.Entry, _ judge: StaleJudge<D.Rules>, selfIdle: Bool, old: Bool, _ w: Worker
    ) throws {
        let rules = judge.rules
        try dp.partner(of: e, scratch: w.scratch) { p in
            if let p {
                let partnerIdle = rules.isIdle(p, now: judge.now)
                if rules.expired(e, selfIdle: selfIdle, partnerIdle: partnerIdle) && !onlyHalfPairs {
                    try found(e, .expired, w)
                }
            } else if old {
                // with a ledger, the ledger names half pairs (and this one is in it)
                if w.ledger == nil { try halfPairSeen(e, rules, w) }
            } else if rules.expired(e, selfIdle: selfIdle, partnerIdle: nil) && !onlyHalfPairs {
                try found(e, .expired, w)
            }
        }
    }

    /// A half pair found by a direct lookup: stale now, or after the layout's second look.
    private func halfPairSeen(_ e: D.Entry, _ rules: D.Rules, _ w: Worker) throws {
        guard rules.halfPairRecheckNs > 0 else { return try found(e, .halfPair, w) }
        let sign = dp.ledgerIdentity(e, into: w.identity, scratch: w.scratch)
        w.deferred.append(PairLedger.Element(identity: w.identity, sign: sign))
        w.lastDeferredAt = Timestamp.monotonicNow()
    }

    /// The buckets at the parts' ends whose owner was told by comparing keys: held until
    /// every part is read, then kept only if no later part of the same map read them near its
    /// start too (on a live map, a bucket inserted into between our read and the comparison
    /// can make another part's bucket look like ours).
    final class Boundaries {
        typealias Key = ScanKey
        /// How many keys from a part's start are remembered: a held bucket that is not ours is
        /// the first non-empty bucket of a later part, or among its first few if a live map
        /// filled buckets before it meanwhile. 1024 keys (40 KiB a part) are hundreds of buckets.
        static var remembered: Int { 1024 }
        private let lock = Lock()
        /// By part: the held bucket's raw keys and values, and the keys read near its start.
        private var held: [Int: (keys: [UInt8], values: [UInt8], count: Int)] = [:]
        private var start: [Int: [Key]] = [:]
        /// A batch of each held part, to view the held bytes the same way.
        private var templates: [Int: D.Batch] = [:]
        private(set) var kept = 0

        init(_ parts: Int) {}

        func hold(_ part: Int, _ batch: D.Batch, _ dp: D) {
            let keys = Array(UnsafeRawBufferPointer(start: batch.rawKeys, count: batch.keySize * batch.count))
            let values = Array(UnsafeRawBufferPointer(start: batch.rawValues, count: batch.valueSize * batch.count))
            lock.withLock {
                held[part] = (keys, values, batch.count)
                templates[part] = batch
            }
        }

        /// Whether the part still remembers the keys it reads (its first few batches).
        func wantsMore(_ part: Int) -> Bool { lock.withLock { (start[part]?.count ?? 0) < Boundaries.remembered } }

        func remember(_ part: Int, _ batch: D.Batch) {
            lock.withLock {
                var keys = start[part] ?? []
                keys.reserveCapacity(Boundaries.remembered)
                for i in 0..<min(batch.count, Boundaries.remembered - keys.count) {
                    keys.append(Key(batch.rawKeys + i * batch.keySize, batch.keySize))
                }
                start[part] = keys
            }
        }

        /// The held buckets the next part did not read too, as batches.
        func resolve(_ dp: D, _ parts: [ScanPart], _ body: (D.Batch) throws -> Void) throws {
            for (part, h) in held.sorted(by: { $0.key < $1.key }) {
                guard let like = templates[part] else { continue }
                let ks = h.keys.count / max(h.count, 1)
                let vs = h.values.count / max(h.count, 1)
                // the bucket lies in a later part of the same map if it is not ours: the first
                // non-empty bucket after our end (parts in between can be empty)
                let later = (part + 1..<parts.count).filter { parts[$0].map == parts[part].map }.compactMap { start[$0] }
                var keys: [UInt8] = []
                var values: [UInt8] = []
                var n = 0
                for i in 0..<h.count {
                    let key = h.keys.withUnsafeBytes { Key($0.baseAddress! + i * ks, ks) }
                    let seen = later.contains { $0.contains(key) }
                    if seen { continue }
                    keys += h.keys[(i * ks)..<((i + 1) * ks)]
                    values += h.values[(i * vs)..<((i + 1) * vs)]
                    n += 1
                }
                guard n > 0 else { continue }
                kept += n
                try keys.withUnsafeBytes { k in
                    try values.withUnsafeBytes { v in try body(like.over(keys: k.baseAddress!, values: v.baseAddress!, count: n))
                    }
                }
            }
        }
    }
}

/// A key of up to 40 bytes, exactly, without an allocation.
struct ScanKey: Hashable {
    let a: UInt64, b: UInt64, c: UInt64, d: UInt64, e: UInt64

    init(_ p: UnsafeRawPointer, _ size: Int) {
        var w = (UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0))
        withUnsafeMutableBytes(of: &w) { $0.baseAddress!.copyMemory(from: p, byteCount: min(size, 40)) }
        (a, b, c, d, e) = w
    }
}

/// A flag several threads read and any sets.
final class Flag: Sendable {
    private let value = Atomic<Bool>(false)
    var isSet: Bool { value.load(ordering: .relaxed) }
    func set() { value.store(true, ordering: .relaxed) }
}

/// Threads started together and joined together (pthreads: the scan's threads need no more).
final class ThreadGroup {
    private var threads: [pthread_t] = []

    final class Box {
        let body: () -> Void
        init(_ body: @escaping () -> Void) { self.body = body }
    }

    func start(_ body: @escaping () -> Void) {
        let box = Unmanaged.passRetained(Box(body)).toOpaque()
        var t = pthread_t()
        let r = pthread_create(
            &t, nil,
            { raw in
                let b = Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue()
                b.body()
                return nil
            }, box)
        if r == 0 {
            threads.append(t)
        } else {
            // no thread: run it here
            Unmanaged<Box>.fromOpaque(box).takeRetainedValue().body()
        }
    }

    func join() {
        for t in threads { pthread_join(t, nil) }
        threads.removeAll()
    }
}
