import CLibBPF
import Glibc

/// What a pinned map must look like: checked at open, before anything is read or written.
public struct MapSpec: Sendable {
    public let pin: String
    public let type: bpf_map_type
    public let keySize: Int
    public let valueSize: Int

    public static let ct = MapSpec(
        pin: CTCTL_PIN_CT, type: BPF_MAP_TYPE_LRU_HASH,
        keySize: MemoryLayout<ctctl_ct_key>.size, valueSize: MemoryLayout<ctctl_ct_value>.size)
    public static let natFrontend = MapSpec(
        pin: CTCTL_PIN_NAT_FE, type: BPF_MAP_TYPE_HASH,
        keySize: MemoryLayout<ctctl_fe_key>.size, valueSize: MemoryLayout<ctctl_fe_value>.size)
    public static let natBackend = MapSpec(
        pin: CTCTL_PIN_NAT_BE, type: BPF_MAP_TYPE_HASH,
        keySize: MemoryLayout<ctctl_be_key>.size, valueSize: MemoryLayout<ctctl_be_value>.size)
    public static let counters = MapSpec(
        pin: CTCTL_PIN_COUNTERS, type: BPF_MAP_TYPE_PERCPU_ARRAY,
        keySize: 4, valueSize: MemoryLayout<ctctl_counters>.size)
    public static let attach = MapSpec(
        pin: CTCTL_PIN_ATTACH, type: BPF_MAP_TYPE_HASH,
        keySize: MemoryLayout<ctctl_attach_key>.size, valueSize: MemoryLayout<ctctl_attach_value>.size)
    public static let stage = MapSpec(
        pin: CTCTL_PIN_STAGE, type: BPF_MAP_TYPE_ARRAY,
        keySize: 4, valueSize: MemoryLayout<ctctl_stage_slot>.size)
    public static let config = MapSpec(
        pin: CTCTL_PIN_CONFIG, type: BPF_MAP_TYPE_ARRAY,
        keySize: 4, valueSize: MemoryLayout<ctctl_config>.size)
    public static let state = MapSpec(
        pin: CTCTL_PIN_STATE, type: BPF_MAP_TYPE_ARRAY,
        keySize: 4, valueSize: MemoryLayout<ctctl_state>.size)

    public static let all: [MapSpec] = [.ct, .natFrontend, .natBackend, .counters, .attach, .stage, .config, .state]
}
