import CLibBPF
import Glibc

/// `--audit-log FILE`: one JSON line per deleted entry (partners included): what, why,
/// which command, when. Opened (append, create) before any work, so a bad path fails
/// first and nothing is deleted unrecorded.
public final class AuditLog {
    let file: FileDescriptor
    let command: String
    let path: String

    public init(path: String, command: String) throws(CtctlError) {
        do { file = try FileDescriptor.open(path, O_WRONLY | O_APPEND | O_CREAT, mode: 0o640) } catch {
            if error.code == ENOENT {
                throw .usage("cannot open audit log \(path): its directory does not exist")
            }
            throw CtctlError(
                error.isPermission ? .noPermission : .usage, "cannot open audit log \(path): \(error)", errno: error.code)
        }
        self.command = command
        self.path = path
    }

    /// Records an entry that was deleted, and its partner if it went with it.
    public func deleted<E: EntryFacts>(_ e: E, why: String, withPartner: Bool, now: UInt64) throws(CtctlError) {
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
        if withPartner, let partner = e.storedPartner {
            header("partner")
            w.ascii("{\"type\":\"")
            w.text(e.type == .natForward ? EntryType.natReverse.name : EntryType.natForward.name)
            w.ascii("\",\"key\":")
            EntryJSON.tuple(&w, partner)
            w.ascii("},\"partner_of\":")
            EntryJSON.tuple(&w, e.storedKey)
            w.ascii("}\n")
        }
        do throws(Errno) { try file.writeAll(w.bytes) } catch {
            throw CtctlError.from(error, doing: "writing the audit log", path: path)
        }
    }
}
