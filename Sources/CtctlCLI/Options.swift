import ArgumentParser
import ConntrackKit

/// Flags every command takes, before or after the subcommand (`ctctl --pin-dir DIR
/// conntrack list` and `ctctl conntrack list --pin-dir DIR` are the same): the root and
/// every leaf declare this group, and the parser fills the leaf's from either place.
struct GlobalOptions: ParsableArguments {
    @Option(
        name: .long,
        help: ArgumentHelp(
            "Pin directory of the dataplane's maps (default: $CTCTL_PIN_DIR, else /sys/fs/bpf/ctctl, else Calico's /sys/fs/bpf/tc/globals).",
            valueName: "dir"))
    var pinDir: String?

    @Option(
        name: .long,
        help: ArgumentHelp(
            "Map layout: \(Layouts.names.joined(separator: ", ")) (default: $CTCTL_LAYOUT, else auto: what the pin directory holds).",
            valueName: "layout"))
    var layout: String?

    @Option(
        name: .long,
        help: ArgumentHelp(
            "Calico's version, where its maps cannot tell it (a ct3 map is v3.29 or v3.30), e.g. v3.29.", valueName: "version"))
    var calicoVersion: String?

    func validate() throws {
        if let calicoVersion, CalicoVersion(calicoVersion) == nil {
            throw ValidationError("bad --calico-version '\(calicoVersion)': write a version such as v3.29, v3.30.2 or v3.31")
        }
        if let pinDir, pinDir.isEmpty {
            throw ValidationError("--pin-dir is empty: name a directory on bpffs, e.g. --pin-dir /sys/fs/bpf/ctctl")
        }
        if let layout, !Layouts.names.contains(layout) {
            throw ValidationError("bad --layout '\(layout)': write \(Layouts.names.joined(separator: ", "))")
        }
    }

    var target: SessionOptions {
        var t = SessionOptions(pinDir: pinDir, layout: layout)
        t.layoutOptions.calicoVersion = calicoVersion
        return t
    }
}

extension OutputFormat: ExpressibleByArgument {}

/// -o, one type for every command; each command names the formats it has and refuses the
/// others in validate() (exit 64), never silently ignoring one.
struct OutputOptions: ParsableArguments {
    @Option(name: .shortAndLong, help: "Output format: table, wide (every field) or json; not every command has wide.")
    var output: OutputFormat = .table

    func require(_ supported: [OutputFormat], by command: String) throws {
        guard supported.contains(output) else {
            throw ValidationError(
                "`\(command)` has no -o \(output.rawValue): write \(supported.map(\.rawValue).joined(separator: " or "))")
        }
    }

    var json: Bool { output == .json }

    var mode: EntryPrinter.Mode {
        switch output {
        case .table: return .table(wide: false)
        case .wide: return .table(wide: true)
        case .json: return .json
        }
    }
}

/// Parsers that turn bad input into ValidationError (exit 64) with the fix in the message.
enum Parse {
    static func endpoint(_ text: String, what: String) throws -> Endpoint {
        guard let e = Endpoint(text) else {
            throw ValidationError("bad \(what) '\(text)': write ADDRESS:PORT, e.g. 198.18.0.2:40000 or [2001:db8::2]:40000")
        }
        return e
    }

    static func address(_ text: String, what: String) throws -> IPAddress {
        guard let a = IPAddress(text) else {
            throw ValidationError("bad \(what) '\(text)': not an IPv4 or IPv6 address")
        }
        return a
    }

    static func proto(_ text: String) throws -> IPProto {
        guard let p = IPProto(text) else {
            throw ValidationError("bad protocol '\(text)': write udp, tcp, or a number 0-255")
        }
        return p
    }

    static func service(_ text: String) throws -> ServiceRef {
        guard let s = ServiceRef(text) else {
            throw ValidationError(
                "bad service '\(text)': write VIP:PORT/PROTO, e.g. 198.19.0.10:161/udp or [2001:db8::10]:53/udp")
        }
        return s
    }

    static func network(_ text: String, what: String) throws -> IPNetwork {
        guard let n = IPNetwork(text) else {
            throw ValidationError("bad \(what) '\(text)': write an address or a CIDR, e.g. 198.18.0.0/15 or 2001:db8::/32")
        }
        return n
    }

    static func port(_ text: String, what: String) throws -> UInt16 {
        guard let p = Port.parse(text) else { throw ValidationError("bad \(what) '\(text)': a port is a number 0-65535") }
        return p
    }

    static func duration(_ text: String, what: String, example: String = "10s") throws -> UInt64 {
        guard let ns = DurationText.parseNanoseconds(text) else {
            throw ValidationError("bad \(what) '\(text)': a duration, e.g. \(example)")
        }
        return ns
    }
}

/// The filters of `conntrack list` (and `heal`). They combine; source and destination
/// always mean the original direction of the flow (client -> service).
struct FilterOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Protocol: udp, tcp, or a number.", valueName: "proto")) var proto: String?
    @Option(help: ArgumentHelp("Original source address or CIDR.", valueName: "cidr")) var src: String?
    @Option(help: ArgumentHelp("Original destination address or CIDR (for NAT flows: the VIP).", valueName: "cidr")) var dst:
        String?
    @Option(help: ArgumentHelp("Original source port.", valueName: "port")) var sport: String?
    @Option(help: ArgumentHelp("Original destination port (for NAT flows: the service port).", valueName: "port")) var dport:
        String?
    @Option(help: ArgumentHelp("Entry type: normal, nat-fwd or nat-rev.", valueName: "type")) var type: String?
    @Option(help: ArgumentHelp("Entries of a service, and normal entries addressed to it: VIP:PORT/PROTO.", valueName: "service"))
    var service: String?
    @Option(help: ArgumentHelp("Address family: 4 or 6.", valueName: "4|6")) var family: String?

    func filter() throws -> ConntrackFilter {
        var f = ConntrackFilter()
        if let proto { f.proto = try Parse.proto(proto) }
        if let src { f.source = try Parse.network(src, what: "--src") }
        if let dst { f.destination = try Parse.network(dst, what: "--dst") }
        if let sport { f.sourcePort = try Parse.port(sport, what: "--sport") }
        if let dport { f.destinationPort = try Parse.port(dport, what: "--dport") }
        if let type {
            guard let t = EntryType(name: type) else {
                throw ValidationError("bad --type '\(type)': write normal, nat-fwd or nat-rev")
            }
            f.type = t
        }
        if let service { f.service = try Parse.service(service) }
        if let family {
            switch family {
            case "4": f.family = .v4
            case "6": f.family = .v6
            default: throw ValidationError("bad --family '\(family)': write 4 or 6")
            }
        }
        if let fam = f.family, let n = f.source ?? f.destination, n.address.family != fam {
            throw ValidationError("--family \(fam.rawValue) contradicts the address \(n.address)")
        }
        if let s = f.source, let d = f.destination, s.address.family != d.address.family {
            throw ValidationError("--src \(s) and --dst \(d) are of different address families")
        }
        return f
    }
}

/// What the stale rules take beyond the layout's own: where a layout's maps do not hold its
/// timeouts (Calico's), --timeout turns expiry on.
struct JudgeOptions: ParsableArguments {
    @Option(
        name: .customLong("timeout"),
        help: ArgumentHelp(
            "Calico: judge idle entries as expired by these timeouts, e.g. udp=60s,tcp=1h,tcp-closing=30s,other=10m (felix's own are not in its maps).",
            valueName: "name=duration,..."))
    var timeout: String?

    func apply(to target: SessionOptions) throws -> SessionOptions {
        var t = target
        if let timeout { t.layoutOptions.timeouts = try Timeouts(parsing: timeout) }
        return t
    }
}

/// --threads: how many threads read the map at once (disjoint bucket ranges).
struct ThreadOptions: ParsableArguments {
    @Option(
        help: ArgumentHelp(
            "Threads reading the map at once (default: $\(CPUs.environmentVariable), else the CPUs this process may use, at most \(CPUs.cap); the watching heal: 1).",
            valueName: "n"))
    var threads: Int?

    func validate() throws {
        if let threads, !(1...64).contains(threads) { throw ValidationError("bad --threads \(threads): write 1 to 64") }
    }
}
