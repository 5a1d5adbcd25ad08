import ArgumentParser
import ConntrackKit

/// Flags every command takes.
struct GlobalOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("Pin directory of the dataplane's maps (default: $CTCTL_PIN_DIR, else /sys/fs/bpf/ctctl).", valueName: "dir"))
    var pinDir: String?

    var pins: PinDirectory { PinDirectory.resolve(pinDir) }
}

extension OutputFormat: ExpressibleByArgument {}

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
            throw ValidationError("bad service '\(text)': write VIP:PORT/PROTO, e.g. 198.19.0.10:161/udp or [2001:db8::10]:53/udp")
        }
        return s
    }
}
