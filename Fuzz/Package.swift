// swift-tools-version:6.1
import PackageDescription

// libFuzzer harnesses for Breakwater's parsers, kept out of the main package: `make fuzz` builds
// them with -sanitize=fuzzer,address and runs each for a bounded time. The modules under test are
// the main package's own sources, linked in (Sources/BreakwaterCore, two files of the server), so
// what is fuzzed is exactly what ships; the oracles are shared with the test suite.
let package = Package(
    name: "breakwater-fuzz",
    dependencies: [
        .package(url: "https://github.com/LebJe/TOMLKit.git", from: "0.6.0"),
    ],
    targets: [
        .target(name: "BreakwaterCore", dependencies: [.product(name: "TOMLKit", package: "TOMLKit")]),
        // HTTPHead.swift and RequestFraming.swift only: the request parser without the event loop.
        .target(name: "BreakwaterServer", dependencies: ["BreakwaterCore"]),
        .target(name: "FuzzOracles", dependencies: ["BreakwaterCore", "BreakwaterServer"]),
        .executableTarget(name: "FuzzConfig", dependencies: ["FuzzOracles"]),
        .executableTarget(name: "FuzzIdentity", dependencies: ["FuzzOracles"]),
        .executableTarget(name: "FuzzHTTPHead", dependencies: ["FuzzOracles"]),
    ]
)
