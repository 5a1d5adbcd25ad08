/// The work behind each command: one library call each, through a Session. The CLI parses
/// arguments and calls these with a console; tests call them the same way.
public enum Operations {
    /// Opens the session a command needs and tells the operator on stderr what ctctl chose
    /// by itself and what it could not check.
    static func session(_ target: SessionOptions, readOnly: Bool, console: Console?) throws -> Session {
        let s = try Session.open(target, readOnly: readOnly)
        if let notice = s.notice { console?.err.line("ctctl: \(notice)") }
        for caveat in s.dataplane.caveats { console?.err.line("ctctl: note: \(caveat)") }
        return s
    }
}
