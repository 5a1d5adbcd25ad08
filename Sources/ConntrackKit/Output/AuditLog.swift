import CLibBPF
import Glibc

/// `--audit-log FILE`: one JSON line per deleted entry (partners included): what, why,
/// which command, when. Opened (append, create) before any work, so a bad path fails
/// first and nothing is deleted unrecorded.
public final class AuditLog {
    let fd: Int32
    let command: String
    let path: String

    public init(path: String, command: String) throws(CtctlError) {
        let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o640)
        if fd < 0 {
            let e = errno
            if e == ENOENT {
                throw .usage("cannot open audit log \(path): its directory does not exist")
            }
            throw CtctlError(e == EACCES || e == EPERM ? .noPermission : .usage, "cannot open audit log \(path): \(Errno(e))")
        }
        self.fd = fd
        self.command = command
        self.path = path
    }

    deinit { close(fd) }

    /// Records an entry that was deleted, and its partner if it went with it.
    public func deleted(_ e: EntryView, why: String, withPartner: Bool, now: UInt64) throws(CtctlError) {
        let time = Timestamp.rfc3339Millis(Timestamp.realtimeNow())
        var w = ByteWriter(stream: nil, chunk: 1024)
        func header(_ deletedAs: StaticString) {
            w.ascii("{\"time\":\"")
            w.text(time)
            w.ascii("\",\"command\":")
            w.jsonString(command)
            w.ascii(",\"reason\":")
            w.jsonString(why)
            w.ascii(",\"deleted_as\":\"")
            w.ascii(deletedAs)
            w.ascii("\",\"entry\":")
        }
        header("entry")
        EntryJSON.write(e, now: now, reason: StaleReason(rawValue: why), into: &w)
        w.ascii("}\n")
        if withPartner {
            header("partner")
            w.ascii("{\"type\":\"")
            w.text(e.typeRaw == 1 ? "nat-rev" : "nat-fwd")
            w.ascii("\",\"key\":")
            EntryJSON.tuple(&w, e.partnerKey)
            w.ascii("},\"partner_of\":")
            EntryJSON.tuple(&w, e.key)
            w.ascii("}\n")
        }
        let ok = w.bytes.withUnsafeBytes { raw -> Bool in
            var off = 0
            while off < raw.count {
                let n = write(fd, raw.baseAddress! + off, raw.count - off)
                if n < 0 {
                    if errno == EINTR { continue }
                    return false
                }
                off += n
            }
            return true
        }
        if !ok { throw CtctlError(.software, "writing the audit log \(path) failed: \(Errno(errno))") }
    }
}
