import Testing

@testable import ConntrackKit

/// The fixed-memory pieces of a scan's output and of a remover's report.
@Suite("output buffers and the remover's memory")
struct OutputBufferTests {
    @Test("a ByteWriter without a stream grows past its chunk and keeps every byte")
    func writerGrows() {
        var w = ByteWriter(stream: nil, chunk: 16)
        var expected: [UInt8] = []
        for i in 0..<5000 {
            w.decimal(UInt64(i))
            w.byte(44)
            expected += Array("\(i),".utf8)
        }
        w.spaces(3)
        w.ascii("end")
        expected += Array("   end".utf8)
        let bytes = w.bytes
        #expect(bytes == expected)
        w.reset()
        let empty = w.isEmpty
        #expect(empty)
        w.text("x")
        let text = w.string
        #expect(text == "x")
    }

    @Test("IPv4 addresses from the octet table, as inet_ntop writes them")
    func ipv4Text() {
        for text in ["0.0.0.0", "255.255.255.255", "10.0.100.9", "198.18.1.2", "1.22.133.4", "100.10.1.0"] {
            var w = ByteWriter(stream: nil, chunk: 8)
            w.address(IPAddress(text)!)
            w.byte(47)
            let got = w.string
            #expect(got == text + "/")
        }
    }

    @Test("a ByteWriter with a stream hands whole chunks to it")
    func writerFlushes() {
        let out = CapturedStream()
        var w = ByteWriter(stream: out, chunk: 64)
        for _ in 0..<100 {
            w.ascii("0123456789")
            w.flushIfFull()
        }
        w.flush()
        #expect(out.bytes.count == 1000)
        #expect(out.text == String(repeating: "0123456789", count: 100))
    }

    @Test("the remover remembers the latest handled keys, not every key: flat memory at any map size")
    func handledKeysWindow() {
        var h = HandledKeys()
        func key(_ i: Int) -> [UInt8] { withUnsafeBytes(of: UInt64(i)) { Array($0) } }
        let n = HandledKeys.generation * 3 + 5
        for i in 0..<n { key(i).withUnsafeBytes { h.insert($0.baseAddress!, count: 8) } }
        // the latest `generation` keys are always there
        for i in (n - HandledKeys.generation)..<n {
            #expect(key(i).withUnsafeBytes { h.contains($0.baseAddress!, count: 8) })
        }
        // the oldest are forgotten
        for i in 0..<1000 { #expect(!key(i).withUnsafeBytes { h.contains($0.baseAddress!, count: 8) }) }
    }
}
