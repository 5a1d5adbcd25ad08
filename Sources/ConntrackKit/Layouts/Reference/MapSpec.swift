import CLibBPF
import Glibc

/// Every map of the reference dataplane: its pin, its name in the BPF object, and what it
/// must look like (checked at open, before anything is read or written). The one table:
/// the loader pins by it, unload removes by it, and every open checks by it.
public struct MapSpec: Sendable {
    public let pin: String
    /// The map's name in ctctl.bpf.o (the globals are the object's .rodata and .data).
    public let objectName: String
    public let type: bpf_map_type
    public let keySize: Int
    public let valueSize: Int

    init(_ pin: String, object: String? = nil, _ type: bpf_map_type, key: Int, value: Int) {
        self.pin = pin
        objectName = object ?? pin
        self.type = type
        keySize = key
        valueSize = value
    }

    public static let ct = MapSpec(
        CTCTL_PIN_CT, BPF_MAP_TYPE_LRU_HASH, key: MemoryLayout<ctctl_ct_key>.size, value: MemoryLayout<ctctl_ct_value>.size)
    public static let natFrontend = MapSpec(
        CTCTL_PIN_NAT_FE, BPF_MAP_TYPE_HASH, key: MemoryLayout<ctctl_fe_key>.size, value: MemoryLayout<ctctl_fe_value>.size)
    public static let natBackend = MapSpec(
        CTCTL_PIN_NAT_BE, BPF_MAP_TYPE_HASH, key: MemoryLayout<ctctl_be_key>.size, value: MemoryLayout<ctctl_be_value>.size)
    public static let counters = MapSpec(
        CTCTL_PIN_COUNTERS, BPF_MAP_TYPE_PERCPU_ARRAY, key: 4, value: MemoryLayout<ctctl_counters>.size)
    public static let attach = MapSpec(
        CTCTL_PIN_ATTACH, BPF_MAP_TYPE_HASH, key: MemoryLayout<ctctl_attach_key>.size,
        value: MemoryLayout<ctctl_attach_value>.size)
    public static let stage = MapSpec(
        CTCTL_PIN_STAGE, BPF_MAP_TYPE_ARRAY, key: 4, value: MemoryLayout<ctctl_stage_slot>.size)
    public static let config = MapSpec(
        CTCTL_PIN_CONFIG, object: ".rodata", BPF_MAP_TYPE_ARRAY, key: 4, value: MemoryLayout<ctctl_config>.size)
    public static let state = MapSpec(
        CTCTL_PIN_STATE, object: ".data", BPF_MAP_TYPE_ARRAY, key: 4, value: MemoryLayout<ctctl_state>.size)

    public static let all: [MapSpec] = [.ct, .natFrontend, .natBackend, .counters, .attach, .stage, .config, .state]

    /// Opens this map in `pinDir` and refuses it if it is not of this ABI (exit 65).
    public func open(in pinDir: PinDirectory, readOnly: Bool) throws(CtctlError) -> BPFMap {
        let map = try BPFMap.open(
            pinDir.pin(pin), readOnly: readOnly,
            missing: "no map at \(pinDir.pin(pin)): is the dataplane loaded? (`ctctl dataplane load`)")
        try map.expect(
            type: type, keySize: keySize, valueSize: valueSize,
            whose: "made by this ctctl (map ABI \(CTCTL_ABI_VERSION))")
        return map
    }
}

/// Every program of the reference dataplane: its pin and its name in the object.
public struct ProgramSpec: Sendable {
    public let pin: String
    public let objectName: String

    public static let tc = ProgramSpec(pin: CTCTL_PIN_PROG_TC, objectName: "ctctl_tc")
    public static let stage = ProgramSpec(pin: CTCTL_PIN_PROG_STAGE, objectName: "ctctl_stage")
    public static let all: [ProgramSpec] = [.tc, .stage]
}
