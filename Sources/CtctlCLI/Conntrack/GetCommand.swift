import ArgumentParser
import ConntrackKit

struct GetCommand: CtctlCommand {
    static let configuration = CommandConfiguration(
        commandName: "get",
        abstract: "Show every entry of one flow, looked up by key.",
        discussion: """
            Looks up the tuple, its reverse (a normal flow seen from the reply side) and the partner \
            of each NAT half found: no scan. --explain says what each entry means: which service and \
            backend it maps to, whether the next packet will be translated, and whether it is stale.

            EXAMPLES:
              ctctl conntrack get udp 198.18.1.2:40000 198.19.0.10:161 --explain
              ctctl conntrack get tcp [2001:db8:1::2]:50000 [2001:db8:ff::10]:80 -o json

            \(ExitStatus.helpTable)
            """)

    @OptionGroup var global: GlobalOptions
    @OptionGroup var judge: JudgeOptions
    @Argument(help: "Protocol: udp, tcp, or a number.") var proto: String
    @Argument(help: ArgumentHelp("Source ADDRESS:PORT.", valueName: "src:sport")) var src: String
    @Argument(help: ArgumentHelp("Destination ADDRESS:PORT.", valueName: "dst:dport")) var dst: String
    @Flag(help: "Explain what each entry means.") var explain = false
    @OptionGroup var output: OutputOptions

    func execute(_ console: Console) throws -> ExitStatus {
        let p = try Parse.proto(proto)
        let s = try Parse.endpoint(src, what: "source")
        let d = try Parse.endpoint(dst, what: "destination")
        guard s.address.family == d.address.family else {
            throw ValidationError("\(s) and \(d) are not of the same address family")
        }
        try Operations.get(
            try judge.apply(to: global.target), FlowKey(proto: p, src: s, dst: d), mode: output.mode, explain: explain,
            console: console)
        return .success
    }
}
