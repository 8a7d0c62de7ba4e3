import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1

/// The agent's side of the v1 API: register, heartbeat, blocking assignment queries, status
/// reports and log uploads. Only the fields the agent reads are decoded.
struct AgentClient: Sendable {
    let server: String
    let http: HTTPClient

    struct Failure: Error, CustomStringConvertible {
        var status: Int
        var description: String
    }

    struct Registered: Decodable {
        struct Node: Decodable { var id: UInt64 }
        var node: Node
        var token: String
    }

    struct Assignments: Decodable {
        var index: UInt64
        var allocations: [Assignment]
    }

    struct Assignment: Decodable, Hashable {
        struct Allocation: Decodable, Hashable {
            var id: UInt64
            var epoch: UInt64
            var devices: [String]
            var taskIndex: Int
        }
        var allocation: Allocation
        var job: UInt64
        var jobName: String
        var command: [String]
        var env: [String: String]
        var groupSize: Int
        var rank: Int
        var maxRuntimeSeconds: Int64?
        var gpuMemoryLimitMiB: Int?
        var masterAddress: String?
        var masterPort: Int?
    }

    struct Heartbeat: Decodable {
        var assignmentIndex: UInt64
    }

    func register(joinToken: String, name: String, cpuMillis: Int, memoryMiB: Int, labels: [String: String], gpus: [ProbedGPU]) async throws -> Registered {
        let body: [String: Any] = [
            "name": name, "cpuMillis": cpuMillis, "memoryMiB": memoryMiB, "labels": labels,
            "gpus": gpus.map { ["uuid": $0.uuid, "model": $0.model, "memoryMiB": $0.memoryMiB, "migEnabled": $0.migEnabled] as [String: Any] },
        ]
        return try await call(.POST, "/v1/nodes/register", token: joinToken, json: body)
    }

    func heartbeat(node: UInt64, token: String, gpus: [ProbedGPU], running: [(allocation: UInt64, epoch: UInt64)]) async throws -> Heartbeat {
        var gpuHealth: [[String: Any]] = []
        for gpu in gpus {
            var entry: [String: Any] = ["index": gpu.index, "healthy": gpu.healthy]
            if let reason = gpu.healthReason { entry["reason"] = reason }
            gpuHealth.append(entry)
        }
        let body: [String: Any] = ["gpus": gpuHealth, "running": running.map { ["allocation": $0.allocation, "epoch": $0.epoch] }]
        return try await call(.POST, "/v1/nodes/\(node)/heartbeat", token: token, json: body)
    }

    func assignments(node: UInt64, token: String, after index: UInt64, wait: Int) async throws -> Assignments {
        try await call(.GET, "/v1/nodes/\(node)/assignments?index=\(index)&wait=\(wait)s", token: token, json: nil, timeout: .seconds(Int64(wait) + 30))
    }

    func report(node: UInt64, token: String, allocation: UInt64, epoch: UInt64, exitCode: Int32?) async throws {
        var body: [String: Any] = ["epoch": epoch, "state": exitCode == nil ? "running" : "exited"]
        if let exitCode { body["exitCode"] = exitCode }
        let _: Empty = try await call(.POST, "/v1/nodes/\(node)/allocations/\(allocation)/status", token: token, json: body)
    }

    func uploadLogs(node: UInt64, token: String, allocation: UInt64, chunks: [(sequence: Int64, stream: String, text: String)]) async throws {
        let body: [String: Any] = ["chunks": chunks.map { ["sequence": $0.sequence, "stream": $0.stream, "text": $0.text] as [String: Any] }]
        let _: Empty = try await call(.POST, "/v1/nodes/\(node)/allocations/\(allocation)/logs", token: token, json: body)
    }

    struct Empty: Decodable {}

    private func call<T: Decodable>(_ method: HTTPMethod, _ path: String, token: String, json: [String: Any]?, timeout: TimeAmount = .seconds(30)) async throws -> T {
        var request = HTTPClientRequest(url: server + path)
        request.method = method
        request.headers.add(name: "Authorization", value: "Bearer \(token)")
        if let json {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: json)))
        }
        let response = try await http.execute(request, timeout: timeout)
        let buffer = try await response.body.collect(upTo: 16 << 20)
        let bytes = buffer.getBytes(at: buffer.readerIndex, length: buffer.readableBytes) ?? []
        guard (200..<300).contains(Int(response.status.code)) else {
            let detail = (try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any])?["detail"] as? String
            throw Failure(status: Int(response.status.code), description: "\(method) \(path): \(response.status.code) \(detail ?? "")")
        }
        if T.self == Empty.self { return Empty() as! T }
        return try JSONDecoder().decode(T.self, from: Data(bytes))
    }
}
