import CLibBPF

/// Which Calico conntrack map generation, and what its value's first word means.
/// (../shared/calico/README.md "Maps", "Conntrack value", "BTF"; docs/calico.md.)
public enum CalicoGeneration: String, Sendable {
    /// `cali_vX_ct3`, Calico v3.29 and older: hash, no BTF, `created` at offset 0, 16-bit
    /// flags, legs that count nothing.
    case ct3v329 = "v3.29"
    /// `cali_vX_ct3`, Calico v3.30: as above but `rst_seen` at offset 0 and 32-bit flags.
    case ct3v330 = "v3.30"
    /// `cali_vX_ct3` whose version the map cannot tell (no BTF, no workload bit seen, no
    /// --calico-version): offset 0 and the upper flag bytes are not shown.
    case ct3Unknown = "v3.29 or v3.30"
    /// `cali_vX_ct4`, Calico v3.31 and later: LRU hash with BTF, `rst_seen` at offset 0,
    /// 32-bit flags, legs that count packets and bytes.
    case ct4 = "v3.31+"

    var mapVersion: String { self == .ct4 ? "ct4" : "ct3" }
    /// Offset 0 is the creation time.
    var hasCreated: Bool { self == .ct3v329 }
    /// Flags bytes 18 and 19 are flags (not padding).
    var wideFlags: Bool { self == .ct3v330 || self == .ct4 }
    /// The legs count packets and bytes.
    var countsTraffic: Bool { self == .ct4 }
    /// Calico's own scanner leaves TCP NAT entries alone (current Calico).
    var skipsTCPNAT: Bool { self == .ct4 }
}

/// Byte offsets of Calico's conntrack key and value, NAT and route maps, for one address
/// family: the constants of bpf/include/ctctl_calico.h, the header ctctl's compare-and-delete
/// program for Calico's maps uses too. With BTF, checked against the map's own types at open.
struct CalicoFormat: Sendable {
    let v6: Bool

    @inline(__always) func pick(_ v4: Int32, _ v6value: Int32) -> Int { Int(v6 ? v6value : v4) }

    var addrSize: Int { v6 ? 16 : 4 }
    var keySize: Int { pick(CALICO_V4_CT_KEY_SIZE, CALICO_V6_CT_KEY_SIZE) }
    var valueSize: Int { pick(CALICO_V4_CT_VALUE_SIZE, CALICO_V6_CT_VALUE_SIZE) }

    // calico_ct_key
    static let proto = Int(CALICO_CT_KEY_PROTO)
    static let addrA = Int(CALICO_CT_KEY_ADDR_A)
    var addrB: Int { pick(CALICO_V4_CT_KEY_ADDR_B, CALICO_V6_CT_KEY_ADDR_B) }
    var portA: Int { pick(CALICO_V4_CT_KEY_PORT_A, CALICO_V6_CT_KEY_PORT_A) }
    var portB: Int { pick(CALICO_V4_CT_KEY_PORT_B, CALICO_V6_CT_KEY_PORT_B) }

    // calico_ct_value
    static let word0 = Int(CALICO_CT_WORD0)  // created (v3.29) or rst_seen
    static let lastSeen = Int(CALICO_CT_LAST_SEEN)
    static let type = Int(CALICO_CT_TYPE)
    static let flags = Int(CALICO_CT_FLAGS)
    static let flags3 = Int(CALICO_CT_FLAGS3)
    static let flags4 = Int(CALICO_CT_FLAGS4)
    static let flags2 = Int(CALICO_CT_FLAGS2)
    static let legAB = Int(CALICO_CT_LEG_AB)
    static let legBA = Int(CALICO_CT_LEG_BA)
    static let tunIP = Int(CALICO_CT_TUN_IP)
    var origIP: Int { pick(CALICO_V4_CT_ORIG_IP, CALICO_V6_CT_ORIG_IP) }
    var origPort: Int { pick(CALICO_V4_CT_ORIG_PORT, CALICO_V6_CT_ORIG_PORT) }
    var origSport: Int { pick(CALICO_V4_CT_ORIG_SPORT, CALICO_V6_CT_ORIG_SPORT) }
    var origSIP: Int { pick(CALICO_V4_CT_ORIG_SIP, CALICO_V6_CT_ORIG_SIP) }
    var origEnd: Int { pick(CALICO_V4_CT_ORIG_END, CALICO_V6_CT_ORIG_END) }
    static let natRevKey = Int(CALICO_CT_NAT_REV_KEY)
    var natSport: Int { pick(CALICO_V4_CT_NAT_SPORT, CALICO_V6_CT_NAT_SPORT) }

    // calico_ct_leg
    static let legBytes = Int(CALICO_LEG_BYTES)
    static let legPackets = Int(CALICO_LEG_PACKETS)
    static let legSeqno = Int(CALICO_LEG_SEQNO)
    static let legBits = Int(CALICO_LEG_BITS)
    static let legIfindex = Int(CALICO_LEG_IFINDEX)

    // calico_nat_key (the frontend LPM key), calico_nat_value, calico_nat_secondary_key,
    // calico_nat_dest, cali_rt_key, cali_rt
    var feKeySize: Int { pick(CALICO_V4_FE_KEY_SIZE, CALICO_V6_FE_KEY_SIZE) }
    static let feValueSize = Int(CALICO_FE_VALUE_SIZE)
    var fePort: Int { pick(CALICO_V4_FE_PORT, CALICO_V6_FE_PORT) }
    var feProto: Int { pick(CALICO_V4_FE_PROTO, CALICO_V6_FE_PROTO) }
    var feSrc: Int { pick(CALICO_V4_FE_SADDR, CALICO_V6_FE_SADDR) }
    /// The prefix length of a frontend without a source range: VIP, port, protocol.
    var fePrefixNoSource: Int { pick(CALICO_V4_FE_PREFIX_NO_SOURCE, CALICO_V6_FE_PREFIX_NO_SOURCE) }
    /// Prefix length the datapath looks frontends up with (VIP, port, protocol, source).
    var fePrefixFull: Int { pick(CALICO_V4_FE_PREFIX_FULL, CALICO_V6_FE_PREFIX_FULL) }
    static let beKeySize = Int(CALICO_BE_KEY_SIZE)
    var beValueSize: Int { pick(CALICO_V4_BE_VALUE_SIZE, CALICO_V6_BE_VALUE_SIZE) }
    var bePort: Int { pick(CALICO_V4_BE_PORT, CALICO_V6_BE_PORT) }
    var rtKeySize: Int { pick(CALICO_V4_RT_KEY_SIZE, CALICO_V6_RT_KEY_SIZE) }
    var rtValueSize: Int { pick(CALICO_V4_RT_VALUE_SIZE, CALICO_V6_RT_VALUE_SIZE) }

    /// What the map's BTF must say, where it has BTF (v3.31+).
    var ctKeyBTF: BTFExpectation {
        BTFExpectation(
            structName: "calico_ct_key", size: keySize,
            members: [
                ("protocol", 0, 4), ("addr_a", CalicoFormat.addrA, addrSize), ("addr_b", addrB, addrSize),
                ("port_a", portA, 2), ("port_b", portB, 2),
            ])
    }

    var ctValueBTF: BTFExpectation {
        BTFExpectation(
            structName: "calico_ct_value", size: valueSize,
            members: [
                ("rst_seen", CalicoFormat.word0, 8), ("last_seen", CalicoFormat.lastSeen, 8), ("type", CalicoFormat.type, 1),
                ("flags", CalicoFormat.flags, 1), ("flags3", CalicoFormat.flags3, 1), ("flags4", CalicoFormat.flags4, 1),
                ("flags2", CalicoFormat.flags2, 1), ("a_to_b", CalicoFormat.legAB, 24), ("b_to_a", CalicoFormat.legBA, 24),
                ("tun_ip", CalicoFormat.tunIP, addrSize), ("orig_ip", origIP, addrSize), ("orig_port", origPort, 2),
                ("orig_sport", origSport, 2), ("orig_sip", origSIP, addrSize), ("nat_rev_key", CalicoFormat.natRevKey, keySize),
                ("nat_sport", natSport, 2),
            ])
    }

    static let legBTF = BTFExpectation(
        structName: "calico_ct_leg", size: Int(CALICO_LEG_SIZE),
        members: [("bytes", 0, 8), ("packets", 8, 4), ("seqno", 12, 4), ("ifindex", 20, 4)])

    var feKeyBTF: BTFExpectation {
        BTFExpectation(
            structName: "calico_nat_key", size: feKeySize,
            members: [
                ("prefixlen", 0, 4), ("addr", 4, addrSize), ("port", fePort, 2), ("protocol", feProto, 1),
                ("saddr", feSrc, addrSize),
            ])
    }

    static let feValueBTF = BTFExpectation(
        structName: "calico_nat_value", size: 20,
        members: [("id", 0, 4), ("count", 4, 4), ("local", 8, 4), ("affinity_timeo", 12, 4), ("flags", 16, 4)])

    static let beKeyBTF = BTFExpectation(
        structName: "calico_nat_secondary_key", size: 8, members: [("id", 0, 4), ("ordinal", 4, 4)])

    var beValueBTF: BTFExpectation {
        BTFExpectation(structName: "calico_nat_dest", size: beValueSize, members: [("addr", 0, addrSize), ("port", bePort, 2)])
    }

    var rtKeyBTF: BTFExpectation {
        BTFExpectation(structName: "cali_rt_key", size: rtKeySize, members: [("prefixlen", 0, 4), ("addr", 4, addrSize)])
    }

    var rtValueBTF: BTFExpectation {
        BTFExpectation(structName: "cali_rt", size: rtValueSize, members: [("flags", 0, 4)])
    }
}

/// Calico's constants ctctl relies on (conntrack_types.h, nat_types.h, routes.h).
enum Calico {
    static let typeNormal = UInt8(CALICO_CT_NORMAL)
    static let typeNATForward = UInt8(CALICO_CT_NAT_FWD)
    static let typeNATReverse = UInt8(CALICO_CT_NAT_REV)

    static let flagBA: UInt32 = 0x100
    static let flagNames: [(UInt32, String)] = [
        (0x1, "nat-out"), (0x2, "dsr-fwd"), (0x4, "np-fwd"), (0x8, "skip-fib"), (0x40, "ext-local"),
        (0x80, "via-nat-if"), (0x100, "ba"), (0x200, "host-psnat"), (0x400, "svc-self"), (0x800, "np-loop"),
        (0x1000, "np-remote"), (0x2000, "np-no-dsr"), (0x4000, "skip-redir-peer"), (0x8000, "set-dscp"),
        (0x10000, "maglev"), (0x20000, "send-reset"), (0x40000, "connlimit-ingress"),
        (0x80000, "connlimit-ingress-rejected"), (0x100000, "connlimit-egress"), (0x200000, "connlimit-dec"),
    ]

    static let legSyn: UInt32 = 1 << 0
    static let legAck: UInt32 = 1 << 1
    static let legFin: UInt32 = 1 << 2
    static let legRst: UInt32 = 1 << 3
    static let legApproved: UInt32 = 1 << 4
    static let legOpener: UInt32 = 1 << 5
    static let legWorkload: UInt32 = 1 << 6
    static let legBitNames: [(UInt32, String)] = [
        (legSyn, "syn"), (legAck, "ack"), (legFin, "fin"), (legRst, "rst"), (legApproved, "approved"),
        (legOpener, "opener"), (legWorkload, "workload"),
    ]

    /// A frontend count meaning "drop" (source-range blackhole).
    static let dropCount: UInt32 = 0xffff_ffff
    static let natExternalLocal: UInt32 = 0x1
    static let natInternalLocal: UInt32 = 0x2
    static let natExclude: UInt32 = 0x4
    static let natMaglev: UInt32 = 0x8

    static let routeWorkload: UInt32 = 0x04
    static let routeHost: UInt32 = 0x10

    /// The NodePort wildcard frontend's address (NP_SPECIAL_IP).
    static func nodePortAddress(v6: Bool) -> IPAddress {
        v6 ? IPAddress(family: .v6, hi: .max, lo: .max) : IPAddress(family: .v4, hi: 0xffff_ffff << 32, lo: 0)
    }

    static let defaultPinDir = "/sys/fs/bpf/tc/globals"

    static func ctPin(_ v6: Bool, _ gen: Int) -> String { "cali_v\(v6 ? 6 : 4)_ct\(gen)" }
    static func frontendPin(_ v6: Bool) -> String { "cali_v\(v6 ? 6 : 4)_nat_fe3" }
    static func backendPin(_ v6: Bool) -> String { "cali_v\(v6 ? 6 : 4)_nat_be" }
    static func routesPin(_ v6: Bool) -> String { "cali_v\(v6 ? 6 : 4)_routes" }
}
