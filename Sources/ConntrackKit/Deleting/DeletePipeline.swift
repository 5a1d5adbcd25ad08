import Glibc

/// A remover's deletes on a thread of their own, so that the scan threads go on judging while
/// a full buffer makes its kernel round trips (the re-checks, the compare-and-delete, the
/// reports): a full buffer is handed over and an empty one of the same shape comes back (a
/// new one while fewer than `depth` of that shape exist, else the next one the thread has
/// done with: the scan waits when `depth` are in flight). Buffers are done one at a time, in
/// the order they were handed over, except that one handed over with a `notBefore` time waits
/// for it while later ones go ahead. Everything a remover keeps between buffers (its counts,
/// the keys it handled, the reports) is touched by that thread only while any is in flight.
/// The first error stops the work (later buffers are dropped undone) and comes back from the
/// next `handOver` or from `finish`. Its owner calls `stop()` when it goes (the thread holds
/// the pipeline until then).
final class DeletePipeline {
    typealias Work = (EntryBuffer) throws -> Void
    let depth: Int
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let changed = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var queue: [(buffer: EntryBuffer, notBefore: UInt64, work: Work)] = []
    private var done: [EntryBuffer] = []
    private var made: [Shape: Int] = [:]
    private var busy = false
    private var failure: Error?
    private var stopping = false
    private var thread: ThreadGroup?

    private struct Shape: Hashable {
        let keySize: Int
        let valueSize: Int
        let capacity: Int
        init(_ b: EntryBuffer) { (keySize, valueSize, capacity) = (b.keySize, b.valueSize, b.capacity) }
    }

    init(depth: Int = 2) {
        self.depth = depth
        pthread_mutex_init(mutex, nil)
        var attr = pthread_condattr_t()
        pthread_condattr_init(&attr)
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC)  // the clock of Timestamp.monotonicNow
        pthread_cond_init(changed, &attr)
        pthread_condattr_destroy(&attr)
    }

    deinit {
        pthread_cond_destroy(changed)
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
        changed.deallocate()
    }

    /// Queues `buffer` for `work` (not started before `notBefore`, CLOCK_MONOTONIC ns) and
    /// returns an empty buffer of its shape to go on filling.
    func handOver(_ buffer: EntryBuffer, notBefore: UInt64 = 0, _ work: @escaping Work) throws -> EntryBuffer {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        if let failure { throw failure }
        if thread == nil {
            stopping = false
            let t = ThreadGroup()
            t.start { self.serve() }
            thread = t
        }
        let shape = Shape(buffer)
        if made[shape] == nil { made[shape] = 1 }  // this one
        queue.append((buffer, notBefore, work))
        pthread_cond_broadcast(changed)
        while true {
            if let failure { throw failure }
            if let i = done.firstIndex(where: { Shape($0) == shape }) { return done.remove(at: i) }
            if made[shape]! < depth {
                made[shape]! += 1
                return EntryBuffer(keySize: shape.keySize, valueSize: shape.valueSize, capacity: shape.capacity)
            }
            pthread_cond_wait(changed, mutex)
        }
    }

    /// Waits until every buffer handed over is done; the first error, if any.
    func finish() throws {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        while !queue.isEmpty || busy { pthread_cond_wait(changed, mutex) }
        if let failure { throw failure }
    }

    /// Ends the thread once what was handed over is done (or dropped after an error).
    func stop() {
        pthread_mutex_lock(mutex)
        stopping = true
        let t = thread
        thread = nil
        pthread_cond_broadcast(changed)
        pthread_mutex_unlock(mutex)
        t?.join()
    }

    private func serve() {
        pthread_mutex_lock(mutex)
        while true {
            while queue.isEmpty && !stopping { pthread_cond_wait(changed, mutex) }
            if queue.isEmpty { break }
            let now = Timestamp.monotonicNow()
            guard let next = queue.firstIndex(where: { $0.notBefore <= now }) else {
                let due = queue.map(\.notBefore).min()!
                var ts = timespec(tv_sec: Int(due / 1_000_000_000), tv_nsec: Int(due % 1_000_000_000))
                pthread_cond_timedwait(changed, mutex, &ts)
                continue
            }
            let (buffer, _, work) = queue.remove(at: next)
            let skip = failure != nil
            busy = true
            pthread_mutex_unlock(mutex)
            var error: Error? = nil
            if !skip {
                do { try work(buffer) } catch let e { error = e }
            }
            buffer.clear()
            pthread_mutex_lock(mutex)
            busy = false
            if failure == nil { failure = error }
            done.append(buffer)
            pthread_cond_broadcast(changed)
        }
        pthread_mutex_unlock(mutex)
    }
}
