import CLibBPF
import ConntrackKit
import Foundation
import Glibc
import TestSupport
import Testing

/// A dataplane loaded into its own pin directory for one test, always unloaded after
/// it, even when the test fails. Kernel features missing here fail the test loudly.
final class TestDataplane: @unchecked Sendable {
    let pins: PinDirectory
    let dp: ReferenceDataplane

    static func uniqueName(_ tag: String) -> String {
        "ctctl-test-\(getpid())-\(tag)-\(UInt32.random(in: 0..<UInt32.max))"
    }

    /// `root`: a directory on bpffs to make the pin directory in. `testHooks`: load the
    /// test build of the datapath (`make test` puts it beside the tests; see CTCTL_TEST_HOOKS).
    init(_ tag: String, options: LoadOptions = LoadOptions(), root: String = "/sys/fs/bpf", testHooks: Bool = false) throws {
        pins = PinDirectory(root + "/" + TestDataplane.uniqueName(tag))
        let object =
            testHooks
            ? URL(fileURLWithPath: ctctlBinary()).deletingLastPathComponent().appendingPathComponent("ctctl-test.bpf.o").path
            : nil
        try Loader.load(pins, options: options, objectPath: object)
        dp = try ReferenceDataplane(pins, readOnly: false)
    }

    /// Detaches every recorded attachment, then unpins everything load made.
    func cleanup() {
        if let list = try? Attachments.list(dp), let lock = try? WriterLock(pins) {
            for a in list {
                _ = try? Attachments.detach(dp, ifname: a.ifname, netns: a.netns.isEmpty ? nil : a.netns, lock: lock)
            }
        }
        do { try Loader.unload(pins) } catch { Issue.record("cleanup of \(pins.path) failed: \(error)") }
    }

    func lock() throws -> WriterLock { try WriterLock(pins) }

    func setService(_ ref: String, _ backends: [String]) throws {
        try Services.set(dp, ServiceRef(ref)!, backends: backends.map { Endpoint($0)! }, lock: lock())
    }

    func deleteService(_ ref: String) throws {
        _ = try Services.delete(dp, ServiceRef(ref)!, lock: lock())
    }

    func run(_ packet: [UInt8]) throws -> TCRun { try dp.runTC(packet) }

    func entry(_ proto: IPProto, _ src: String, _ dst: String) throws -> ConntrackEntry? {
        try Conntrack.lookup(dp, FlowKey(proto: proto, src: Endpoint(src)!, dst: Endpoint(dst)!))
    }

    func counter(_ name: String) throws -> UInt64 {
        try #require(try dp.counterTotals().first { $0.name == name }).value
    }

    func entries() throws -> [ConntrackEntry] { try Conntrack.all(dp) }

    /// Rewrites an entry's value in place (tests only: staging idle or odd states).
    func rewrite(_ proto: IPProto, _ src: String, _ dst: String, _ change: (inout ctctl_ct_value) -> Void) throws {
        let key = FlowKey(proto: proto, src: Endpoint(src)!, dst: Endpoint(dst)!).raw
        var v = try #require(try dp.ct.lookup(key, as: ctctl_ct_value.self))
        change(&v)
        try dp.ct.update(key, v)
    }
}

/// Runs body with a fresh dataplane and always cleans it up.
func withDataplane<T>(
    _ tag: String, options: LoadOptions = LoadOptions(), testHooks: Bool = false, _ body: (TestDataplane) throws -> T
) throws -> T {
    let t = try TestDataplane(tag, options: options, testHooks: testHooks)
    defer { t.cleanup() }
    return try body(t)
}

/// Runs body with a fresh dataplane filled as the benchmark fills it (BenchFill: services, live
/// entries and 10% stale), in a 256k-entry map with UDP and TCP timeouts.
func withFilledDataplane<T>(_ tag: String, entries: Int, _ body: (TestDataplane, BenchFill.Counts) throws -> T) throws -> T {
    var o = LoadOptions()
    o.ctSize = 1 << 18
    o.timeouts = try Timeouts(parsing: "udp=30s,tcp=120s")
    return try withDataplane(tag, options: o) { t in
        let fill = BenchFill(entries: entries)
        try fill.createServices(t.dp, lock: t.lock())
        return try body(t, try fill.write(t.dp, now: Timestamp.monotonicNow()))
    }
}

extension LoadOptions {
    static var epochOff: LoadOptions {
        var o = LoadOptions()
        o.serviceEpoch = false
        return o
    }
}
