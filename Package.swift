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
        .executableTarget(
            name: "fastgpu",
            dependencies: [
                "FastGPUModel",
                "FastGPUScheduler",
                "FastGPUWorkloads",
                "FastGPUSimulator",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
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
            name: "FastGPUCLITests",
            dependencies: ["fastgpu"],
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
