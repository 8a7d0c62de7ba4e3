import AsyncHTTPClient
import FastGPUStorage
import Foundation

/// A real S3-protocol server for the round-trip tests: `moto_server` (from `pip install
/// 'moto[server]'`) on loopback, one per test process, each test in a bucket of its own.
///
/// It is started through a shell that kills it when its standard input closes, so it ends with
/// the test process however that ends, and at the lowest CPU priority: on two cores its Python
/// would otherwise slow the latency-bound tests that run beside it (the services' cold start). Where moto is not installed the tests skip, unless
/// `FASTGPU_REQUIRE_S3_TESTS=1` (set by `.ci/run`) says they must run.
enum MotoServer {
    static let required = ProcessInfo.processInfo.environment["FASTGPU_REQUIRE_S3_TESTS"] == "1"
    static let installed: Bool = {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        return path.split(separator: ":").contains { FileManager.default.isExecutableFile(atPath: "\($0)/moto_server") }
    }()
    static var enabled: Bool { installed || required }

    /// `http://127.0.0.1:PORT` of the running server.
    static let url: Result<String, any Error> = Result { try start() }

    private nonisolated(unsafe) static var keepAlive: (Process, Pipe)?

    private static func start() throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = ["-c", "nice -n 19 moto_server -H 127.0.0.1 -p 0 2>&1 & pid=$!; trap 'kill $pid' EXIT; read -r _"]
        let input = Pipe()
        let output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        process.standardError = output
        try process.run()
        keepAlive = (process, input)
        // Blocks until werkzeug says where it listens (port 0: the kernel chose it); no sleeping.
        var seen = ""
        let handle = output.fileHandleForReading
        while true {
            let data = handle.availableData
            guard !data.isEmpty else { throw S3Error.transport("moto_server exited before it listened: \(seen)") }
            seen += String(decoding: data, as: UTF8.self)
            if let range = seen.range(of: "Running on http://127.0.0.1:") {
                let digits = seen[range.upperBound...].prefix { $0.isNumber }
                if seen[range.upperBound...].dropFirst(digits.count).first != nil, let port = Int(digits) {
                    // Keep reading moto's log so that its pipe never fills and blocks it.
                    handle.readabilityHandler = { $0.availableData.isEmpty ? ($0.readabilityHandler = nil) : () }
                    return "http://127.0.0.1:\(port)"
                }
            }
        }
    }

    /// One client for the whole test process, never shut down (it lives as long as the process).
    static let http = S3Client.makeHTTPClient(connectTimeout: .seconds(2))

    static let credentials = S3Credentials(accessKeyID: "AKIDMOTO", secretAccessKey: "moto/secret+key=")

    /// A client for a fresh bucket, created now.
    static func client(bucket: String = "b-" + UUID().uuidString.lowercased().prefix(20)) async throws -> S3Client {
        let endpoint = try S3Endpoint(url: try url.get(), region: "us-east-1", bucket: bucket, addressing: .path)
        let client = S3Client(endpoint: endpoint, credentials: credentials, http: http)
        try await client.createBucket()
        return client
    }
}
