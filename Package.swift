// swift-tools-version:6.0
import PackageDescription

// Targets are layered by what they may touch; a lower layer never imports a higher one:
// C shims and kernels → SluiceTensor → SluiceONNX → SluicePlan (with SluiceConfig, which only
// parses YAML) → SluiceWire → SluiceProtocol → SluiceProfile → SluiceTransport, SluiceHTTP →
// SluiceRoles → sluice (CLI). SluiceWire needs only tensors and the pipeline's settings;
// nothing below the protocol imports it.
// SluiceWire is the data format on every socket (batches, window keys, sensor chunks), free of
// sockets; SluicePlan is every planning decision (cut, partition, cores, cost model,
// rebalancer); SluiceProtocol is each role's logic as a pure state machine, one folder a role;
// SluiceTransport is ZeroMQ alone; SluiceRoles are the processes: sockets and files around
// the machines.
let package = Package(
    name: "Sluice",
    products: [
        .executable(name: "sluice", targets: ["sluice"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-protobuf", exact: "1.39.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
    ],
    targets: [
        .systemLibrary(name: "CZeroMQ", path: "Sources/CZeroMQ"),
        .systemLibrary(name: "CBLAS", path: "Sources/CBLAS"),
        .systemLibrary(name: "CProcess", path: "Sources/CProcess"),
        // Float loops built for AVX2 + FMA and for the baseline, chosen at run time (see its header).
        // Optimized in every configuration: the tests and debug runs use these loops too, and at
        // -O0 they are several times slower than what they replace.
        .target(name: "CKernels", path: "Sources/CKernels", cSettings: [.unsafeFlags(["-O2"])]),
        // SHA-256 of model files, optimized in every configuration for the same reason.
        .target(name: "CDigest", path: "Sources/CDigest", cSettings: [.unsafeFlags(["-O2"])]),
        .target(name: "SluiceTensor", dependencies: ["CBLAS", "CKernels"]),
        .target(
            name: "SluiceONNX",
            dependencies: ["SluiceTensor", .product(name: "SwiftProtobuf", package: "swift-protobuf")]),
        .target(name: "SluiceWire", dependencies: ["SluiceTensor", "SluiceConfig"]),
        .target(name: "SluicePlan", dependencies: ["SluiceConfig", "SluiceONNX", "SluiceTensor"]),
        .target(name: "SluiceConfig", dependencies: [.product(name: "Yams", package: "Yams")]),
        .target(name: "SluiceProtocol", dependencies: ["SluiceTensor", "SluiceWire", "SluicePlan", "SluiceConfig"]),
        .target(
            name: "SluiceProfile",
            dependencies: ["SluiceProtocol", "SluicePlan", "SluiceConfig", "SluiceWire", .product(name: "Histogram", package: "hdrhistogram-swift")]),
        .target(name: "SluiceTransport", dependencies: ["CZeroMQ", "SluiceTensor", "SluiceWire"]),
        .target(name: "SluiceHTTP"),
        .target(
            name: "SluiceRoles",
            dependencies: [
                "CProcess", "CDigest", "SluiceTensor", "SluiceONNX", "SluicePlan", "SluiceConfig", "SluiceWire", "SluiceProtocol", "SluiceProfile",
                "SluiceTransport", "SluiceHTTP",
                .product(name: "Logging", package: "swift-log"),
            ]),
        .executableTarget(
            name: "sluice",
            dependencies: [
                "SluiceRoles", "SluiceConfig", "SluiceONNX", "SluicePlan", "SluiceProtocol", "SluiceProfile", "SluiceTensor",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),
        .testTarget(name: "SluiceTensorTests", dependencies: ["SluiceTensor", "SluiceTestSupport"]),
        .testTarget(name: "SluiceONNXTests", dependencies: ["SluiceONNX", "SluiceTensor", "SluiceTestSupport"]),
        .target(name: "SluiceTestSupport", dependencies: ["SluiceONNX", "SluiceTensor"], path: "Tests/SluiceTestSupport"),
        .testTarget(name: "SluicePlanTests", dependencies: ["SluicePlan", "SluiceONNX", "SluiceConfig", "SluiceTestSupport"]),
        .testTarget(name: "SluiceWireTests", dependencies: ["SluiceWire", "SluiceTensor", "SluiceTestSupport"]),
        .testTarget(name: "SluiceConfigTests", dependencies: ["SluiceConfig", "SluiceTestSupport"]),
        .testTarget(name: "SluiceProtocolTests", dependencies: ["SluiceProtocol", "SluiceWire", "SluiceTensor", "SluicePlan", "SluiceConfig", "SluiceTestSupport"]),
        .testTarget(name: "SluiceTransportTests", dependencies: ["SluiceTransport", "SluiceWire", "SluiceProtocol", "SluiceTensor"]),
        .testTarget(name: "SluiceHTTPTests", dependencies: ["SluiceHTTP", "SluiceTransport", "SluiceProfile", "SluiceProtocol", "SluiceTestSupport"]),
        .testTarget(name: "SluiceProfileTests", dependencies: ["SluiceProfile", "SluiceProtocol", "SluicePlan", "SluiceConfig", "SluiceWire"]),
        .testTarget(
            name: "SluiceRolesTests",
            dependencies: [
                "SluiceRoles", "SluiceConfig", "SluicePlan", "SluiceWire", "SluiceProtocol", "SluiceTensor", "SluiceTransport", "SluiceTestSupport",
                .product(name: "Logging", package: "swift-log"),
            ]),
        .testTarget(name: "SluiceCLITests", dependencies: ["SluiceRoles", "SluiceONNX", "SluicePlan", "SluiceProfile", "SluiceConfig", "SluiceWire", "SluiceProtocol", "SluiceTransport", "SluiceTensor", "SluiceTestSupport"]),
    ],
    swiftLanguageModes: [.v5]
)
