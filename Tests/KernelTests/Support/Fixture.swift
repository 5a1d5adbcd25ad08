import CLibBPF
import ConntrackKit
import Foundation
import NetLab
import TestSupport
import Testing

/// A dataplane with services and flows staged through the real datapath
/// (BPF_PROG_TEST_RUN packets), for the list / get / remove / stats tests.
///
///   S1 198.19.0.10:161/udp  -> 198.18.2.2:1161, 198.18.3.2:1161
///   S2 198.19.0.20:80/tcp   -> 198.18.2.2:8080
///   S6 [2001:db8:ff::10]:53/udp -> [2001:db8:2::2]:53
///   NAT:    udp 198.18.1.2:40000 -> S1, udp 198.18.1.2:40001 -> S1, tcp 198.18.1.3:50000 -> S2,
///           udp [2001:db8:1::2]:40000 -> S6
///   normal: udp 198.18.1.2:40002 -> 198.18.9.9:53, tcp 198.18.1.2:40003 -> 198.18.9.9:80,
///           udp [2001:db8:1::2]:40001 -> [2001:db8:9::9]:53
enum Fixture {
    static let s1 = "198.19.0.10:161/udp", s2 = "198.19.0.20:80/tcp", s6 = "[2001:db8:ff::10]:53/udp"
    static let natFlows: [(IPProto, String, String)] = [
        (.udp, "198.18.1.2:40000", "198.19.0.10:161"), (.udp, "198.18.1.2:40001", "198.19.0.10:161"),
        (.tcp, "198.18.1.3:50000", "198.19.0.20:80"), (.udp, "[2001:db8:1::2]:40000", "[2001:db8:ff::10]:53"),
    ]
    static let normalFlows: [(IPProto, String, String)] = [
        (.udp, "198.18.1.2:40002", "198.18.9.9:53"), (.tcp, "198.18.1.2:40003", "198.18.9.9:80"),
        (.udp, "[2001:db8:1::2]:40001", "[2001:db8:9::9]:53"),
    ]
    static var total: Int { natFlows.count * 2 + normalFlows.count }

    static func stage(_ t: TestDataplane) throws {
        try t.setService(s1, ["198.18.2.2:1161", "198.18.3.2:1161"])
        try t.setService(s2, ["198.18.2.2:8080"])
        try t.setService(s6, ["[2001:db8:2::2]:53"])
        for (p, s, d) in natFlows + normalFlows {
            let run = try t.run(Packets.packet(p, Endpoint(s)!, Endpoint(d)!))
            #expect(run.verdict == TCRun.ok)
        }
        #expect(try t.entries().count == total)
    }
}

/// Parses `-o json` output.
func jsonArray(_ text: String) throws -> [[String: Any]] {
    let obj = try JSONSerialization.jsonObject(with: Data(text.utf8))
    return try #require(obj as? [[String: Any]], "a JSON array of objects")
}

/// Validates JSON text against the published schema (python3 jsonschema).
func validateAgainstSchema(_ json: String) throws {
    let file = FileManager.default.temporaryDirectory.appendingPathComponent(
        "ctctl-json-\(getpid())-\(UInt32.random(in: 0..<UInt32.max)).json")
    try json.write(to: file, atomically: true, encoding: .utf8)
    defer { try? FileManager.default.removeItem(at: file) }
    let schema = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("docs/schema/conntrack-entry.schema.json")
        .path
    let script = "import json,sys,jsonschema; jsonschema.validate(json.load(open(sys.argv[1])), json.load(open(sys.argv[2])))"
    let r = try runCommand(["python3", "-c", script, file.path, schema])
    #expect(r.status == 0, "schema validation: \(r.err)")
}

/// The conntrack keys as `bpftool -j map dump` sees them, decoded here from raw bytes:
/// an independent view of what the map holds.
func bpftoolKeys(_ pins: PinDirectory) throws -> Set<String> {
    let r = try runCommand(["bpftool", "-j", "map", "dump", "pinned", pins.pin("ct")])
    #expect(r.status == 0, "bpftool: \(r.err)")
    let items = try #require(try JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [[String: Any]])
    var keys = Set<String>()
    for item in items {
        let hex = try #require(item["key"] as? [String])
        let b = hex.map { UInt8($0.dropFirst(2), radix: 16)! }
        let v6 = b[37] == 6
        func addr(_ o: Int) -> String {
            v6
                ? stride(from: o, to: o + 16, by: 2).map { String(UInt16(b[$0]) << 8 | UInt16(b[$0 + 1]), radix: 16) }.joined(
                    separator: ":")
                : "\(b[o]).\(b[o + 1]).\(b[o + 2]).\(b[o + 3])"
        }
        let sport = UInt16(b[32]) << 8 | UInt16(b[33])
        let dport = UInt16(b[34]) << 8 | UInt16(b[35])
        keys.insert("\(b[36]) \(addr(0)) \(sport) \(addr(16)) \(dport)")
    }
    return keys
}

/// The same text form for a key we expect, built from ConntrackKit types.
func keyText(_ p: IPProto, _ s: String, _ d: String) -> String {
    let src = Endpoint(s)!
    let dst = Endpoint(d)!
    func addr(_ a: IPAddress) -> String {
        a.isV4
            ? a.description : a.bytes.chunks2.map { String(UInt16($0.0) << 8 | UInt16($0.1), radix: 16) }.joined(separator: ":")
    }
    return "\(p.number) \(addr(src.address)) \(src.port) \(addr(dst.address)) \(dst.port)"
}

extension Array where Element == UInt8 {
    var chunks2: [(UInt8, UInt8)] { stride(from: 0, to: count, by: 2).map { (self[$0], self[$0 + 1]) } }
}

/// A `heal --once -o json` report of a map with `stale` stale entries: every entry reported
/// once, each deleted (a pair counts two), nothing else; and nothing stale left after it.
func expectHealedExactly(_ r: CommandResult, stale: Int, pinDir: String) throws {
    #expect(r.status == 0, "\(r.err)")
    let report = try jsonArray(r.out)
    let lines = report.map { o in o.keys.sorted().map { "\($0)=\(o[$0]!)" }.joined(separator: " ") }
    #expect(Set(lines).count == lines.count, "an entry reported twice")
    #expect(
        report.allSatisfy { ($0["result"] as? String) == "deleted" }, "only deletes: \(Set(report.map { "\($0["result"]!)" }))")
    let deleted = report.reduce(0) { $0 + (($1["with_partner"] as? Bool) == true ? 2 : 1) }
    #expect(deleted == stale, "deleted \(deleted) of \(stale) stale entries")
    #expect(r.err.contains("healed: \(stale) entries deleted"), "\(r.err)")
    let left = ctctl(["conntrack", "list", "--stale", "--count", "--pin-dir", pinDir])
    #expect(left.out.trimmingCharacters(in: .whitespacesAndNewlines) == "0", "stale entries left: \(left.out) \(left.err)")
}
