import CLibBPF
import ConntrackKit
import Foundation
import NetLab
import Testing

@Suite("bad input: one clear line, a documented exit code, nothing changed")
struct BadInputTests {
    /// A copy of the ctctl binary any user can run, wherever the checkout lives.
    static func publicBinary() throws -> (path: String, cleanup: () -> Void) {
        let dir = "/tmp/ctctl-bin-\(getpid())-\(UInt32.random(in: 0..<UInt32.max))"
        try FileManager.default.createDirectory(
            atPath: dir, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o755])
        let bin = dir + "/ctctl"
        try FileManager.default.copyItem(atPath: ctctlBinary(), toPath: bin)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: bin)
        return (bin, { try? FileManager.default.removeItem(atPath: dir) })
    }

    @Test("not root: reading a dataplane is refused with exit 77")
    func notRoot() throws {
        let (bin, cleanup) = try BadInputTests.publicBinary()
        defer { cleanup() }
        try withDataplane("notroot") { t in
            let asNobody = ["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]
            let r = try runCommand(asNobody + [bin, "dataplane", "status", "--pin-dir", t.pins.path])
            #expect(r.status == 77, "\(r.err)")
            #expect(r.err.contains("permission denied"))
            #expect(r.err.contains("run as root"))
            #expect(r.err.split(separator: "\n").count == 1)
        }
    }

    @Test("no CAP_BPF: load is refused with exit 77 and leaves nothing behind")
    func noCapBPF() throws {
        // root with every capability dropped: file access still works, bpf(BPF_PROG_LOAD) does not
        let drop = ["/usr/bin/setpriv", "--bounding-set=-all", "--inh-caps=-all", "--ambient-caps=-all", "--"]
        let fresh = "/sys/fs/bpf/" + TestDataplane.uniqueName("nocap")
        let load = try runCommand(drop + [ctctlBinary(), "dataplane", "load", "--pin-dir", fresh])
        #expect(load.status == 77, "\(load.err)")
        #expect(load.err.contains("permission denied"))
        #expect(load.err.contains("CAP_BPF"))
        #expect(!FileManager.default.fileExists(atPath: fresh), "a failed load leaves nothing behind")
    }

    @Test("a pin directory that is not on bpffs: exit 69, naming the ip netns exec trap")
    func notBPFFS() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ctctl-not-bpffs-\(getpid())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for args in [["dataplane", "status"], ["dataplane", "unload"], ["dataplane", "attach", "lo"], ["dataplane", "load"]] {
            let r = ctctl(args + ["--pin-dir", dir])
            #expect(r.status == 69, "\(args)")
            #expect(r.err.contains("not on a BPF filesystem"), "\(args)")
        }
        #expect(ctctl(["dataplane", "status", "--pin-dir", dir]).err.contains("ip netns exec"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).isEmpty)
    }

    @Test("no dataplane loaded: exit 69 with how to load one")
    func notLoaded() throws {
        let r = ctctl(["dataplane", "status", "--pin-dir", "/sys/fs/bpf/" + TestDataplane.uniqueName("absent")])
        #expect(r.status == 69)
        #expect(r.err.contains("ctctl dataplane load"))
    }

    @Test(
        "maps of another layout are refused (exit 65) and never written",
        arguments: ["ct-key", "ct-type", "fe-value", "abi", "magic"])
    func wrongLayout(_ kind: String) throws {
        let fake = try FakePins("layout-\(kind)")
        defer { fake.cleanup() }
        for spec in MapSpec.all {
            switch (kind, spec.pin) {
            case ("ct-key", MapSpec.ct.pin): try fake.map(spec, keySize: 16)
            case ("ct-type", MapSpec.ct.pin): try fake.map(spec, type: BPF_MAP_TYPE_HASH)
            case ("fe-value", MapSpec.natFrontend.pin): try fake.map(spec, valueSize: 24)
            default: try fake.map(spec)
            }
        }
        if kind == "abi" { try fake.writeConfig(abi: 99) }
        if kind == "magic" {
            let fd = bpf_obj_get(fake.pins.pin(MapSpec.config.pin))
            var key: UInt32 = 0
            var cfg = ctctl_config()
            #expect(bpf_map_update_elem(fd, &key, &cfg, 0) == 0)
            close(fd)
        }
        for args in [["dataplane", "status"], ["dataplane", "attach", "lo"], ["dataplane", "unload"]] {
            let r = ctctl(args + ["--pin-dir", fake.pins.path])
            #expect(r.status == 65, "\(args): \(r.err)")
            #expect(r.err.split(separator: "\n").count == 1)
        }
        let r = ctctl(["dataplane", "status", "--pin-dir", fake.pins.path])
        switch kind {
        case "ct-key": #expect(r.err.contains("key size 16, expected 40"))
        case "ct-type": #expect(r.err.contains("type hash, expected lru_hash"))
        case "fe-value": #expect(r.err.contains("value size 24, expected 16"))
        case "abi": #expect(r.err.contains("map ABI 99"))
        default: #expect(r.err.contains("not a ctctl dataplane"))
        }
        // nothing written: the attachment map is still empty, every pin still there
        let attach = bpf_obj_get(fake.pins.pin(MapSpec.attach.pin))
        defer { close(attach) }
        var key = ctctl_attach_key()
        var next = ctctl_attach_key()
        #expect(bpf_map_get_next_key(attach, nil, &next) != 0)
        _ = key
        key = next
        #expect(try FileManager.default.contentsOfDirectory(atPath: fake.pins.path).count == MapSpec.all.count)
    }

    @Test("an interface or namespace that does not exist: exit 64, nothing recorded")
    func unknownInterfaceOrNamespace() throws {
        try withDataplane("noif") { t throws in
            let noIf = ctctl(["dataplane", "attach", "ctctl-noif0", "--pin-dir", t.pins.path])
            #expect(noIf.status == 64)
            #expect(noIf.err.contains("no interface 'ctctl-noif0'"))
            let noNS = ctctl(["dataplane", "attach", "lo", "--netns", "ctctl-no-such-ns-\(getpid())", "--pin-dir", t.pins.path])
            #expect(noNS.status == 64)
            #expect(noNS.err.contains("no network namespace"))
            let detach = ctctl(["dataplane", "detach", "ctctl-noif0", "--pin-dir", t.pins.path])
            #expect(detach.status == 64)
            #expect(try Attachments.list(t.dp).isEmpty)
        }
    }

    @Test("load twice: exit 70, the loaded dataplane untouched")
    func loadTwice() throws {
        try withDataplane("twice") { t in
            let epoch = try t.dp.epoch()
            let r = ctctl(["dataplane", "load", "--pin-dir", t.pins.path])
            #expect(r.status == 70)
            #expect(r.err.contains("already loaded"))
            #expect(ctctl(["dataplane", "status", "--pin-dir", t.pins.path]).status == 0)
            #expect(try t.dp.epoch() == epoch)
        }
    }

    @Test(
        "bad load options: exit 64",
        arguments: [["--timeout", "udp=soon"], ["--timeout", "icmp=5s"], ["--ct-size", "10"], ["--ct-size", "-1"]])
    func badLoadOptions(_ opts: [String]) throws {
        let dir = "/sys/fs/bpf/" + TestDataplane.uniqueName("badopts")
        let r = ctctl(["dataplane", "load", "--pin-dir", dir] + opts)
        #expect(r.status == 64, "\(opts): \(r.err)")
        #expect(!FileManager.default.fileExists(atPath: dir))
    }

    @Test("unload while attached: exit 70 naming where; after detach it unloads")
    func unloadWhileAttached() throws {
        let topo = try Topology("unload")
        defer { topo.cleanup() }
        let t = try TestDataplane("unload")
        defer { if t.pins.exists { t.cleanup() } }
        #expect(ctctl(["dataplane", "attach", "nc", "--netns", topo.node, "--pin-dir", t.pins.path]).status == 0)
        // attaching again where the clsact qdisc exists: no libbpf noise on stderr
        let again = try runCommand([ctctlBinary(), "dataplane", "attach", "nc", "--netns", topo.node, "--pin-dir", t.pins.path])
        #expect(again.status == 0)
        #expect(again.err.isEmpty, "\(again.err)")
        let status = ctctl(["dataplane", "status", "-o", "json", "--pin-dir", t.pins.path])
        #expect(status.out.contains("\"state\": \"attached\""))

        let r = ctctl(["dataplane", "unload", "--pin-dir", t.pins.path])
        #expect(r.status == 70)
        #expect(r.err.contains("still attached to nc (netns \(topo.node))"))
        #expect(r.err.contains("ctctl dataplane detach nc --netns \(topo.node)"))
        #expect(t.pins.exists)

        #expect(ctctl(["dataplane", "detach", "nc", "--netns", topo.node, "--pin-dir", t.pins.path]).status == 0)
        #expect(ctctl(["dataplane", "unload", "--pin-dir", t.pins.path]).status == 0)
        #expect(!t.pins.exists)
    }

    @Test("a namespace deleted under an attachment does not block unload")
    func attachmentGone() throws {
        let topo = try Topology("gone")
        try withDataplane("gone") { t throws in
            #expect(ctctl(["dataplane", "attach", "nc", "--netns", topo.node, "--pin-dir", t.pins.path]).status == 0)
            topo.cleanup()
            #expect(try Attachments.list(t.dp).map(\.state) == [.netnsGone])
            #expect(ctctl(["dataplane", "status", "--pin-dir", t.pins.path]).out.contains("netns-gone"))
        }
    }
}

@Suite("loading where bpffs is not mounted")
struct MountTests {
    @Test("load mounts bpffs at /sys/fs/bpf when it is missing (in a private mount namespace)")
    func mountsBPFFS() throws {
        let pin = "/sys/fs/bpf/" + TestDataplane.uniqueName("mount")
        let bin = ctctlBinary()
        // inside: unmount every bpffs at /sys/fs/bpf, leaving sysfs's empty directory
        let script = """
            while umount /sys/fs/bpf 2>/dev/null; do :; done
            if grep -q ' /sys/fs/bpf bpf ' /proc/mounts; then echo 'still mounted'; exit 3; fi
            \(bin) dataplane status --pin-dir \(pin); echo "status-exit=$?"
            \(bin) dataplane load --pin-dir \(pin) || exit 4
            grep -q ' /sys/fs/bpf bpf ' /proc/mounts || { echo 'not mounted by load'; exit 5; }
            \(bin) dataplane load --pin-dir \(pin)-again >/dev/null || exit 6
            \(bin) dataplane unload --pin-dir \(pin)-again >/dev/null || exit 7
            \(bin) dataplane unload --pin-dir \(pin) >/dev/null || exit 8
            """
        let r = try runCommand(["unshare", "--mount", "--propagation", "private", "sh", "-c", script])
        #expect(r.status == 0, "\(r.out)\(r.err)")
        #expect(r.out.contains("status-exit=69"), "before load, a clear 'not on bpffs': \(r.out)")
        #expect(r.err.contains("not on a BPF filesystem"))
        #expect(!FileManager.default.fileExists(atPath: pin), "the namespace's bpffs was its own")
    }
}
