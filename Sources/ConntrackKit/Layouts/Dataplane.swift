/// The seam between ctctl and a dataplane's map layout: one dataplane's conntrack and NAT
/// maps, opened and verified, read and repaired the way that layout's own datapath reads
/// them. Listing, filtering, judging, healing, removing and every output work through this
/// protocol and the common model (EntryFacts) only; what a layout stores, and how its
/// datapath decides the next packet, stays in its folder under Layouts/.
///
/// A layout answers, in its datapath's terms:
/// - is it what a pin directory holds (`detect`), and are its maps what it expects (`open`
///   verifies type, sizes, flags, ABI or BTF, and refuses anything else);
/// - what every entry is in the common model (`scan`, `entries(of:)`, `reread`);
/// - who a NAT half's partner is (`partner(of:)`, `ledgerIdentity`);
/// - which rules apply to which entries, and the services as its datapath would use them
///   for the next packet (`staleRules`: see StaleRules and ServiceQuestions);
/// - how to delete without racing its datapath (`remover`): the identity its
///   compare-and-delete re-checks, and the order partners go in.
///
/// Adding a layout: a folder beside Layouts/Reference with a type conforming to this
/// protocol, and one line in `Layouts.all`.
public protocol Dataplane: AnyObject {
    associatedtype Entry: EntryFacts
    associatedtype Batch: EntryBatch where Batch.Entry == Entry
    associatedtype Rules: StaleRules where Rules.Entry == Entry
    associatedtype Remover: EntryRemover where Remover.Entry == Entry
    /// Buffers for lookups by key: one a scanning thread (makeScratch), one for everything
    /// else (defaultScratch).
    associatedtype Scratch

    /// The layout's name, as `--layout` takes it.
    static var layoutName: String { get }
    /// Where this layout's maps are pinned when the user names no directory.
    static var defaultPinDir: PinDirectory { get }
    /// Does `dir` hold this layout's maps? Cheap (looks at pin names only); `open` verifies.
    static func detect(_ dir: PinDirectory) -> Bool
    /// Opens and verifies every map the layout reads (read-only fds when `readOnly`).
    static func open(_ dir: PinDirectory, readOnly: Bool, options: LayoutOptions) throws(CtctlError) -> Self

    var pinDir: PinDirectory { get }
    var readOnly: Bool { get }
    /// What was opened, for the operator: "ctctl reference dataplane (map ABI 2)".
    var summary: String { get }
    /// What could not be checked or is uncertain about the maps ("BTF not checked: ..."):
    /// shown by stats and status, in their JSON, and on stderr by the commands that judge.
    var caveats: [String] { get }
    /// max_entries of the conntrack maps, summed: occupancy is measured against it.
    var conntrackCapacity: Int { get }

    /// Checks that the objects pinned now are the ones opened (kernel ids): nothing is read
    /// from or written to maps that were unpinned (or replaced) meanwhile. `progress` says
    /// how far a command got, for the error.
    func verifyPinned(progress: String?) throws(CtctlError)
    /// A cheap form for a daemon's poll (one pin).
    func stillPinned() -> Bool
    /// The writers' lock of this dataplane, taken; and, once taken, that it locks what this
    /// dataplane opened.
    func writerLock(timeoutMs: Int) throws(CtctlError) -> WriterLock
    func verify(holding lock: WriterLock) throws(CtctlError)

    /// The conntrack maps, split into about `n` disjoint parts (bucket ranges) that threads
    /// can read at once; one part a map when a map cannot be split.
    func scanParts(_ n: Int) -> [ScanPart]
    /// Streams one part, one batch at a time, in fixed memory. `body` returns false to stop
    /// after that batch; `uncertain`: the batch is one bucket at the part's end that may also
    /// be the next part's first (EntryScan de-duplicates it).
    func scan(_ part: ScanPart, _ body: (_ batch: Batch, _ uncertain: Bool) throws -> Bool) throws
    func makeScratch() -> Scratch
    var defaultScratch: Scratch { get }
    /// The entries of one flow, by key, never by scanning: the tuple (client -> service),
    /// its reverse, and the partner of each NAT half found; valid during the call.
    func entries(of flow: FlowKey, _ body: ([Entry]) throws -> Void) throws
    /// The intact NAT partner of `e` (by the datapath's own rule), or nil. The entry passed
    /// to `body` is valid during the call.
    func partner(of e: Entry, scratch: Scratch, _ body: (Entry?) throws -> Void) throws
    /// The identity of `e`'s pair for the PairLedger: forward key, reverse key and a tag
    /// (a created time, or 0), written to `w` (PairLedger.identityWords words). Returns +1
    /// for a forward half, -1 for a reverse half.
    func ledgerIdentity(_ e: Entry, into w: UnsafeMutablePointer<UInt64>, scratch: Scratch) -> Int
    /// Re-reads the half a ledger names: `body` gets it only if it is still there with the
    /// same identity.
    func reread(_ c: PairLedger.Element, scratch: Scratch, _ body: (Entry) throws -> Void) throws

    /// The layout's rules on one consistent view of its services. `holdingLock`: the caller
    /// holds the writers' lock (a view is not waited for when no writer can be writing).
    func staleRules(holdingLock: Bool) throws -> Rules
    /// `get --explain`: what the entry means and what the datapath does with its next packet
    /// (whether it is stale, and the fix, are said by the caller).
    func explain(_ e: Entry, reason: StaleReason?, rules: Rules, now: UInt64) -> [String]

    /// Deletes through the layout's compare-and-delete (with `lock`), or reports what would go
    /// (`lock` nil: a dry run, reading only).
    func remover(lock: WriterLock?, report: @escaping RemovalReport<Entry>) throws -> Remover

    /// The services, as `nat list` and `stats` show them.
    func services() throws -> [ServiceSummary]
    /// The datapath's counters, if it keeps any.
    func counters() throws -> [DatapathCounter]
    /// What changes when the services change: the watching heal polls it (every 100 ms) and
    /// runs a pass when it moves. The service epoch; on Calico, a digest of the frontends, and
    /// of the backends at most once a second.
    func serviceVersion() throws -> UInt64
    /// The watching heal is about to poll serviceVersion ten times a second: a layout may set
    /// up a cheaper way to answer it. Returns how it will watch, for the log (nil: nothing to
    /// say). A failure leaves the ordinary way in place.
    func watchServices() -> String?

    /// `dataplane status`: the maps, their occupancy, and what else the layout knows.
    func status() throws -> DataplaneStatus
    /// The service epoch, if the layout has one (nil: it has none; the watching heal then
    /// watches the frontend map itself).
    func serviceEpoch() throws -> UInt32?
}

extension Dataplane {
    public func watchServices() -> String? { nil }

    /// Every conntrack entry, one part after the other, on this thread.
    public func scan(_ body: (Batch) throws -> Bool) throws {
        for part in scanParts(1) {
            var go = true
            try scan(part) { batch, _ in
                go = try body(batch)
                return go
            }
            if !go { return }
        }
    }

    public func partner(of e: Entry, _ body: (Entry?) throws -> Void) throws {
        try partner(of: e, scratch: defaultScratch, body)
    }
}

/// A part of a layout's conntrack maps a thread reads: which map (the layout's own index),
/// and which of its buckets (nil: all of it, read as one).
public struct ScanPart: Sendable {
    public let map: Int
    public let buckets: Range<UInt32>?
    public let totalBuckets: UInt32

    public init(map: Int, buckets: Range<UInt32>?, totalBuckets: UInt32) {
        self.map = map
        self.buckets = buckets
        self.totalBuckets = totalBuckets
    }

    /// Splits a map of `total` buckets (nil: not splittable) into up to `n` parts.
    public static func split(map: Int, total: UInt32?, _ n: Int) -> [ScanPart] {
        guard let total, n > 1, total >= UInt32(n) * 64 else {
            return [ScanPart(map: map, buckets: nil, totalBuckets: total ?? 0)]
        }
        let step = total / UInt32(n)
        return (0..<n).map { i in
            let lo = UInt32(i) * step
            let hi = i == n - 1 ? total : lo + step
            return ScanPart(map: map, buckets: lo..<hi, totalBuckets: total)
        }
    }

    /// Reads this part of `map` with `reader`.
    func read(_ map: BPFMap, _ reader: RawBatchReader, _ body: (_ count: Int, _ uncertain: Bool) throws -> Bool) throws {
        if let buckets {
            try reader.read(map, buckets: buckets, total: totalBuckets, body)
        } else {
            try reader.read(map) { try body($0, false) }
        }
    }
}

/// What a user chose that a layout may need at open.
public struct LayoutOptions: Sendable {
    /// `--timeout`: idle timeouts, for a layout whose maps do not hold its own (Calico).
    public var timeouts: Timeouts?
    /// `--calico-version`, where a map cannot tell it.
    public var calicoVersion: String?
    public init() {}
}

/// One batch of one conntrack map, viewed in place.
public protocol EntryBatch {
    associatedtype Entry: EntryFacts
    var count: Int { get }
    subscript(i: Int) -> Entry { get }
    /// The raw keys and values (count entries, at their sizes).
    var rawKeys: UnsafeRawPointer { get }
    var rawValues: UnsafeRawPointer { get }
    var keySize: Int { get }
    var valueSize: Int { get }
    /// A batch of the same map viewed over other memory (entries kept across a scan).
    func over(keys: UnsafeRawPointer, values: UnsafeRawPointer, count: Int) -> Self
}

/// What happened to one entry handed to a remover: the entry, the reason it was judged
/// stale by (nil: the user asked), and what became of it.
public typealias RemovalReport<Entry> = (Entry, StaleReason?, DeleteOutcome) throws -> Void

/// A service as `nat list` and `stats` show it, whatever the layout.
public struct ServiceSummary: Sendable {
    /// VIP:PORT/PROTO.
    public let ref: ServiceRef
    public let id: UInt32
    /// A layout's qualifier of the frontend: a source range ("from 198.18.0.0/16"), "nodeport".
    public let scope: String?
    /// Backends in ordinal order; nil where the frontend names one the backend map lacks.
    public let backends: [Endpoint?]
    /// The backend count the frontend names (may exceed `backends` when over a limit).
    public let backendCount: UInt32
    /// How the datapath treats a new flow to it (active: translated to a backend).
    public let state: FrontendState.Kind
    /// More backends than the datapath serves: its flows are never judged.
    public let overLimit: Bool
    /// Why it does not translate as listed, if it does not.
    public let note: String?

    public init(
        ref: ServiceRef, id: UInt32, scope: String? = nil, backends: [Endpoint?], backendCount: UInt32? = nil,
        state: FrontendState.Kind, overLimit: Bool = false, note: String? = nil
    ) {
        self.ref = ref
        self.id = id
        self.scope = scope
        self.backends = backends
        self.backendCount = backendCount ?? UInt32(backends.count)
        self.state = state
        self.overLimit = overLimit
        self.note = note
    }

    public var missingOrdinals: [Int] { backends.indices.filter { backends[$0] == nil } }
    public var liveBackends: [Endpoint] { backends.compactMap { $0 } }
}
