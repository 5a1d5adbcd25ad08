/// Deletes entries in batches through a layout's compare-and-delete, each only if it is
/// still the entry that was judged (and the rule it was judged by still holds), with its
/// NAT partner; reports each outcome. A dry-run remover reads only and reports what would go.
public protocol EntryRemover: AnyObject {
    associatedtype Entry: EntryFacts
    /// Queues `e` (judged stale for `reason`; nil: the user asked for it). May flush.
    func add(_ e: Entry, reason: StaleReason?) throws
    /// Deletes (or, dry run, looks up) what is queued, and reports each outcome.
    func flush() throws
    var counts: RemovalCounts { get }
    var dryRun: Bool { get }
}

/// What happened to one entry handed to a remover.
public enum DeleteOutcome: Sendable, Equatable {
    /// Deleted; `partner`: its NAT partner went with it.
    case deleted(partner: Bool)
    /// --dry-run: would be deleted; `partner`: its partner would go with it.
    case wouldDelete(partner: Bool)
    /// The datapath re-created or converted it since it was read (another identity): left alone.
    case changed
    /// The same entry, but the rule it was judged by no longer holds (a flow that came
    /// back to life, a partner restored, a service that changed): left alone.
    case noLongerStale
    /// Gone already (LRU eviction, expiry, or deleted with its partner earlier in this pass).
    case gone
}

/// What a remover did.
public struct RemovalCounts: Sendable {
    /// Entries deleted, NAT partners included.
    public var deleted = 0
    public var deletedByReason: [StaleReason: Int] = [:]
    /// Kept: re-created by the datapath since they were read.
    public var changed = 0
    /// Kept: the rule they were judged by no longer held.
    public var noLongerStale = 0
    /// Gone already.
    public var gone = 0
    /// Dry run: would be deleted, partners included.
    public var wouldDelete = 0
    public var wouldDeleteByReason: [StaleReason: Int] = [:]

    public init() {}

    /// Counts one outcome (a pair counts two entries).
    public mutating func record(_ outcome: DeleteOutcome, reason: StaleReason?) {
        switch outcome {
        case .deleted(let partner):
            let n = partner ? 2 : 1
            deleted += n
            if let reason { deletedByReason[reason, default: 0] += n }
        case .wouldDelete(let partner):
            let n = partner ? 2 : 1
            wouldDelete += n
            if let reason { wouldDeleteByReason[reason, default: 0] += n }
        case .changed: changed += 1
        case .noLongerStale: noLongerStale += 1
        case .gone: gone += 1
        }
    }
}

/// The keys a remover deleted (or, dry run, would delete) lately, partners included: a later
/// slot for an entry that went with its partner is not reported again. Such a slot can only
/// come from a batch a scan thread had already read when the delete happened (later buckets
/// no longer hold the entry), so only the last `generation` to 2 x `generation` keys are kept,
/// in two sets of fixed capacity (the older is dropped when the newer is full): 2 x 8192-entry
/// batches for each of 2 threads, in about 1 MiB at any map size. Keys are kept as 64-bit
/// hashes: a collision, or a partner that shows up after more deletes than that (more threads,
/// or a thread descheduled for long), could only add or hide an `already gone` report line, never change what is deleted.
struct HandledKeys {
    static let generation = 1 << 15
    private var current: Set<UInt64>
    private var previous = Set<UInt64>()

    /// `reserve`: room made up front (a remover: a generation, so the set never grows by
    /// copying; a lookup of a few entries: none).
    init(reserve: Int = HandledKeys.generation) { current = Set(minimumCapacity: reserve) }

    /// FNV-1a over the key's bytes.
    static func hash(_ key: UnsafeRawPointer, count: Int) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in UnsafeRawBufferPointer(start: key, count: count) {
            h ^= UInt64(b)
            h &*= 0x100_0000_01b3
        }
        return h
    }

    func contains(_ key: UnsafeRawPointer, count: Int) -> Bool {
        let h = HandledKeys.hash(key, count: count)
        return current.contains(h) || previous.contains(h)
    }

    mutating func insert(_ key: UnsafeRawPointer, count: Int) {
        if current.count >= HandledKeys.generation {
            previous = current
            current = Set(minimumCapacity: HandledKeys.generation)
        }
        current.insert(HandledKeys.hash(key, count: count))
    }
}
