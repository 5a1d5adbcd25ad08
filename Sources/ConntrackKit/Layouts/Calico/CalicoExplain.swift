/// `get --explain` on Calico's maps: what an entry is, which frontend and backend apply, and
/// what Calico's datapath does with the flow's next packet.
extension CalicoDataplane {
    public func explain(_ e: CalicoEntry, reason: StaleReason?, rules: CalicoRules, now: UInt64) -> [String] {
        let view = rules.view
        var out: [String] = []
        let client = Endpoint(address: e.originalSource, port: e.originalSourcePort)
        let proto = IPProto(e.proto)
        switch e.typeRaw {
        case Calico.typeNormal:
            let dst = Endpoint(address: e.originalDestination, port: e.originalDestinationPort)
            let svc = ServiceRef(vip: dst, proto: proto)
            let fe = view.frontend(dst.address, dst.port, e.proto, client: client.address)
            switch view.frontendState(dst.address, dst.port, e.proto, client: client.address) {
            case .active:
                out.append(
                    "\(svc) is a service with backends (Calico service id \(fe?.id ?? 0)\(fe.map(CalicoDataplane.describe) ?? "")), but this entry has no NAT: it was created while the service was missing."
                )
                out.append(
                    "Next packet: NOT translated. Calico looks services up only when conntrack misses, so the flow goes to \(dst.address) untranslated for as long as this entry lives."
                )
            case .noBackends:
                out.append(
                    "\(svc) is a service without ready backends: a new flow would be answered unreachable; this one passes untranslated."
                )
            case .drop:
                out.append(
                    "\(svc) has a drop entry for \(client.address) (a source range it is not in): a new flow would be dropped.")
            case .excluded:
                out.append("\(svc) is excluded from NAT: passed untranslated, as intended.")
            case .unjudged:
                out.append("\(svc) is a Maglev service: ctctl does not judge its flows.")
            case .none:
                out.append("A normal flow: \(dst) is not a service. Next packet: passed untranslated, as intended.")
            }
            if e.proto == 6 {
                out.append("TCP normal entries are not judged (Calico's own scanner leaves them alone too).")
            }
        case Calico.typeNATForward, Calico.typeNATReverse:
            let fwd = e.isForward
            let svc = ServiceRef(vip: Endpoint(address: e.serviceAddress, port: e.servicePort), proto: proto)
            let backend = Endpoint(address: e.backendAddress, port: e.backendPort)
            out.append(
                fwd
                    ? "NAT_FWD of service \(svc): packets from \(client) to \(svc.vip) are translated to backend \(backend) (the NAT_REV holds the flow's state)."
                    : "NAT_REV of service \(svc): the tracking entry of \(client) -> \(backend); replies from \(backend) are rewritten to come from \(svc.vip)."
            )
            switch view.frontendState(svc.vip.address, svc.vip.port, e.proto, client: client.address) {
            case .active(let f):
                out.append(
                    view.isBackend(backend.address, backend.port, of: f)
                        ? "\(backend) is a current backend of the service."
                        : "\(backend) is no longer one of the service's backends: Calico keeps sending the flow there while this pair lives."
                )
            case .unjudged:
                out.append("The service is a Maglev service: ctctl does not judge its flows.")
            case .noBackends, .drop, .excluded, .none:
                out.append(
                    "The service no longer translates new flows: this pair keeps the flow going to \(backend) while it lives.")
            }
            var partnerFound = false
            try? partner(of: e) { p in partnerFound = p != nil }
            if !partnerFound {
                out.append(
                    fwd
                        ? "Its NAT_REV is missing: Calico's next packet deletes this entry and is treated as a new flow (translated again)."
                        : "Its NAT_FWD is missing: Calico's next packet of this flow creates a NAT_FWD, cannot insert its NAT_REV (this one is in the way) and is dropped, until this entry expires (60 s and more for UDP)."
                )
            }
            if e.proto == 6 && e.generation.skipsTCPNAT {
                out.append("TCP NAT entries are judged only for half pairs on Calico v3.31+ (its scanner leaves them alone).")
            }
        default:
            out.append("An entry of unknown type \(e.typeRaw).")
        }
        if rules.isIdle(e, now: now) {
            out.append("Idle for longer than the --timeout for \(proto): the next packet starts a new flow.")
        }
        return out
    }

    static func describe(_ f: CalicoFrontend) -> String {
        let bits = f.sourceBits(CalicoFormat(v6: f.vip.family == .v6))
        var parts: [String] = []
        if f.isNodePort { parts.append("NodePort") }
        if bits > 0 { parts.append("for sources in \(IPNetwork(address: f.source, prefix: bits))") }
        parts.append("\(f.count) backend\(f.count == 1 ? "" : "s")")
        return ", " + parts.joined(separator: ", ")
    }
}
