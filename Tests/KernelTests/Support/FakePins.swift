import CLibBPF
import ConntrackKit
import Foundation
import Testing

/// A pin directory holding maps made by hand with any layout, to check that ctctl
/// refuses what it did not make. Removed afterwards.
final class FakePins {
    let pins: PinDirectory

    init(_ tag: String) throws {
        pins = PinDirectory("/sys/fs/bpf/" + TestDataplane.uniqueName(tag))
        // On a fresh machine nothing has mounted bpffs yet (no dataplane was loaded).
        try pins.ensureBPFFS()
        try FileManager.default.createDirectory(atPath: pins.path, withIntermediateDirectories: false)
    }

    /// Creates and pins a map; `keySize`/`valueSize` default to the spec's.
    func map(_ spec: MapSpec, type: bpf_map_type? = nil, keySize: Int? = nil, valueSize: Int? = nil, maxEntries: UInt32 = 16)
        throws
    {
        let fd = bpf_map_create(
            type ?? spec.type, spec.pin, UInt32(keySize ?? spec.keySize), UInt32(valueSize ?? spec.valueSize), maxEntries, nil)
        #expect(fd >= 0, "bpf_map_create \(spec.pin): \(fd)")
        defer { close(fd) }
        #expect(bpf_obj_pin(fd, pins.pin(spec.pin)) == 0)
        if spec.pin == MapSpec.config.pin && (valueSize ?? spec.valueSize) == MemoryLayout<ctctl_config>.size {
            try writeConfig(abi: CTCTL_ABI_VERSION)
        }
    }

    func writeConfig(abi: UInt32) throws {
        let fd = bpf_obj_get(pins.pin(MapSpec.config.pin))
        defer { close(fd) }
        var key: UInt32 = 0
        var cfg = ctctl_config()
        cfg.magic = CTCTL_MAGIC
        cfg.abi_version = abi
        #expect(bpf_map_update_elem(fd, &key, &cfg, 0) == 0)
    }

    /// Every map of a dataplane with the right layout.
    func allMaps() throws {
        for spec in MapSpec.all { try map(spec) }
    }

    func cleanup() {
        try? FileManager.default.removeItem(atPath: pins.path)
    }

    deinit { cleanup() }
}
