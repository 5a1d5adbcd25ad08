import CLibBPF

extension Operations {
    /// `conntrack get`: every entry of one flow, found by key (never by scanning): the
    /// tuple itself, its reversed tuple (a normal flow seen from the reply side), and
    /// the partner of each NAT half found. With `explain`, what each entry means.
    public static func get(_ pins: PinDirectory, _ key: FlowKey, mode: EntryPrinter.Mode, explain: Bool, console: Console) throws
    {
        let dp = try Dataplane(pins, readOnly: true)
        let now = Timestamp.monotonicNow()
        let found = EntryBuffer(capacity: 4)
        var seen: [ctctl_ct_key] = []
        func add(_ k: ctctl_ct_key) throws {
            if seen.contains(where: { sameKey($0, k) }) { return }
            seen.append(k)
            guard let v = try dp.ct.lookup(k, as: ctctl_ct_value.self) else { return }
            found.append(key: k, value: v, nil)
        }
        try add(key.raw)
        try add(key.reversed().raw)
        for i in 0..<found.count where found.view(i).isNAT { try add(found.view(i).partnerKey.pointee) }

        if explain {
            try explainEntries(dp, pins, found, asked: key, now: now, console: console)
            return
        }
        let printer = EntryPrinter(mode, to: console.out, now: now, showReason: false)
        printer.begin()
        for i in 0..<found.count { printer.add(found.view(i), reason: nil) }
        printer.end()
        if mode != .count { console.err.line("\(found.count) entr\(found.count == 1 ? "y" : "ies") for \(key)") }
    }

    static func explainEntries(
        _ dp: Dataplane, _ pins: PinDirectory, _ found: EntryBuffer, asked: FlowKey, now: UInt64,
        console: Console
    ) throws {
        guard found.count > 0 else {
            console.out.line("No conntrack entry for \(asked) or its reverse.")
            console.out.line(
                "The next packet of this flow is a conntrack miss: it will be NAT-ed if \(asked.dst)/\(asked.proto) is a service, and tracked as a normal flow otherwise."
            )
            return
        }
        // The same judge as `list --stale`, on one consistent view, reading only.
        let view = try ServiceView.read(dp)
        let judge = StaleJudge(view: view, timeouts: dp.timeouts, now: now)
        var stale: [(ctctl_ct_key, StaleReason)] = []
        let scan = EntryScan(dp, filter: ConntrackFilter(), judge: judge, ledger: false)
        try scan.judgeOnly(found) { e, r in if let r { stale.append((e.key.pointee, r)) } }
        let epoch = try dp.epoch()
        let epochOn = dp.serviceEpochEnabled
        for i in 0..<found.count {
            let e = found.view(i)
            let entry = e.entry
            let age = { (t: UInt64) in DurationText.format(nanoseconds: now > t ? now - t : 0) }
            console.out.line(
                "\(entry.key): \(entry.type) entry, created \(age(entry.createdNs)) ago, last seen \(age(entry.lastSeenNs)) ago, \(entry.packets) packets, epoch \(entry.epoch) (now \(epoch))"
            )
            let reason = stale.first { sameKey($0.0, e.key.pointee) }?.1
            for line in explanation(e, reason: reason, view: view, epoch: epoch, epochOn: epochOn, dp: dp, now: now) {
                console.out.line("  " + line)
            }
        }
    }

    static func explanation(
        _ e: ReferenceEntry, reason: StaleReason?, view: ServiceView, epoch: UInt32, epochOn: Bool,
        dp: Dataplane, now: UInt64
    ) -> [String] {
        let entry = e.entry
        var out: [String] = []
        let recheck = epochOn && entry.epoch != epoch
        switch entry.type {
        case .normal:
            let dst = ServiceRef(vip: entry.key.dst, proto: entry.key.proto)
            if view.hasBackends(dst.vip.address, dst.vip.port, dst.proto.number) {
                out.append(
                    "\(dst) is a service with backends, but this entry has no NAT: it was created while the service was missing.")
                out.append(
                    recheck
                        ? "Next packet: the epoch re-check converts it into a NAT flow to a backend."
                        : "Next packet: NOT translated. It goes to \(dst.vip.address) untranslated and never reaches a backend\(epochOn ? "" : " (the epoch re-check is off)")."
                )
            } else if view.isService(dst.vip.address, dst.vip.port, dst.proto.number) {
                out.append("\(dst) is a service with no backends; this entry passes packets to it untranslated.")
            } else {
                out.append("A normal flow: \(entry.key.dst) is not a service. Next packet: passed untranslated, as intended.")
            }
        case .natForward, .natReverse:
            guard let svc = entry.service, let backend = entry.backend else { break }
            let fwd = entry.type == .natForward
            out.append(
                fwd
                    ? "NAT forward half of service \(svc): packets to \(svc.vip) are translated to backend \(backend)."
                    : "NAT reverse half of service \(svc): replies from backend \(backend) are rewritten to come from \(svc.vip)."
            )
            if !view.isService(svc.vip.address, svc.vip.port, svc.proto.number) {
                out.append("Service \(svc) no longer exists.")
                if fwd {
                    out.append(
                        recheck
                            ? "Next packet: the epoch re-check turns the flow into a normal one (untranslated)."
                            : "Next packet: still translated to \(backend), a backend of a service that is gone.")
                }
            } else if !view.isBackend(backend.address, backend.port, of: svc.vip.address, svc.vip.port, svc.proto.number) {
                out.append("\(backend) is no longer one of the service's backends.")
                if fwd {
                    out.append(
                        recheck
                            ? "Next packet: the epoch re-check re-balances the flow to a current backend."
                            : "Next packet: still sent to \(backend), which is no longer a backend.")
                }
            } else if fwd {
                out.append("Next packet: translated to \(backend), a current backend.")
            }
        }
        let timeout = dp.timeouts.timeout(proto: e.proto, flags: e.flags)
        if dp.timeouts.idle(proto: e.proto, flags: e.flags, lastSeen: entry.lastSeenNs, now: now) {
            out.append(
                "Idle for longer than the \(DurationText.format(nanoseconds: timeout)) \(entry.key.proto) timeout\(entry.type == .normal ? "" : " (this half)"): the next packet starts a new flow."
            )
        }
        if let reason {
            let fix =
                "ctctl conntrack remove \(entry.key.proto) \(entry.key.dst.address) \(entry.key.src.address) --dport \(entry.key.dst.port) --sport \(entry.key.src.port)"
            out.append("Stale: \(reason.rawValue). Fix now: `\(fix)`, or `ctctl heal --once` for every stale entry.")
        } else {
            out.append("Not stale.")
        }
        return out
    }
}

extension EntryScan {
    /// Judges the entries of a buffer (not the map), with the same rules and partner check
    /// as a scan; `emit` gets only the stale ones.
    func judgeOnly(_ entries: EntryBuffer, _ emit: (ReferenceEntry, StaleReason?) throws -> Void) throws {
        for i in 0..<entries.count { try consider(entries.view(i), emit) }
    }
}

/// Two conntrack keys are the same key (all 40 bytes).
func sameKey(_ a: ctctl_ct_key, _ b: ctctl_ct_key) -> Bool {
    withUnsafeBytes(of: a) { x in withUnsafeBytes(of: b) { y in x.elementsEqual(y) } }
}
