import ConntrackKit
import Testing

@Suite("parsing operator input")
struct ParsingTests {
    @Test(
        "IP addresses",
        arguments: [
            ("198.18.0.1", "198.18.0.1"), ("2001:db8::1", "2001:db8::1"), ("2001:DB8:0:0::1", "2001:db8::1"),
            ("::", "::"), ("::ffff:198.18.0.1", "::ffff:198.18.0.1"), ("0.0.0.0", "0.0.0.0"),
        ])
    func addresses(_ input: String, _ printed: String) {
        #expect(IPAddress(input)?.description == printed)
    }

    @Test(
        "malformed IP addresses are rejected",
        arguments: [
            "", "198.18.0", "198.18.0.256", "198.18.0.1.2", "01.2.3.4x", "2001:db8::1::2", "2001:db8:::1", "host", " 198.18.0.1",
            "198.18.0.1/32", "[2001:db8::1]", "gggg::1",
        ])
    func badAddresses(_ input: String) {
        #expect(IPAddress(input) == nil)
    }

    @Test("IPv4 keeps its bytes in the first four of sixteen")
    func v4Layout() throws {
        let a = try #require(IPAddress("198.18.0.1"))
        #expect(a.hi == 0xc612_0001_0000_0000 && a.lo == 0)
        var raw = [UInt8](repeating: 0xee, count: 16)
        raw.withUnsafeMutableBytes { a.store(to: $0.baseAddress!) }
        #expect(raw == [198, 18, 0, 1] + [UInt8](repeating: 0, count: 12))
        #expect(raw.withUnsafeBytes { IPAddress(raw: $0.baseAddress!, family: 4) } == a)
    }

    @Test(
        "CIDR matching",
        arguments: [
            ("198.18.0.0/15", "198.19.255.255", true), ("198.18.0.0/15", "198.20.0.0", false),
            ("198.18.1.2", "198.18.1.2", true), ("198.18.1.2", "198.18.1.3", false), ("0.0.0.0/0", "203.0.113.9", true),
            ("2001:db8::/32", "2001:db8:ffff::1", true), ("2001:db8::/32", "2001:db9::1", false),
            ("2001:db8:1:2::/64", "2001:db8:1:2:ffff::", true), ("2001:db8::1/128", "2001:db8::1", true),
            ("2001:db8::/96", "2001:db8::ff:1", true), ("::/0", "2001:db8::1", true),
            ("198.18.0.0/15", "2001:db8::1", false), ("::/0", "198.18.0.1", false),
        ])
    func cidr(_ net: String, _ addr: String, _ inside: Bool) throws {
        let n = try #require(IPNetwork(net))
        #expect(n.contains(try #require(IPAddress(addr))) == inside)
    }

    @Test(
        "malformed CIDRs are rejected",
        arguments: [
            "198.18.0.0/33", "198.18.0.0/", "198.18.0.0/-1", "198.18.0.0/+8", "2001:db8::/129", "/8", "198.18.0.0/8/8", "x/8",
        ])
    func badCIDR(_ input: String) {
        #expect(IPNetwork(input) == nil)
    }

    @Test("a CIDR is normalised to its network")
    func cidrNormalised() {
        #expect(IPNetwork("198.18.7.9/16")?.description == "198.18.0.0/16")
        #expect(IPNetwork("2001:db8:1:2:3::/48")?.description == "2001:db8:1::/48")
    }

    @Test(
        "endpoints",
        arguments: [
            ("198.18.0.1:53", "198.18.0.1:53"), ("[2001:db8::1]:53", "[2001:db8::1]:53"), ("198.18.0.1:0", "198.18.0.1:0"),
            ("198.18.0.1:65535", "198.18.0.1:65535"),
        ])
    func endpoints(_ input: String, _ printed: String) {
        #expect(Endpoint(input)?.description == printed)
    }

    @Test(
        "malformed endpoints are rejected",
        arguments: [
            "198.18.0.1", "198.18.0.1:", "198.18.0.1:65536", "198.18.0.1:-1", "198.18.0.1:+53", "2001:db8::1:53", "[2001:db8::1]",
            "[2001:db8::1]53", "[198.18.0.1]:53", ":53", "198.18.0.1:5x",
        ])
    func badEndpoints(_ input: String) {
        #expect(Endpoint(input) == nil)
    }

    @Test(
        "protocols",
        arguments: [
            ("udp", "udp", 17), ("UDP", "udp", 17), ("tcp", "tcp", 6), ("17", "udp", 17), ("132", "132", 132), ("0", "0", 0),
        ])
    func protocols(_ input: String, _ printed: String, _ number: Int) {
        #expect(IPProto(input)?.description == printed)
        #expect(IPProto(input)?.number == UInt8(number))
    }

    @Test("malformed protocols are rejected", arguments: ["", "256", "-1", "icmpv7", "1x", "0017"])
    func badProtocols(_ input: String) {
        #expect(IPProto(input) == nil)
    }

    @Test(
        "services",
        arguments: [
            ("198.19.0.10:161/udp", "198.19.0.10:161/udp"), ("[2001:db8::10]:53/UDP", "[2001:db8::10]:53/udp"),
            ("198.19.0.10:80/6", "198.19.0.10:80/tcp"),
        ])
    func services(_ input: String, _ printed: String) {
        #expect(ServiceRef(input)?.description == printed)
    }

    @Test(
        "malformed services are rejected",
        arguments: [
            "198.19.0.10:161", "198.19.0.10/udp", "198.19.0.10:161/", "2001:db8::10:53/udp", "x:1/udp", "198.19.0.10:161/udpx",
        ])
    func badServices(_ input: String) {
        #expect(ServiceRef(input) == nil)
    }

    @Test(
        "durations",
        arguments: [
            ("500ms", 500_000_000 as UInt64), ("60s", 60_000_000_000), ("10m", 600_000_000_000), ("1h", 3_600_000_000_000),
            ("5", 5_000_000_000),
        ])
    func durations(_ input: String, _ ns: UInt64) {
        #expect(DurationText.parseNanoseconds(input) == ns)
    }

    @Test("malformed durations are rejected", arguments: ["", "s", "1.5s", "-1s", "10x", "ms", "99999999999999999999h"])
    func badDurations(_ input: String) {
        #expect(DurationText.parseNanoseconds(input) == nil)
    }

    @Test(
        "short duration text",
        arguments: [
            (850_000_000 as UInt64, "850ms"), (12_000_000_000, "12s"), (303_000_000_000, "5m3s"), (3_600_000_000_000, "1h"),
            (7_260_000_000_000, "2h1m"), (273_600_000_000_000, "3d4h"),
        ])
    func durationText(_ ns: UInt64, _ text: String) {
        #expect(DurationText.format(nanoseconds: ns) == text)
    }

    @Test("timeouts override only what is named")
    func timeouts() throws {
        let t = try Timeouts(parsing: "udp=30s,tcp-closing=10s")
        #expect(t.udp == 30_000_000_000)
        #expect(t.tcp == 3_600_000_000_000)
        #expect(t.tcpClosing == 10_000_000_000)
        #expect(t.other == 600_000_000_000)
        #expect(t.timeout(proto: 6, flags: 0) == t.tcp)
        #expect(t.timeout(proto: 6, flags: 1) == t.tcpClosing)
        #expect(t.timeout(proto: 17, flags: 1) == t.udp)
        #expect(t.timeout(proto: 132, flags: 0) == t.other)
    }

    @Test("bad timeouts name the fix", arguments: ["udp", "udp=", "udp=0s", "icmp=5s", "udp=5x"])
    func badTimeouts(_ input: String) {
        #expect(throws: CtctlError.self) { try Timeouts(parsing: input) }
    }
}

@Suite("formatting")
struct FormattingTests {
    @Test("JSON escapes and keeps key order")
    func json() {
        let doc = JSON.object([
            ("b", .string("a\"b\\c\n\u{1}")), ("a", .array([.uint(1), .int(-2), .null, .bool(true)])), ("e", .object([])),
        ])
        #expect(doc.render(pretty: false) == #"{"b":"a\"b\\c\n\u0001","a":[1,-2,null,true],"e":{}}"#)
        #expect(doc.render().contains("\n  \"a\": [\n    1,"))
    }

    @Test("text tables align columns")
    func table() {
        var t = TextTable(["A", "LONGER"])
        t.add(["xxxx", "1"])
        #expect(t.render() == "A     LONGER\nxxxx  1\n")
    }

    @Test("timestamps are UTC")
    func timestamps() {
        #expect(Timestamp.rfc3339(0) == "1970-01-01T00:00:00Z")
        #expect(Timestamp.rfc3339(1_795_828_485) == "2026-11-28T01:14:45Z")
    }

    @Test("the exit status table lists every code")
    func exitTable() {
        for s in ExitStatus.allCases {
            #expect(ExitStatus.helpTable.contains("  \(s.rawValue)"))
        }
    }
}
