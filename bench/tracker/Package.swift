// swift-tools-version:6.1
// The tracker core benchmark: a release-mode executable on BreakwaterCore, no sockets.
// Run it with bench/tracker/run.sh.
import Foundation
import PackageDescription

// A path dependency is known by its directory's name, which is wherever the repository was
// cloned: find it, rather than assume the clone is called "breakwater".
let root = URL(fileURLWithPath: Context.packageDirectory).deletingLastPathComponent().deletingLastPathComponent()

let package = Package(
    name: "tracker-bench",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(path: "../.."),
    ],
    targets: [
        .executableTarget(
            name: "tracker-bench",
            dependencies: [
                .product(name: "BreakwaterCore", package: root.lastPathComponent),
            ]
        ),
    ]
)
