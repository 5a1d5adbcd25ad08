import Glibc
import Testing

@testable import ConntrackKit

/// A remover's buffers, deleted on a thread of their own (DeletePipeline): in order, a held
/// buffer waiting while later ones go ahead, the scan held back when `depth` are in flight,
/// and the first error stopping the work.
@Suite("the delete pipeline")
struct DeletePipelineTests {
    /// A one-entry buffer holding `tag` in its key.
    static func buffer(_ tag: UInt32, capacity: Int = 1) -> EntryBuffer {
        let b = EntryBuffer(keySize: 4, valueSize: 4, capacity: capacity)
        var t = tag
        withUnsafeBytes(of: &t) { b.append(key: $0.baseAddress!, value: $0.baseAddress!, nil) }
        return b
    }

    static func tag(_ b: EntryBuffer) -> UInt32 { b.key(0).load(as: UInt32.self) }

    final class Log: @unchecked Sendable {
        let lock = Lock()
        var tags: [UInt32] = []
        var inFlight = 0
        var most = 0
        func add(_ t: UInt32) { lock.withLock { tags.append(t) } }
    }

    @Test("buffers are done in the order handed over, each once, emptied, on another thread; the scan keeps filling")
    func order() throws {
        let p = DeletePipeline(depth: 2)
        defer { p.stop() }
        let log = Log()
        let me = pthread_self()
        var b = DeletePipelineTests.buffer(0)
        for i in 0..<50 {
            b.clear()
            var t = UInt32(i)
            withUnsafeBytes(of: &t) { b.append(key: $0.baseAddress!, value: $0.baseAddress!, nil) }
            b = try p.handOver(b) { x in
                #expect(pthread_equal(pthread_self(), me) == 0)
                log.add(DeletePipelineTests.tag(x))
            }
            #expect(b.count == 0, "an empty buffer comes back")
        }
        try p.finish()
        #expect(log.tags == Array(0..<50))
    }

    @Test("a buffer held until a time waits; later ones go ahead; finish waits for it")
    func held() throws {
        let p = DeletePipeline(depth: 2)
        defer { p.stop() }
        let log = Log()
        let start = Timestamp.monotonicNow()
        var ranAt: UInt64 = 0
        _ = try p.handOver(DeletePipelineTests.buffer(1, capacity: 2), notBefore: start + 150_000_000) { _ in
            ranAt = Timestamp.monotonicNow()
            log.add(1)
        }
        var b = DeletePipelineTests.buffer(2)
        for t in UInt32(2)...5 {
            b = try p.handOver(b) { _ in log.add(t) }
            var v = t + 1
            withUnsafeBytes(of: &v) { b.append(key: $0.baseAddress!, value: $0.baseAddress!, nil) }
        }
        try p.finish()
        #expect(log.tags == [2, 3, 4, 5, 1], "the held buffer last")
        #expect(ranAt >= start + 150_000_000, "not before its time")
    }

    @Test("at most `depth` buffers of a shape exist: handOver waits for one to come back")
    func depth() throws {
        let p = DeletePipeline(depth: 2)
        defer { p.stop() }
        let log = Log()
        var b = DeletePipelineTests.buffer(0)
        var seen = Set<ObjectIdentifier>([ObjectIdentifier(b)])
        for i in 0..<20 {
            b = try p.handOver(b) { _ in
                log.lock.withLock {
                    log.inFlight += 1
                    log.most = max(log.most, log.inFlight)
                }
                usleep(2000)
                log.lock.withLock { log.inFlight -= 1 }
                log.add(UInt32(i))
            }
            seen.insert(ObjectIdentifier(b))
            var t = UInt32(i)
            withUnsafeBytes(of: &t) { b.append(key: $0.baseAddress!, value: $0.baseAddress!, nil) }
        }
        try p.finish()
        #expect(seen.count == 2, "two buffers, recycled")
        #expect(log.most == 1, "one at a time")
        #expect(log.tags.count == 20)
    }

    struct Boom: Error {}

    @Test("the first error comes back from the next handOver or finish; later buffers are dropped undone")
    func failure() throws {
        let p = DeletePipeline(depth: 2)
        defer { p.stop() }
        let log = Log()
        var b = DeletePipelineTests.buffer(0)
        b = try p.handOver(b) { _ in throw Boom() }
        var thrown = false
        for i in 1..<100 {
            var t = UInt32(i)
            withUnsafeBytes(of: &t) { b.append(key: $0.baseAddress!, value: $0.baseAddress!, nil) }
            do { b = try p.handOver(b) { _ in log.add(UInt32(i)) } } catch is Boom {
                thrown = true
                break
            }
        }
        #expect(thrown || (try? p.finish()) == nil, "the error comes back")
        #expect(throws: Boom.self) { try p.finish() }
        #expect(log.tags.isEmpty, "nothing after the failed buffer was done")
    }
}
