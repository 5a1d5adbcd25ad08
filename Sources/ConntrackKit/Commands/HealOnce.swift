import CLibBPF
import Glibc
import Logging

extension Operations {
    /// `heal --once`: one pass; exit 0 if something was (or would be) deleted, 1 if nothing was stale.
    public static func healOnce(_ target: SessionOptions, _ o: HealOptions, mode: EntryPrinter.Mode, console: Console) throws
        -> ExitStatus
    {
        let healer = try Healer(target, options: o, auditCommand: "heal --once")
        if let notice = healer.session.notice { console.err.line("ctctl: \(notice)") }
        for caveat in healer.dataplane.caveats { console.err.line("ctctl: note: \(caveat)") }
        let printer = EntryPrinter(mode, to: console.out, now: Timestamp.monotonicNow(), showReason: true, resultColumn: true)
        printer.begin()
        let r = try healer.pass(printer: printer)
        printer.end()
        console.err.line(Healer.summary(r, dryRun: o.dryRun))
        return (o.dryRun ? r.wouldDelete : r.deleted) > 0 ? .success : .nothingMatched
    }
}
