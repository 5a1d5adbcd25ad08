// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "ctctl",
    products: [
        .executable(name: "ctctl", targets: ["ctctl"])
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    ],
    targets: [
        // The C boundary: libbpf calls Swift cannot make directly, and the map ABI
        // header (a link to bpf/include/ctctl_abi.h, shared with the BPF objects).
        .target(
            name: "CLibBPF",
            linkerSettings: [.linkedLibrary("bpf"), .linkedLibrary("elf"), .linkedLibrary("z")]
        ),
        // The library: maps, entries, filters, staleness rules, heal, formatting.
        .target(
            name: "ConntrackKit",
            dependencies: [
                "CLibBPF",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The command line: thin commands over ConntrackKit, runnable in-process (tests, drills).
        .target(
            name: "CtctlCLI",
            dependencies: [
                "ConntrackKit",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(name: "ctctl", dependencies: ["CtctlCLI"]),
        // Fixtures for the tests, the benchmark and the drills: packets built and checked from
        // scratch, map fills, the datapath run on one packet. Never linked into ctctl.
        .target(name: "TestSupport", dependencies: ["ConntrackKit", "CLibBPF"]),
        // Test hosts in network namespaces, shared by the kernel tests and the demo.
        .target(name: "NetLab", dependencies: ["ConntrackKit"]),
        // The reliability drills (issue 10): churn, faults, fuzzing, concurrency. `make test`
        // runs short forms of each; `make soak` (ctctl-soak) the full ones, and writes
        // docs/RELIABILITY.md.
        .target(
            name: "Reliability",
            dependencies: [
                "ConntrackKit", "CtctlCLI", "CLibBPF", "NetLab", "TestSupport", .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(name: "ctctl-soak", dependencies: ["Reliability", "ConntrackKit"]),
        // `make demo`: the incident, end to end, on real kernel networking.
        .executableTarget(name: "ctctl-demo", dependencies: ["ConntrackKit", "NetLab"]),
        // `make bench`: ctctl against a C batch-lookup loop and bpftool; the datapath per packet.
        .executableTarget(name: "ctctl-bench", dependencies: ["ConntrackKit", "CLibBPF", "TestSupport"]),
        .testTarget(
            name: "ConntrackKitTests", dependencies: ["ConntrackKit", "CtctlCLI", "TestSupport"],
            // golden fixtures, read from the source tree by #filePath (scripts/capture-calico-fixtures.sh)
            exclude: ["Fixtures"]),
        .testTarget(
            name: "KernelTests",
            dependencies: [
                "ConntrackKit", "CtctlCLI", "CLibBPF", "NetLab", "TestSupport", "Reliability",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
    ]
)
