import CLibBPF
import Glibc

/// Where the datapath is attached, as ctctl recorded it, checked against the kernel.
public struct Attachment: Sendable {
    public enum State: String, Sendable {
        case attached
        case replaced = "replaced"  // another program holds ctctl's TC handle
        case detached = "not-attached"  // the interface exists, ctctl's filter does not
        case interfaceGone = "interface-gone"
        case netnsGone = "netns-gone"
    }

    public let netns: String
    public let ifname: String
    public let ifindex: UInt32
    public let progID: UInt32
    public let attachedAt: UInt64
    public let state: State

    public var place: String { netns.isEmpty ? ifname : "\(ifname) (netns \(netns))" }
}

public enum Attachments {
    static func key(netns: String, ifname: String) throws(CtctlError) -> ctctl_attach_key {
        guard netns.utf8.count < 64 else { throw .usage("network namespace name '\(netns)' is longer than 63 bytes") }
        var k = ctctl_attach_key()
        withUnsafeMutableBytes(of: &k.netns) { raw in
            for (i, b) in netns.utf8.enumerated() { raw[i] = b }
        }
        withUnsafeMutableBytes(of: &k.ifname) { raw in
            for (i, b) in ifname.utf8.prefix(15).enumerated() { raw[i] = b }
        }
        return k
    }

    static func string<T>(_ tuple: T) -> String {
        withUnsafeBytes(of: tuple) { raw in String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self) }
    }

    /// Attaches the datapath to clsact ingress of `ifname` (in `netns`, if given) and records it.
    public static func attach(_ dp: ReferenceDataplane, ifname: String, netns: String?, lock: WriterLock) throws {
        try dp.verify(holding: lock)
        let key = try key(netns: netns ?? "", ifname: ifname)
        let prog = try openProgram(
            dp.pinDir.pin(CTCTL_PIN_PROG_TC), missing: "no datapath program in \(dp.pinDir.path): load the dataplane again")
        let (ifindex, progID) = try NetworkNamespace.run(in: netns) { () throws -> (Int32, UInt32) in
            let ifindex = try NetworkNamespace.interfaceIndex(ifname, netns: netns)
            try refuseOtherDataplane(ifindex, ifname: ifname)
            var progID: UInt32 = 0
            var created: Int32 = 0
            do throws(Errno) {
                try Errno.bpf { CLibBPF_tc_attach(ifindex, prog.raw, &progID, &created) }
            } catch {
                throw CtctlError.from(error, doing: "attaching TC clsact ingress on", path: ifname)
            }
            return (ifindex, progID)
        }
        let value = ctctl_attach_value(ifindex: UInt32(ifindex), prog_id: progID, attached_at: UInt64(time(nil)))
        do { try dp.attachments.update(key, value) } catch {
            // keep the kernel and the record in step: undo the attach
            _ = try? NetworkNamespace.run(in: netns) { CLibBPF_tc_detach(ifindex) }
            throw error
        }
    }

    /// Refuses an interface another eBPF dataplane already serves at TC: Calico's programs
    /// (cali_tc_preamble, calico_tc_main ...) would then see ctctl's NAT, or the other way round.
    static func refuseOtherDataplane(_ ifindex: Int32, ifname: String) throws(CtctlError) {
        var ids = [UInt32](repeating: 0, count: 64)
        let n = CLibBPF_tc_attached_prog_ids(ifindex, &ids, UInt32(ids.count))
        guard n > 0 else { return }
        for id in ids.prefix(Int(min(n, 64))) {
            var name = [CChar](repeating: 0, count: 16)
            guard CLibBPF_prog_name(id, &name) == 0 else { continue }
            let text = String(cString: name)
            if text.hasPrefix("cali_") || text.hasPrefix("calico_") {
                throw CtctlError(
                    .usage,
                    "\(ifname) already carries Calico's TC programs (\(text), program id \(id)): felix owns this interface; ctctl's reference dataplane is for interfaces no other dataplane serves"
                )
            }
        }
    }

    /// Detaches ctctl's filter from `ifname` and forgets the record. Returns false if
    /// the interface or namespace is gone (the record is removed all the same).
    @discardableResult
    public static func detach(_ dp: ReferenceDataplane, ifname: String, netns: String?, lock: WriterLock) throws -> Bool {
        try dp.verify(holding: lock)
        let key = try key(netns: netns ?? "", ifname: ifname)
        let recorded = try? dp.attachments.lookup(key, as: ctctl_attach_value.self)
        if let netns, !netns.isEmpty, !NetworkNamespace.exists(netns), recorded != nil {
            try dp.attachments.delete(key)
            return false
        }
        let detached: Bool = try NetworkNamespace.run(in: netns) { () throws -> Bool in
            let ifindex: Int32
            do { ifindex = try NetworkNamespace.interfaceIndex(ifname, netns: netns) } catch {
                if recorded != nil { return false }
                throw error
            }
            do throws(Errno) {
                try Errno.bpf { CLibBPF_tc_detach(ifindex) }
                return true
            } catch  where error.code == ENOENT {
                if recorded != nil { return false }
                throw CtctlError.usage(
                    "ctctl is not attached to \(ifname)\(netns.map { " in network namespace '\($0)'" } ?? ""): see `ctctl dataplane status`"
                )
            } catch {
                throw CtctlError.from(error, doing: "detaching from", path: ifname)
            }
        }
        if recorded != nil { try dp.attachments.delete(key) }
        return detached
    }

    /// Every recorded attachment with its state in the kernel now.
    public static func list(_ dp: ReferenceDataplane) throws(CtctlError) -> [Attachment] {
        let reader = BatchReader<ctctl_attach_key, ctctl_attach_value>(capacity: Int(CTCTL_ATTACH_ENTRIES))
        var out: [Attachment] = []
        do {
            try reader.read(dp.attachments) { n in
                for i in 0..<n {
                    let netns = string(reader.keys[i].netns)
                    let ifname = string(reader.keys[i].ifname)
                    let v = reader.values[i]
                    out.append(
                        Attachment(
                            netns: netns, ifname: ifname, ifindex: v.ifindex, progID: v.prog_id,
                            attachedAt: v.attached_at, state: probe(netns: netns, ifname: ifname, progID: v.prog_id)))
                }
                return true
            }
        } catch let e as CtctlError { throw e } catch { throw CtctlError(.software, "\(error)") }
        return out.sorted { ($0.netns, $0.ifname) < ($1.netns, $1.ifname) }
    }

    static func probe(netns: String, ifname: String, progID: UInt32) -> Attachment.State {
        if !netns.isEmpty && !NetworkNamespace.exists(netns) { return .netnsGone }
        let state: Attachment.State? = try? NetworkNamespace.run(in: netns) { () -> Attachment.State in
            let idx = if_nametoindex(ifname)
            if idx == 0 { return .interfaceGone }
            var id: UInt32 = 0
            if CLibBPF_tc_query(Int32(idx), &id) != 0 { return .detached }
            return id == progID ? .attached : .replaced
        }
        return state ?? .netnsGone
    }
}
