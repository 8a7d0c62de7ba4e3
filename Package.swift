// swift-tools-version: 6.1
import PackageDescription

/// The pure core (`FastGPUModel`, `FastGPUScheduler`) depends on the standard library and
/// swift-collections only; `Tests/FastGPUModelTests/PurityTests.swift` fails the suite if that changes.
/// The scheduling benchmark lives in its own package under `Benchmarks/` so that the test build
/// does not compile the benchmark harness.
let strictSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "FastGPU",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "fastgpu", targets: ["fastgpu"]),
        .library(name: "FastGPUModel", targets: ["FastGPUModel"]),
        .library(name: "FastGPUScheduler", targets: ["FastGPUScheduler"]),
        .library(name: "FastGPUWorkloads", targets: ["FastGPUWorkloads"]),
        .library(name: "FastGPUSimulator", targets: ["FastGPUSimulator"]),
        .library(name: "FastGPUTestSupport", targets: ["FastGPUTestSupport"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.1.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.0"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.0"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.0.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.80.0"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.21.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.27.0"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.0"),
        .package(url: "https://github.com/hummingbird-project/swift-mustache", from: "2.1.0"),
    ],
    targets: [
        .target(
            name: "FastGPUModel",
            swiftSettings: strictSettings
        ),
        .target(
            name: "FastGPUScheduler",
            dependencies: [
                "FastGPUModel",
                .product(name: "HeapModule", package: "swift-collections"),
            ],
            swiftSettings: strictSettings
        ),
        .target(
            name: "FastGPUWorkloads",
            dependencies: ["FastGPUModel"],
            swiftSettings: strictSettings
        ),
        .target(
            name: "FastGPUSimulator",
            dependencies: [
                "FastGPUModel",
                "FastGPUScheduler",
                "FastGPUWorkloads",
                .product(name: "HeapModule", package: "swift-collections"),
            ],
            swiftSettings: strictSettings
        ),
        .target(
            name: "FastGPUTestSupport",
            dependencies: ["FastGPUModel", "FastGPUScheduler", "FastGPUWorkloads"],
            swiftSettings: strictSettings
        ),
        .target(
            name: "FastGPUWire",
            swiftSettings: strictSettings
        ),
        .target(
            name: "FastGPUClient",
            dependencies: [
                "FastGPUWire",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTLS", package: "swift-nio"),
            ],
            swiftSettings: strictSettings
        ),
        .target(
            name: "FastGPUStorage",
            dependencies: [
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: strictSettings
        ),
        .target(
            name: "FastGPUStore",
            dependencies: ["FastGPUModel"],
            swiftSettings: strictSettings
        ),
        .target(
            name: "FastGPUStoreSQLite",
            dependencies: [
                "FastGPUModel",
                "FastGPUStore",
                .product(name: "GRDB", package: "GRDB.swift"),
            ],
            swiftSettings: strictSettings
        ),
        .target(
            name: "FastGPUStorePostgres",
            dependencies: [
                "FastGPUModel",
                "FastGPUStore",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings
        ),
        .target(
            name: "FastGPUControlPlane",
            dependencies: [
                "FastGPUModel",
                "FastGPUScheduler",
                "FastGPUStore",
                "FastGPUStorage",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSettings
        ),
        .target(
            name: "FastGPUAPI",
            dependencies: [
                "FastGPUModel",
                "FastGPUScheduler",
                "FastGPUStore",
                "FastGPUControlPlane",
                "FastGPUWire",
                "FastGPUGateway",
                "FastGPUStorage",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Mustache", package: "swift-mustache"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            resources: [.copy("openapi.yaml"), .copy("ui")],
            swiftSettings: strictSettings
        ),
        .target(
            name: "FastGPUGateway",
            dependencies: [
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSettings
        ),
        .target(
            name: "FastGPUAgent",
            dependencies: [
                "FastGPUClient",
                "FastGPUWire",
                "FastGPUStorage",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSettings
        ),
        .executableTarget(
            name: "fastgpu",
            dependencies: [
                "FastGPUModel",
                "FastGPUScheduler",
                "FastGPUWorkloads",
                "FastGPUSimulator",
                "FastGPUStore",
                "FastGPUStoreSQLite",
                "FastGPUStorePostgres",
                "FastGPUControlPlane",
                "FastGPUAPI",
                "FastGPUAgent",
                "FastGPUClient",
                "FastGPUWire",
                "FastGPUGateway",
                "FastGPUStorage",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "FastGPUModelTests",
            dependencies: ["FastGPUModel", "FastGPUScheduler", "FastGPUWorkloads", "FastGPUTestSupport"],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "FastGPUSimulatorTests",
            dependencies: ["FastGPUModel", "FastGPUScheduler", "FastGPUSimulator", "FastGPUTestSupport"],
            resources: [.copy("Fixtures")],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "FastGPUAgentTests",
            dependencies: ["FastGPUAgent"],
            resources: [.copy("Fixtures")],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "FastGPUStoreTests",
            dependencies: ["FastGPUModel", "FastGPUStore", "FastGPUStoreSQLite", "FastGPUStorePostgres", "FastGPUTestSupport",
                           .product(name: "GRDB", package: "GRDB.swift"), .product(name: "PostgresNIO", package: "postgres-nio")],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "FastGPUAPITests",
            dependencies: [
                "FastGPUModel", "FastGPUScheduler", "FastGPUStore", "FastGPUStoreSQLite", "FastGPUControlPlane", "FastGPUAPI", "FastGPUWire", "FastGPUTestSupport",
                "FastGPUStorage", "FastGPUStorePostgres",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Yams", package: "Yams"),
            ],
            resources: [.copy("Fixtures")],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "FastGPUControlPlaneTests",
            dependencies: ["FastGPUModel", "FastGPUScheduler", "FastGPUStore", "FastGPUStoreSQLite", "FastGPUControlPlane", "FastGPUTestSupport"],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "FastGPUCLITests",
            dependencies: ["fastgpu", .product(name: "AsyncHTTPClient", package: "async-http-client")],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "FastGPUStorageTests",
            dependencies: [
                "FastGPUStorage",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            resources: [.copy("Fixtures")],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "FastGPUSchedulerTests",
            dependencies: ["FastGPUModel", "FastGPUScheduler", "FastGPUWorkloads", "FastGPUTestSupport"],
            swiftSettings: strictSettings
        ),
    ],
    swiftLanguageModes: [.v6]
)
