// swift-tools-version: 6.1
import PackageDescription

/// The scheduling benchmark, in its own package so that the main test build never compiles the
/// benchmark harness. Run from this directory:
///
///     swift package --allow-writing-to-package-directory benchmark --target Scheduling
let package = Package(
    name: "FastGPUBenchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "FastGPU", path: ".."),
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        .executableTarget(
            name: "Scheduling",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "FastGPUModel", package: "FastGPU"),
                .product(name: "FastGPUScheduler", package: "FastGPU"),
                .product(name: "FastGPUWorkloads", package: "FastGPU"),
            ],
            path: "Benchmarks/Scheduling",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
    ],
    swiftLanguageModes: [.v6]
)
