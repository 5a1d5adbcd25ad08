import CLibBPF
import Glibc

/// Reading the conntrack map: by key, or streamed in batches.
public enum Conntrack {
    /// The entry stored under exactly this key, if any (one lookup, no scan).
    public static func lookup(_ dp: Dataplane, _ key: FlowKey) throws(CtctlError) -> ConntrackEntry? {
        let raw = key.raw
        let value: ctctl_ct_value?
        do throws(Errno) { value = try dp.ct.lookup(raw, as: ctctl_ct_value.self) } catch {
            throw CtctlError.from(error, doing: "reading", path: dp.ct.path)
        }
        return value.map { ConntrackEntry(key: raw, value: $0) }
    }

    /// Streams the whole map in batches of raw entries; memory stays at one batch.
    /// The body returns false to stop early.
    public static func scan(
        _ dp: Dataplane, batchSize: Int = 8192,
        _ body: (_ keys: UnsafePointer<ctctl_ct_key>, _ values: UnsafePointer<ctctl_ct_value>, _ count: Int) throws -> Bool
    ) throws {
        let reader = BatchReader<ctctl_ct_key, ctctl_ct_value>(capacity: batchSize)
        try reader.read(dp.ct) { n in try body(reader.keys, reader.values, n) }
    }

    /// Every entry, decoded: for small maps (tests, get --explain), never for listing.
    public static func all(_ dp: Dataplane) throws -> [ConntrackEntry] {
        var out: [ConntrackEntry] = []
        try scan(dp) { keys, values, n in
            for i in 0..<n { out.append(ConntrackEntry(key: keys[i], value: values[i])) }
            return true
        }
        return out
    }
}

/// One BPF_PROG_TEST_RUN of the TC program on a packet.
public struct TCRun: Sendable {
    public let verdict: UInt32
    public let packet: [UInt8]
    public let durationNs: UInt32

    public static let ok: UInt32 = 0  // TC_ACT_OK
    public static let shot: UInt32 = 2  // TC_ACT_SHOT
}

extension Dataplane {
    /// Runs the pinned TC program on `packet` (an Ethernet frame) through
    /// BPF_PROG_TEST_RUN and returns the verdict and the packet as it left.
    public func runTC(_ packet: [UInt8], repeat count: Int = 1) throws(CtctlError) -> TCRun {
        let path = pinDir.pin(CTCTL_PIN_PROG_TC)
        let fd: Int32
        do throws(Errno) { fd = try Errno.check { CLibBPF_obj_get(path, 0) } } catch {
            throw CtctlError.from(error, doing: "opening program", path: path)
        }
        defer { close(fd) }
        var out = [UInt8](repeating: 0, count: packet.count + 256)
        var outSize = UInt32(out.count)
        var verdict: UInt32 = 0
        var duration: UInt32 = 0
        do throws(Errno) {
            try Errno.check {
                outSize = UInt32(out.count)
                return packet.withUnsafeBytes { input in
                    CLibBPF_prog_test_run(
                        fd, input.baseAddress, UInt32(input.count), &out, &outSize, nil, 0,
                        Int32(count), &verdict, &duration)
                }
            }
        } catch {
            throw CtctlError.from(error, doing: "BPF_PROG_TEST_RUN of", path: path)
        }
        return TCRun(verdict: verdict, packet: Array(out[..<Int(outSize)]), durationNs: duration)
    }
}
