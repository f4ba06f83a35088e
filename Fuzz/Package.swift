// swift-tools-version:6.1
import PackageDescription

// libFuzzer harnesses for Breakwater's parsers, kept out of the main package: `make fuzz` builds
// them with -sanitize=fuzzer,address and runs each for a bounded time. The code under test comes
// from the main package's own library products (BreakwaterCore, BreakwaterHTTP), so what is
// fuzzed is exactly what ships; the oracles (BreakwaterFuzzOracles) are shared with the test
// suite. Each harness is an entry point and the libFuzzer driver, nothing more.
let package = Package(
    name: "breakwater-fuzz",
    dependencies: [
        // Named, because a package found by path is otherwise known by its directory's name,
        // which is whatever the checkout is called.
        .package(name: "breakwater", path: ".."),
    ],
    targets: [
        // Hands control to the libFuzzer runtime that -sanitize=fuzzer links in.
        .target(name: "FuzzDriver"),
        .executableTarget(name: "FuzzConfig", dependencies: ["FuzzDriver", oracles]),
        .executableTarget(name: "FuzzIdentity", dependencies: ["FuzzDriver", oracles]),
        .executableTarget(name: "FuzzHTTPHead", dependencies: ["FuzzDriver", oracles]),
        .executableTarget(name: "FuzzChunked", dependencies: ["FuzzDriver", oracles]),
    ]
)

var oracles: Target.Dependency { .product(name: "BreakwaterFuzzOracles", package: "breakwater") }
