/// Copies of up to one stage of raw entries (key and value bytes, as a layout stores them),
/// kept across a kernel round trip (a delete) so they can still be printed afterwards.
final class EntryBuffer {
    let capacity: Int
    let keySize: Int
    let valueSize: Int
    let keys: UnsafeMutableRawPointer
    let values: UnsafeMutableRawPointer
    var reasons: [StaleReason?]
    private(set) var count = 0

    init(keySize: Int, valueSize: Int, capacity: Int) {
        self.capacity = capacity
        self.keySize = keySize
        self.valueSize = valueSize
        keys = .allocate(byteCount: keySize * capacity, alignment: 8)
        values = .allocate(byteCount: valueSize * capacity, alignment: 8)
        reasons = Array(repeating: nil, count: capacity)
    }

    deinit {
        keys.deallocate()
        values.deallocate()
    }

    var isFull: Bool { count == capacity }

    func append(key: UnsafeRawPointer, value: UnsafeRawPointer, _ reason: StaleReason?) {
        precondition(count < capacity)
        (keys + count * keySize).copyMemory(from: key, byteCount: keySize)
        (values + count * valueSize).copyMemory(from: value, byteCount: valueSize)
        reasons[count] = reason
        count += 1
    }

    func key(_ i: Int) -> UnsafeMutableRawPointer { keys + i * keySize }
    func value(_ i: Int) -> UnsafeMutableRawPointer { values + i * valueSize }

    func clear() { count = 0 }
}
