import CLibBPF
import ConntrackKit
import Glibc

extension Conntrack {
    /// Every entry, decoded: for small maps in tests, never for listing.
    public static func all(_ dp: ReferenceDataplane) throws -> [ConntrackEntry] {
        var out: [ConntrackEntry] = []
        try dp.scan { batch in
            for i in 0..<batch.count { out.append(batch[i].entry) }
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

/// The pinned TC program of a dataplane, run on single packets through BPF_PROG_TEST_RUN.
public final class TCProgram {
    public let fd: Int32

    public init(_ dp: ReferenceDataplane) throws {
        let path = dp.pinDir.pin(CTCTL_PIN_PROG_TC)
        fd = CLibBPF_obj_get(path, 0)
        guard fd >= 0 else { throw CtctlError(.unavailable, "cannot open \(path): \(Errno(-fd))") }
    }

    deinit { close(fd) }

    /// run(), or nil if BPF_PROG_TEST_RUN refuses the frame itself (EINVAL: shorter than an
    /// Ethernet header, or an IP ethertype without a whole IP header behind it).
    public func runIfAccepted(_ packet: [UInt8]) throws -> TCRun? {
        do { return try run(packet) } catch let e as TestRunRefused where e.code == EINVAL { return nil }
    }

    public struct TestRunRefused: Error { public let code: Int32 }

    /// The verdict and the packet as it left, for `packet` (an Ethernet frame).
    public func run(_ packet: [UInt8], repeat count: Int = 1) throws -> TCRun {
        var out = [UInt8](repeating: 0, count: packet.count + 256)
        var outSize = UInt32(out.count)
        var verdict: UInt32 = 0
        var duration: UInt32 = 0
        let rc = packet.withUnsafeBytes { input in
            CLibBPF_prog_test_run(
                fd, input.baseAddress, UInt32(input.count), &out, &outSize, nil, 0, Int32(count), &verdict, &duration)
        }
        guard rc == 0 else { throw TestRunRefused(code: -rc) }
        return TCRun(verdict: verdict, packet: Array(out[..<Int(outSize)]), durationNs: duration)
    }
}

extension ReferenceDataplane {
    /// Runs the pinned TC program once on `packet` (tests: one call, one program open).
    public func runTC(_ packet: [UInt8], repeat count: Int = 1) throws -> TCRun {
        try TCProgram(self).run(packet, repeat: count)
    }
}
