import CLibBPF
import Glibc

/// One consistent snapshot of the reference dataplane's NAT maps, judged by addresses,
/// never by service ids (ids change when a service is recreated). A frontend is the VIP
/// triple (address, port, protocol): the datapath matches nothing else.
public struct ReferenceServiceView: ServiceQuestions, Sendable {
    /// Every frontend; the frontends that translate; those over the backend limit (never
    /// judged); (frontend, backend) pairs of the frontends that translate.
    private let all: WordSet
    private let withBackends: WordSet
    private let overLimit: WordSet
    private let members: WordSet
    public let epoch: UInt32
    public let serviceCount: Int

    static func front(_ a: IPAddress, _ port: UInt16, _ proto: UInt8) -> [UInt64] {
        let w = words(a, port, proto)
        return [w.0, w.1, w.2]
    }

    init(epoch: UInt32, services: [Service]) {
        self.epoch = epoch
        serviceCount = services.count
        all = WordSet(
            width: 3, keys: services.map { ReferenceServiceView.front($0.ref.vip.address, $0.ref.vip.port, $0.ref.proto.number) })
        withBackends = WordSet(
            width: 3,
            keys: services.filter { $0.translates && !$0.liveBackends.isEmpty }.map {
                ReferenceServiceView.front($0.ref.vip.address, $0.ref.vip.port, $0.ref.proto.number)
            })
        overLimit = WordSet(
            width: 3,
            keys: services.filter(\.overLimit).map {
                ReferenceServiceView.front($0.ref.vip.address, $0.ref.vip.port, $0.ref.proto.number)
            })
        members = WordSet(
            width: 6,
            keys: services.filter { !$0.overLimit }.flatMap { s in
                s.liveBackends.map {
                    ReferenceServiceView.front(s.ref.vip.address, s.ref.vip.port, s.ref.proto.number) + [
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
        _ dp: ReferenceDataplane, holdingLock: Bool = false, waitNs: UInt64 = 2_000_000_000
    ) throws(CtctlError) -> ReferenceServiceView {
        let deadline = Timestamp.monotonicNow() + waitNs
        var tries = 0
        while true {
            let before = try dp.epoch()
            let late = Timestamp.monotonicNow() > deadline
            // odd and late: read the maps as they are if no ctctl writer can be mid-write
            if before & 1 == 0 || (late && (holdingLock || (try? WriterLock(dp.pinDir, timeoutMs: 0)) != nil)) {
                let services = try Services.list(dp)
                if try dp.epoch() == before { return ReferenceServiceView(epoch: before, services: services) }
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

    /// For callers that already hold a consistent list.
    public static func of(_ services: [Service], epoch: UInt32 = 0) -> ReferenceServiceView {
        ReferenceServiceView(epoch: epoch, services: services)
    }

    public var version: UInt32 { epoch }

    @inline(__always)
    static func words(_ a: IPAddress, _ port: UInt16, _ proto: UInt8) -> (UInt64, UInt64, UInt64) {
        (a.hi, a.lo, UInt64(port) | UInt64(proto) << 16 | UInt64(a.family.rawValue) << 24)
    }

    /// The client does not matter here: the datapath matches frontends by VIP triple only.
    public func frontendState(_ dst: IPAddress, _ port: UInt16, _ proto: UInt8, client: IPAddress) -> FrontendState {
        let w = ReferenceServiceView.words(dst, port, proto)
        if hasBackends(dst, port, proto) { return .active(Frontend(w.0, w.1, w.2)) }
        if isOverLimit(dst, port, proto) { return .unjudged }
        return isService(dst, port, proto) ? .noBackends : .none
    }

    public func isBackend(_ b: IPAddress, _ bport: UInt16, of f: Frontend) -> Bool {
        var k = (f.w0, f.w1, f.w2, b.hi, b.lo, UInt64(bport))
        return withUnsafePointer(to: &k) { members.contains(UnsafeRawPointer($0).assumingMemoryBound(to: UInt64.self)) }
    }

    @inline(__always)
    public func isActive(_ dst: IPAddress, _ port: UInt16, _ proto: UInt8, client: IPAddress) -> Bool {
        hasBackends(dst, port, proto)
    }

    @inline(__always)
    public func isActivePair(
        _ vip: IPAddress, _ port: UInt16, _ proto: UInt8, client: IPAddress, backend b: IPAddress, _ bport: UInt16
    ) -> Bool? {
        if isBackend(b, bport, of: vip, port, proto) { return true }
        return isOverLimit(vip, port, proto) ? nil : false
    }

    @inline(__always)
    static func contains(_ set: WordSet, _ a: IPAddress, _ port: UInt16, _ proto: UInt8) -> Bool {
        var k = words(a, port, proto)
        return withUnsafePointer(to: &k) { set.contains(UnsafeRawPointer($0).assumingMemoryBound(to: UInt64.self)) }
    }

    /// Is addr:port/proto a service with at least one backend?
    @inline(__always)
    public func hasBackends(_ a: IPAddress, _ port: UInt16, _ proto: UInt8) -> Bool {
        ReferenceServiceView.contains(withBackends, a, port, proto)
    }

    public func isService(_ a: IPAddress, _ port: UInt16, _ proto: UInt8) -> Bool {
        ReferenceServiceView.contains(all, a, port, proto)
    }

    /// Does service a:port/proto have more backends than the datapath serves? Its flows
    /// are never judged.
    @inline(__always)
    public func isOverLimit(_ a: IPAddress, _ port: UInt16, _ proto: UInt8) -> Bool {
        ReferenceServiceView.contains(overLimit, a, port, proto)
    }

    /// Is b:bport one of the backends of service a:port/proto?
    @inline(__always)
    public func isBackend(_ b: IPAddress, _ bport: UInt16, of a: IPAddress, _ port: UInt16, _ proto: UInt8) -> Bool {
        let w = ReferenceServiceView.words(a, port, proto)
        return isBackend(b, bport, of: Frontend(w.0, w.1, w.2))
    }
}
