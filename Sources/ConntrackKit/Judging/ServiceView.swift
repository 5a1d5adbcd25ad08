import CLibBPF
import Glibc

/// One consistent snapshot of the NAT maps, judged by addresses, never by service ids
/// (ids change when a service is recreated).
public struct ServiceView: Sendable {
    /// Every frontend; the frontends that translate; those over the backend limit (never
    /// judged); (frontend, backend) pairs of the frontends that translate.
    private let all: WordSet
    private let withBackends: WordSet
    private let overLimit: WordSet
    private let members: WordSet
    public let epoch: UInt32
    public let serviceCount: Int

    static func front(_ a: IPAddress, _ port: UInt16, _ proto: UInt8) -> [UInt64] {
        [a.hi, a.lo, UInt64(port) | UInt64(proto) << 16 | UInt64(a.family.rawValue) << 24]
    }

    init(epoch: UInt32, services: [Service]) {
        self.epoch = epoch
        serviceCount = services.count
        all = WordSet(
            width: 3, keys: services.map { ServiceView.front($0.ref.vip.address, $0.ref.vip.port, $0.ref.proto.number) })
        withBackends = WordSet(
            width: 3,
            keys: services.filter { $0.translates && !$0.liveBackends.isEmpty }.map {
                ServiceView.front($0.ref.vip.address, $0.ref.vip.port, $0.ref.proto.number)
            })
        overLimit = WordSet(
            width: 3,
            keys: services.filter(\.overLimit).map {
                ServiceView.front($0.ref.vip.address, $0.ref.vip.port, $0.ref.proto.number)
            })
        members = WordSet(
            width: 6,
            keys: services.filter { !$0.overLimit }.flatMap { s in
                s.liveBackends.map {
                    ServiceView.front(s.ref.vip.address, s.ref.vip.port, s.ref.proto.number) + [
                        $0.address.hi, $0.address.lo, UInt64($0.port),
                    ]
                }
            })
    }

    /// Reads the frontends and backends until the service epoch (a sequence counter) is the
    /// same even number before and after, so the view never mixes two control-plane states.
    /// An epoch that stays odd for `waitNs` was left by a writer that died mid-write when no
    /// ctctl writer holds the lock (or the caller holds it, `holdingLock`): the maps are then
    /// as the datapath sees them, and the view is read as they are.
    public static func read(
        _ dp: Dataplane, holdingLock: Bool = false, waitNs: UInt64 = 2_000_000_000
    ) throws(CtctlError) -> ServiceView {
        let deadline = Timestamp.monotonicNow() + waitNs
        var tries = 0
        while true {
            let before = try dp.epoch()
            let late = Timestamp.monotonicNow() > deadline
            // odd and late: read the maps as they are if no ctctl writer can be mid-write
            if before & 1 == 0 || (late && (holdingLock || (try? WriterLock(dp.pinDir, timeoutMs: 0)) != nil)) {
                let services = try Services.list(dp)
                if try dp.epoch() == before { return ServiceView(epoch: before, services: services) }
            }
            if late {
                throw CtctlError(
                    .software,
                    before & 1 == 1
                        ? "the services at \(dp.pinDir.path) are being written (service epoch \(before) is odd) and have been for more than \(DurationText.format(nanoseconds: waitNs)): try again"
                        : "the services kept changing while ctctl read them (\(tries) tries in \(DurationText.format(nanoseconds: waitNs))): try again"
                )
            }
            tries += 1
            usleep(tries < 10 ? 100 : 1000)
        }
    }

    /// Test helper and for callers that already hold a consistent list.
    public static func of(_ services: [Service], epoch: UInt32 = 0) -> ServiceView {
        ServiceView(epoch: epoch, services: services)
    }

    /// Is addr:port/proto a service with at least one backend?
    @inline(__always)
    public func hasBackends(_ a: IPAddress, _ port: UInt16, _ proto: UInt8) -> Bool {
        var k = (a.hi, a.lo, UInt64(port) | UInt64(proto) << 16 | UInt64(a.family.rawValue) << 24)
        return withUnsafePointer(to: &k) { withBackends.contains(UnsafeRawPointer($0).assumingMemoryBound(to: UInt64.self)) }
    }

    public func isService(_ a: IPAddress, _ port: UInt16, _ proto: UInt8) -> Bool {
        var k = (a.hi, a.lo, UInt64(port) | UInt64(proto) << 16 | UInt64(a.family.rawValue) << 24)
        return withUnsafePointer(to: &k) { all.contains(UnsafeRawPointer($0).assumingMemoryBound(to: UInt64.self)) }
    }

    /// Does service a:port/proto have more backends than the datapath serves? Its flows
    /// are never judged.
    @inline(__always)
    public func isOverLimit(_ a: IPAddress, _ port: UInt16, _ proto: UInt8) -> Bool {
        var k = (a.hi, a.lo, UInt64(port) | UInt64(proto) << 16 | UInt64(a.family.rawValue) << 24)
        return withUnsafePointer(to: &k) { overLimit.contains(UnsafeRawPointer($0).assumingMemoryBound(to: UInt64.self)) }
    }

    /// Is b:bport one of the backends of service a:port/proto?
    @inline(__always)
    public func isBackend(_ b: IPAddress, _ bport: UInt16, of a: IPAddress, _ port: UInt16, _ proto: UInt8) -> Bool {
        var k = (a.hi, a.lo, UInt64(port) | UInt64(proto) << 16 | UInt64(a.family.rawValue) << 24, b.hi, b.lo, UInt64(bport))
        return withUnsafePointer(to: &k) { members.contains(UnsafeRawPointer($0).assumingMemoryBound(to: UInt64.self)) }
    }
}
