// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "breakwater",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "breakwater", targets: ["breakwater"]),
        // The decision logic alone, for the tracker benchmark in bench/tracker.
        .library(name: "BreakwaterCore", targets: ["BreakwaterCore"]),
        // HTTP/1 wire rules with no I/O, for the fuzz harnesses in Fuzz/.
        .library(name: "BreakwaterHTTP", targets: ["BreakwaterHTTP"]),
        // The properties the fuzz harnesses in Fuzz/ check, shared with the test suite.
        .library(name: "BreakwaterFuzzOracles", targets: ["BreakwaterFuzzOracles"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-atomics.git", from: "1.3.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/LebJe/TOMLKit.git", from: "0.6.0"),
    ],
    targets: [
        .systemLibrary(
            name: "CLibevent",
            pkgConfig: "libevent_core",
            providers: [.apt(["libevent-dev"])]
        ),
        .systemLibrary(
            name: "COpenSSL",
            pkgConfig: "openssl",
            providers: [.apt(["libssl-dev"])]
        ),
        .systemLibrary(
            name: "CNGHTTP2",
            pkgConfig: "libnghttp2",
            providers: [.apt(["libnghttp2-dev"])]
        ),
        // No pkgConfig: hiredis.pc adds -D_FILE_OFFSET_BITS=64, a flag SwiftPM drops with a warning
        // on every build. shim.h names the headers by their path under /usr/include, and the
        // module map links the library; scripts/install-deps.sh installs libhiredis-dev.
        .systemLibrary(name: "CHiredis"),
        .target(
            name: "BreakwaterCore",
            dependencies: [
                .product(name: "TOMLKit", package: "TOMLKit"),
            ]
        ),
        // HTTP/1 wire rules: heads, framing, chunked decoding and the reader state machines.
        // No libevent and no sockets, so every rule is tested and fuzzed on plain bytes.
        .target(
            name: "BreakwaterHTTP",
            swiftSettings: [
                // The readers are generic over their clock; this lets the server's release build
                // specialise them for its loop clock instead of calling through generic metadata.
                .unsafeFlags(["-cross-module-optimization"], .when(configuration: .release)),
            ]
        ),
        .target(
            name: "BreakwaterServer",
            dependencies: [
                "BreakwaterCore",
                "BreakwaterHTTP",
                "CLibevent",
                "CHiredis",
                "COpenSSL",
                "CNGHTTP2",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Atomics", package: "swift-atomics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: [
                // The request path mutates connection state through inout and closures; the
                // run-time exclusivity checks this costs stay on in debug builds, where every test
                // runs, and are left out of release builds.
                .unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release)),
            ]
        ),
        // One function per fuzz target: bytes in, a broken property out. No libFuzzer here, so
        // the test suite runs the same oracles over the stored inputs.
        .target(name: "BreakwaterFuzzOracles", dependencies: ["BreakwaterCore", "BreakwaterHTTP"]),
        .executableTarget(
            name: "breakwater",
            dependencies: [
                "BreakwaterCore",
                "BreakwaterServer",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(name: "BreakwaterCoreTests", dependencies: ["BreakwaterCore"]),
        .testTarget(name: "BreakwaterHTTPTests", dependencies: ["BreakwaterHTTP"]),
        .testTarget(name: "BreakwaterServerTests",
                    dependencies: ["BreakwaterServer", "BreakwaterCore", "BreakwaterHTTP", "BreakwaterFuzzOracles"]),
    ]
)
