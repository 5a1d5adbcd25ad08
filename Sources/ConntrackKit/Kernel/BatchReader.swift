import CLibBPF
import Glibc

/// Streams a hash map with BPF_MAP_LOOKUP_BATCH into fixed buffers: memory does
/// not grow with the map. The body sees each batch; it returns false to stop.
public final class BatchReader<Key, Value> {
    public let capacity: Int
    public let keys: UnsafeMutablePointer<Key>
    public let values: UnsafeMutablePointer<Value>

    public init(capacity: Int = 8192) {
        self.capacity = capacity
        keys = .allocate(capacity: capacity)
        values = .allocate(capacity: capacity)
    }

    deinit {
        keys.deallocate()
        values.deallocate()
    }

    public func read(_ map: BPFMap, _ body: (_ count: Int) throws -> Bool) throws {
        precondition(MemoryLayout<Key>.size == map.info.keySize && MemoryLayout<Value>.size == map.info.valueSize)
        var inBatch: UInt64 = 0
        var outBatch: UInt64 = 0
        var first = true
        while true {
            var count: UInt32 = 0
            var end = false
            do {
                try Errno.bpf {
                    count = UInt32(capacity)
                    return first
                        ? CLibBPF_map_lookup_batch(map.fd, nil, &outBatch, keys, values, &count)
                        : CLibBPF_map_lookup_batch(map.fd, &inBatch, &outBatch, keys, values, &count)
                }
            } catch  where error.code == ENOENT {
                end = true  // the last batch: `count` entries may still have been copied
            } catch {
                throw CtctlError.from(error, doing: "reading", path: map.path)
            }
            first = false
            if count > 0, try !body(Int(count)) { return }
            if end { return }
            inBatch = outBatch
        }
    }
}
