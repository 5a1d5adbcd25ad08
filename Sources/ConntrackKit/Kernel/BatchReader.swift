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
