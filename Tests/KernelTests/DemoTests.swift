import ConntrackKit
import Foundation
import NetLab
import Testing

@Suite("make demo")
struct DemoTests {
    @Test("Ctrl-C in the middle of the demo removes every namespace and pin it created")
    func ctrlC() throws {
        let demo = URL(fileURLWithPath: ctctlBinary()).deletingLastPathComponent().appendingPathComponent("ctctl-demo").path
        let out = FileManager.default.temporaryDirectory.appendingPathComponent(
            "ctctl-demo-\(getpid())-\(UInt32.random(in: 0..<UInt32.max)).out")
        FileManager.default.createFile(atPath: out.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: out) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: demo)
        p.arguments = ["--fast"]
        p.standardOutput = try FileHandle(forWritingTo: out)
        p.standardError = FileHandle.nullDevice
        try p.run()
        defer { if p.isRunning { kill(p.processIdentifier, SIGKILL) } }
        let prefix = "ctctl-\(p.processIdentifier)-demo"
        let deadline = Date().addingTimeInterval(30)
        var text = ""
        while Date() < deadline {
            text = (try? String(contentsOf: out, encoding: .utf8)) ?? ""
            if text.contains("2. The service is deleted") { break }
            Thread.sleep(forTimeInterval: 0.05)
        }
        #expect(text.contains("2. The service is deleted"), "the demo got going: \(text)")
        #expect(try sh(["ip", "netns", "list"]).contains(prefix), "its namespaces exist while it runs")

        p.interrupt()
        let stop = Date().addingTimeInterval(15)
        while p.isRunning && Date() < stop { Thread.sleep(forTimeInterval: 0.05) }
        #expect(!p.isRunning)
        #expect(p.terminationStatus == 130)
        #expect(!(try sh(["ip", "netns", "list"])).contains(prefix), "namespaces removed")
        let pins = try FileManager.default.contentsOfDirectory(atPath: "/sys/fs/bpf").filter {
            $0.hasPrefix("ctctl-demo-\(p.processIdentifier)-")
        }
        #expect(pins.isEmpty, "pins removed: \(pins)")
    }
}
