/// Removes entries from Calico's conntrack maps. This version reads only: a dry run reports
/// what would go, each NAT half with its partner found by the datapath's own rule.
public final class CalicoRemover: EntryRemover {
    let dp: CalicoDataplane
    let report: RemovalReport<CalicoEntry>
    public private(set) var counts = RemovalCounts()
    private var handled = HandledKeys()

    init(_ dp: CalicoDataplane, lock: WriterLock?, report: @escaping RemovalReport<CalicoEntry>) throws(CtctlError) {
        guard lock == nil else {
            throw CtctlError(
                .usage,
                "ctctl reads Calico's maps but does not write them in this version: add --dry-run to see what would be removed")
        }
        self.dp = dp
        self.report = report
    }

    public var dryRun: Bool { true }

    public func add(_ e: CalicoEntry, reason: StaleReason?) throws {
        let size = e.format.keySize
        if handled.contains(e.key, count: size) { return }
        var partnerKey: [UInt8]? = nil
        try dp.partner(of: e) { p in partnerKey = p.map { Array(UnsafeRawBufferPointer(start: $0.key, count: size)) } }
        handled.insert(e.key, count: size)
        if let partnerKey { partnerKey.withUnsafeBytes { handled.insert($0.baseAddress!, count: size) } }
        let outcome = DeleteOutcome.wouldDelete(partner: partnerKey != nil)
        counts.record(outcome, reason: reason)
        try report(e, reason, outcome)
    }

    public func flush() throws {}
}
