import Glibc

/// Every layout ctctl reads, in the order `--layout auto` tries them. A new layout is one
/// line here (and its folder beside Reference/).
public enum Layouts {
    public static var all: [any Dataplane.Type] { [ReferenceDataplane.self, CalicoDataplane.self] }

    /// The names `--layout` takes: auto, then each layout's.
    public static var names: [String] { ["auto"] + all.map { $0.layoutName } }

    public static func named(_ name: String) -> (any Dataplane.Type)? { all.first { $0.layoutName == name } }

    /// The layout whose maps `dir` holds, if any.
    public static func detect(_ dir: PinDirectory) -> (any Dataplane.Type)? { all.first { $0.detect(dir) } }

    /// Runs `op` on `dp` as its concrete layout, so the compiler specializes the scan, the
    /// judge and the output for each layout (through the existential, every entry would
    /// cost witness-table calls: measured 1.4x slower listings).
    static func run<Op: DataplaneOperation>(_ op: Op, on dp: any Dataplane) throws -> Op.Result {
        if let d = dp as? ReferenceDataplane { return try op.run(d) }
        if let d = dp as? CalicoDataplane { return try op.run(d) }
        return try op.run(dp)
    }
}

/// A piece of work on a dataplane of any layout (Session.run).
public protocol DataplaneOperation {
    associatedtype Result
    func run<D: Dataplane>(_ dp: D) throws -> Result
}
