import CLibBPF
import Glibc

/// libbpf prints its warnings to stderr unless told otherwise (for example "Exclusivity
/// flag on" when a clsact qdisc already exists, which ctctl handles). Keep them in memory
/// for error details instead, for every command.
enum LibBPFLog {
    static let installed: Void = CLibBPF_set_log_level(0)
    static func quiet() { _ = installed }
}
