import CLibBPF
import Glibc

/// Streams a hash map with BPF_MAP_LOOKUP_BATCH into fixed buffers of raw keys and values
/// (a layout's own sizes): memory does not grow with the map. The body sees each batch; it
/// returns false to stop.
public final class RawBatchReader {
    public let capacity: Int
    public let keySize: Int
    public let valueSize: Int
    public let keys: UnsafeMutableRawPointer
    public let values: UnsafeMutableRawPointer

    public init(keySize: Int, valueSize: Int, capacity: Int = 8192) {
        self.capacity = capacity
        self.keySize = keySize
        self.valueSize = valueSize
        keys = .allocate(byteCount: keySize * capacity, alignment: 8)
        values = .allocate(byteCount: valueSize * capacity, alignment: 8)
    }

    deinit {
        keys.deallocate()
        values.deallocate()
    }

    public func read(_ map: BPFMap, _ body: (_ count: Int) throws -> Bool) throws {
        precondition(keySize == map.info.keySize && valueSize == map.info.valueSize)
        // The cursor is a bucket number for hash maps and a key for the others (an LPM
        // trie's batch walks keys): room for either.
        let cursor = max(8, keySize)
        let inBatch = UnsafeMutableRawPointer.allocate(byteCount: cursor, alignment: 8)
        let outBatch = UnsafeMutableRawPointer.allocate(byteCount: cursor, alignment: 8)
        defer {
            inBatch.deallocate()
            outBatch.deallocate()
        }
        inBatch.initializeMemory(as: UInt8.self, repeating: 0, count: cursor)
        outBatch.initializeMemory(as: UInt8.self, repeating: 0, count: cursor)
        var first = true
        while true {
            var count: UInt32 = 0
            var end = false
            do {
                try Errno.bpf {
                    count = UInt32(capacity)
                    return CLibBPF_map_lookup_batch(map.fd, first ? nil : inBatch, outBatch, keys, values, &count)
                }
            } catch  where error.code == ENOENT {
                end = true  // the last batch: `count` entries may still have been copied
            } catch {
                throw CtctlError.from(error, doing: "reading", path: map.path)
            }
            first = false
            if count > 0, try !body(Int(count)) { return }
            if end { return }
            inBatch.copyMemory(from: outBatch, byteCount: cursor)
        }
    }
}

/// Reading a hash map's buckets in disjoint ranges, one range a thread. A batch call copies
/// whole buckets and returns the next non-empty bucket it did not copy, which can lie past a
/// range's end; so a call is accepted only when that bucket is at or before the end, and
/// otherwise asked again for less, down to exactly one bucket (the smallest count that does not
/// answer ENOSPC), which is accepted if the bucket after it is within the range, or if it is
/// not the first bucket of the next range (compared by its keys: the same bucket has the same
/// keys). A bucket that empties between two calls of a live map can still put a boundary bucket
/// in two ranges: EntryScan de-duplicates the last bucket of a range against the next range's
/// first. docs/PERFORMANCE.md has the measurements.
extension RawBatchReader {
    /// The number of buckets of a hash or LRU map: max_entries rounded up to a power of two,
    /// checked (a read from the last bucket ends the map, naming the bucket count as its
    /// cursor). nil if the check fails: read it with one thread.
    public static func bucketCount(_ map: BPFMap) -> UInt32? {
        guard [BPF_MAP_TYPE_HASH.rawValue, BPF_MAP_TYPE_LRU_HASH.rawValue].contains(map.info.type), map.info.maxEntries > 0
        else { return nil }
        var nb: UInt32 = 1
        while nb < map.info.maxEntries { nb <<= 1 }
        let r = RawBatchReader(keySize: map.info.keySize, valueSize: map.info.valueSize, capacity: 256)
        guard let last = try? r.call(map, from: nb - 1, count: 256), last.end, last.next == nb else { return nil }
        return nb
    }

    struct Call {
        var count: Int
        var next: UInt32
        /// ENOENT: no bucket after these.
        var end: Bool
        /// ENOSPC: the first bucket has more entries than asked for.
        var noSpace: Bool
    }

    /// One BPF_MAP_LOOKUP_BATCH from bucket `from`, at most `count` entries.
    func call(_ map: BPFMap, from: UInt32, count: Int) throws(CtctlError) -> Call {
        var inBatch = from
        var outBatch = from
        var n = UInt32(count)
        do {
            try Errno.bpf { CLibBPF_map_lookup_batch(map.fd, &inBatch, &outBatch, keys, values, &n) }
            return Call(count: Int(n), next: outBatch, end: false, noSpace: false)
        } catch  where error.code == ENOENT {
            return Call(count: Int(n), next: outBatch, end: true, noSpace: false)
        } catch  where error.code == ENOSPC {
            return Call(count: 0, next: from, end: false, noSpace: true)
        } catch {
            throw CtctlError.from(error, doing: "reading", path: map.path)
        }
    }

    /// Exactly one bucket: the first non-empty one at or after `from`.
    func oneBucket(_ map: BPFMap, from: UInt32) throws(CtctlError) -> Call {
        var count = 1
        while true {
            let c = try call(map, from: from, count: count)
            if !c.noSpace { return c }
            count += 1
            if count > capacity { throw CtctlError(.software, "\(map.path): a bucket holds more than \(capacity) entries") }
        }
    }

    /// Streams buckets `buckets` of a map of `total` buckets (bucketCount).
    /// `uncertain`: the batch is one bucket whose place was told by comparing keys (a live
    /// map may have moved it into the next range meanwhile).
    public func read(
        _ map: BPFMap, buckets: Range<UInt32>, total: UInt32, _ body: (_ count: Int, _ uncertain: Bool) throws -> Bool
    ) throws {
        let end = buckets.upperBound
        var pos = buckets.lowerBound
        var want = capacity
        var probe: RawBatchReader? = nil
        while pos < end {
            if want >= 16 {
                let c = try call(map, from: pos, count: want)
                if c.noSpace {
                    want = 1
                    continue
                }
                if (c.end && end == total) || (!c.end && c.next <= end) {
                    if c.count > 0, try !body(c.count, false) { return }
                    if c.end { return }
                    pos = c.next
                    continue
                }
                if c.count == 0 { return }  // nothing at or after pos
                want /= 4  // it read past the end: ask for less from here on
                continue
            }
            // exactly one bucket, and whose it is
            let c = try oneBucket(map, from: pos)
            if c.count == 0 { return }
            let certain = (!c.end && c.next <= end) || end == total
            var mine = certain
            if !mine {
                let p = probe ?? RawBatchReader(keySize: keySize, valueSize: valueSize, capacity: 64)
                probe = p
                let next = try p.oneBucket(map, from: end)
                mine =
                    next.count == 0
                    || memcmp(keys, p.keys, keySize) != 0
                        && !(0..<next.count).contains { memcmp(keys, p.keys + $0 * keySize, keySize) == 0 }
            }
            guard mine else { return }
            if try !body(c.count, !certain) { return }
            if c.end || c.next >= end { return }
            pos = c.next
        }
    }
}

/// A RawBatchReader over a map whose key and value are C structs.
public final class BatchReader<Key, Value> {
    let raw: RawBatchReader
    public var keys: UnsafeMutablePointer<Key> { raw.keys.assumingMemoryBound(to: Key.self) }
    public var values: UnsafeMutablePointer<Value> { raw.values.assumingMemoryBound(to: Value.self) }

    public init(capacity: Int = 8192) {
        // the kernel packs keys and values at their sizes; indexing steps by stride
        precondition(MemoryLayout<Key>.size == MemoryLayout<Key>.stride && MemoryLayout<Value>.size == MemoryLayout<Value>.stride)
        raw = RawBatchReader(keySize: MemoryLayout<Key>.size, valueSize: MemoryLayout<Value>.size, capacity: capacity)
    }

    public func read(_ map: BPFMap, _ body: (_ count: Int) throws -> Bool) throws { try raw.read(map, body) }
}
