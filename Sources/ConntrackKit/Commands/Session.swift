import Glibc

/// What a command targets: the pin directory and layout the user named, if any.
public struct SessionOptions: Sendable {
    /// `--pin-dir` (nil: $CTCTL_PIN_DIR, else the default of the layout found).
    public var pinDir: String?
    /// `--layout` (nil: $CTCTL_LAYOUT, else auto).
    public var layout: String?
    public var layoutOptions = LayoutOptions()

    public init(pinDir: String? = nil, layout: String? = nil) {
        self.pinDir = pinDir
        self.layout = layout
    }

    /// The dataplane pinned at `pins`, whatever its layout.
    public static func at(_ pins: PinDirectory) -> SessionOptions { SessionOptions(pinDir: pins.path) }

    public static let layoutVariable = "CTCTL_LAYOUT"
}

/// What one command works with: one dataplane, opened from one pin directory in the layout
/// found there (or named), verified, read-only unless the command writes. The only way a
/// command gets a dataplane, the writers' lock, a service view or a remover.
public final class Session {
    public let options: SessionOptions
    public let dataplane: any Dataplane
    public let readOnly: Bool
    /// Said on stderr when ctctl chose the layout or directory itself.
    public let notice: String?

    init(options: SessionOptions, dataplane: any Dataplane, readOnly: Bool, notice: String?) {
        self.options = options
        self.dataplane = dataplane
        self.readOnly = readOnly
        self.notice = notice
    }

    public var pins: PinDirectory { dataplane.pinDir }
    public var layoutName: String { type(of: dataplane).layoutName }

    /// Opens the dataplane `options` names. With no directory named (no --pin-dir, no
    /// $CTCTL_PIN_DIR), `auto` takes ctctl's own default directory if a dataplane is there,
    /// else the first other layout found at its default location (Calico's
    /// /sys/fs/bpf/tc/globals), and says so in `notice`.
    public static func open(_ options: SessionOptions, readOnly: Bool) throws(CtctlError) -> Session {
        let choice = options.layout ?? getenv(SessionOptions.layoutVariable).map { String(cString: $0) } ?? "auto"
        let named: (any Dataplane.Type)?
        if choice.isEmpty || choice == "auto" {
            named = nil
        } else if let type = Layouts.named(choice) {
            named = type
        } else {
            throw CtctlError.usage("unknown layout '\(choice)': write \(Layouts.names.joined(separator: ", "))")
        }
        let explicit =
            options.pinDir.flatMap { $0.isEmpty ? nil : PinDirectory($0) }
            ?? getenv(PinDirectory.environmentVariable).flatMap { $0.pointee == 0 ? nil : PinDirectory(String(cString: $0)) }
        let (pins, type, notice) = choose(explicit: explicit, named: named) { $0.detect($1) }
        let dp = try type.open(pins, readOnly: readOnly, options: options.layoutOptions)
        return Session(options: options, dataplane: dp, readOnly: readOnly, notice: notice)
    }

    /// Which directory and layout: the one named; else, with a directory named, the layout
    /// found there; else the first layout whose default directory holds its maps (ctctl's
    /// own first), said in the notice when it is not ctctl's. `found(layout, dir)`: does `dir`
    /// hold that layout's maps?
    static func choose(
        explicit: PinDirectory?, named: (any Dataplane.Type)?, found: (any Dataplane.Type, PinDirectory) -> Bool
    ) -> (PinDirectory, any Dataplane.Type, String?) {
        if let explicit {
            return (explicit, named ?? Layouts.all.first { found($0, explicit) } ?? ReferenceDataplane.self, nil)
        }
        if let named { return (named.defaultPinDir, named, nil) }
        if let first = Layouts.all.first(where: { found($0, $0.defaultPinDir) }) {
            let notice =
                ObjectIdentifier(first) == ObjectIdentifier(ReferenceDataplane.self)
                ? nil
                : "no ctctl dataplane at \(PinDirectory.defaultPath): using the \(first.layoutName) maps at \(first.defaultPinDir.path)"
            return (first.defaultPinDir, first, notice)
        }
        // nothing anywhere: the reference layout's own errors say how to load one
        return (ReferenceDataplane.defaultPinDir, ReferenceDataplane.self, nil)
    }

    /// The same target, opened again (after the dataplane was unloaded and loaded again).
    public func reopen() throws(CtctlError) -> Session { try Session.open(options, readOnly: readOnly) }

    /// Runs `op` on the dataplane, specialized for its layout.
    public func run<Op: DataplaneOperation>(_ op: Op) throws -> Op.Result { try Layouts.run(op, on: dataplane) }

    /// Runs `body` holding the writers' lock (taken, and checked to lock what this session
    /// opened); the lock is released when `body` returns or throws.
    public func withWriterLock<R>(timeoutMs: Int = 30_000, _ body: (WriterLock) throws -> R) throws -> R {
        let lock = try dataplane.writerLock(timeoutMs: timeoutMs)
        return try withExtendedLifetime(lock) { try body(lock) }
    }

    /// The reference dataplane, for the commands only it has (load, attach, services):
    /// other layouts' control planes own those.
    public func reference(for command: String) throws(CtctlError) -> ReferenceDataplane {
        if let dp = dataplane as? ReferenceDataplane { return dp }
        throw CtctlError(
            .usage,
            "`ctctl \(command)` works on ctctl's own dataplane only; \(pins.path) holds \(layoutName) maps, whose control plane owns them\(layoutName == "calico" ? " (felix)" : "")"
        )
    }
}
