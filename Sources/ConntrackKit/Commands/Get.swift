extension Operations {
    /// `conntrack get`: every entry of one flow, found by key (never by scanning): the
    /// tuple itself, its reversed tuple (a normal flow seen from the reply side), and
    /// the partner of each NAT half found. With `explain`, what each entry means.
    public static func get(
        _ target: SessionOptions, _ key: FlowKey, mode: EntryPrinter.Mode, explain: Bool, console: Console
    ) throws {
        try session(target, readOnly: true, console: console).run(
            GetOp(key: key, mode: mode, explain: explain, console: console))
    }

    struct GetOp: DataplaneOperation {
        let key: FlowKey
        let mode: EntryPrinter.Mode
        let explain: Bool
        let console: Console
        func run<D: Dataplane>(_ dp: D) throws { try Operations.get(dp, key, mode: mode, explain: explain, console: console) }
    }

    static func get<D: Dataplane>(_ dp: D, _ key: FlowKey, mode: EntryPrinter.Mode, explain: Bool, console: Console) throws {
        let now = Timestamp.monotonicNow()
        try dp.entries(of: key) { found in
            if explain {
                try explainEntries(dp, found, asked: key, now: now, console: console)
                return
            }
            let printer = EntryPrinter(mode, to: console.out, now: now, showReason: false)
            printer.begin()
            for e in found { printer.add(e, reason: nil) }
            printer.end()
            if mode != .count { console.err.line("\(found.count) entr\(found.count == 1 ? "y" : "ies") for \(key)") }
        }
    }

    static func explainEntries<D: Dataplane>(_ dp: D, _ found: [D.Entry], asked: FlowKey, now: UInt64, console: Console) throws {
        guard !found.isEmpty else {
            console.out.line("No conntrack entry for \(asked) or its reverse.")
            console.out.line(
                "The next packet of this flow is a conntrack miss: it will be NAT-ed if \(asked.dst)/\(asked.proto) is a service, and tracked as a normal flow otherwise."
            )
            return
        }
        // The same judge as `list --stale`, on one consistent view, reading only.
        let rules = try dp.staleRules(holdingLock: false)
        var stale: [(StoredTuple, StaleReason)] = []
        try EntryScan(dp, filter: ConntrackFilter(), judge: StaleJudge(rules, now: now), ledger: false).judge(found) { e, r in
            if let r { stale.append((e.storedKey, r)) }
        }
        let version = rules.view.version
        for e in found {
            let age = { (t: UInt64) in DurationText.format(nanoseconds: now > t ? now - t : 0) }
            var facts = ["\(e.type) entry"]
            if let created = e.created { facts.append("created \(age(created)) ago") }
            facts.append("last seen \(age(e.lastSeenNs)) ago")
            if let packets = e.packetCount { facts.append("\(packets) packets") }
            if let epoch = e.serviceEpoch { facts.append("epoch \(epoch) (now \(version))") }
            let k = e.storedKey
            console.out.line("\(k.description(proto: e.proto)): " + facts.joined(separator: ", "))
            let reason = stale.first { $0.0 == k }?.1
            var lines = dp.explain(e, reason: reason, rules: rules, now: now)
            if let reason {
                let fix =
                    "ctctl conntrack remove \(IPProto(e.proto)) \(k.dst) \(k.src) --dport \(k.dport) --sport \(k.sport)"
                lines.append("Stale: \(reason.rawValue). Fix now: `\(fix)`, or `ctctl heal --once` for every stale entry.")
            } else {
                lines.append("Not stale.")
            }
            for line in lines { console.out.line("  " + line) }
        }
    }
}
