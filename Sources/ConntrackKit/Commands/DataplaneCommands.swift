extension Operations {
    /// The pin directory a command that creates or removes a dataplane acts on: refuses one
    /// that holds another layout's maps (its control plane owns them).
    static func ownPinDirectory(_ target: SessionOptions, command: String) throws -> PinDirectory {
        let pins = PinDirectory.resolve(target.pinDir)
        if let other = Layouts.detect(pins), ObjectIdentifier(other) != ObjectIdentifier(ReferenceDataplane.self) {
            throw CtctlError(
                .usage,
                "`ctctl \(command)` works on ctctl's own dataplane only; \(pins.path) holds \(other.layoutName) maps, whose control plane owns them\(other.layoutName == "calico" ? " (felix)" : ""): choose another --pin-dir"
            )
        }
        return pins
    }

    /// `dataplane load`.
    public static func load(_ target: SessionOptions, _ options: LoadOptions, console: Console) throws {
        let pins = try ownPinDirectory(target, command: "dataplane load")
        try Loader.load(pins, options: options)
        console.out.line(
            "loaded the dataplane at \(pins.path) (conntrack \(options.ctSize) entries, epoch re-check \(options.serviceEpoch ? "on" : "off"))"
        )
    }

    /// `dataplane unload`.
    public static func unload(_ target: SessionOptions, console: Console) throws {
        let pins = try ownPinDirectory(target, command: "dataplane unload")
        try Loader.unload(pins)
        console.out.line("unloaded the dataplane at \(pins.path)")
    }

    /// `dataplane attach`.
    public static func attach(_ target: SessionOptions, ifname: String, netns: String?, console: Console) throws {
        let s = try session(target, readOnly: false, console: console)
        let dp = try s.reference(for: "dataplane attach")
        try s.withWriterLock { lock in try Attachments.attach(dp, ifname: ifname, netns: netns, lock: lock) }
        console.out.line("attached to \(ifname)\(netns.map { " in network namespace \($0)" } ?? "") (clsact ingress)")
    }

    /// `dataplane detach`.
    public static func detach(_ target: SessionOptions, ifname: String, netns: String?, console: Console) throws {
        let s = try session(target, readOnly: false, console: console)
        let dp = try s.reference(for: "dataplane detach")
        let detached = try s.withWriterLock { lock in try Attachments.detach(dp, ifname: ifname, netns: netns, lock: lock) }
        console.out.line(detached ? "detached from \(ifname)" : "\(ifname) is gone; forgot its record")
    }

    /// `dataplane status`.
    public static func status(_ target: SessionOptions, json: Bool, console: Console) throws {
        let s = try session(target, readOnly: true, console: console)
        let status = try DataplaneStatus.gather(s.dataplane)
        console.out.write(json ? status.json().render() + "\n" : status.renderText())
    }
}
