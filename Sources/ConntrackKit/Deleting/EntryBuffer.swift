import CLibBPF

/// Copies of up to one stage of entries, kept across a kernel round trip (a delete), so
/// they can still be printed afterwards.
final class EntryBuffer {
    let capacity: Int
    let keys: UnsafeMutablePointer<ctctl_ct_key>
    let values: UnsafeMutablePointer<ctctl_ct_value>
    var reasons: [StaleReason?]
    private(set) var count = 0

    init(capacity: Int = Stager.capacity) {
        self.capacity = capacity
        keys = .allocate(capacity: capacity)
        values = .allocate(capacity: capacity)
        reasons = Array(repeating: nil, count: capacity)
    }

    deinit {
        keys.deallocate()
        values.deallocate()
    }

    var isFull: Bool { count == capacity }

    func append(_ e: ReferenceEntry, _ reason: StaleReason?) { append(key: e.key.pointee, value: e.value.pointee, reason) }

    func append(key: ctctl_ct_key, value: ctctl_ct_value, _ reason: StaleReason?) {
        keys[count] = key
        values[count] = value
        reasons[count] = reason
        count += 1
    }

    func view(_ i: Int) -> ReferenceEntry { ReferenceEntry(keys + i, values + i) }

    func clear() { count = 0 }
}
