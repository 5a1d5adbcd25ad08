import Glibc

/// Output formats shared by the listing commands.
public enum OutputFormat: String, Sendable, CaseIterable {
    case table
    case wide
    case json
}
