import AsyncHTTPClient
import FastGPUClient
import FastGPUWire

/// The agent's side of the v1 API, over the shared `FastGPUClient`: register, heartbeat, blocking
/// assignment queries, status reports and log uploads. An answer the server refused becomes a
/// `Failure` with its status (the agent treats 401, 404 and 409 differently); a server it cannot
/// reach stays a `ClientError.unreachable`, which the agent retries.
struct AgentClient: Sendable {
    typealias Registered = RegisteredNodeWire
    typealias Assignments = AssignmentsWire
    typealias Assignment = AssignmentWire

    /// The control planes; every call of this agent shares which one is in use.
    let servers: ServerList
    let http: HTTPClient

    struct Failure: Error, CustomStringConvertible {
        var status: Int
        var description: String
    }

    func register(joinToken: String, name: String, cpuMillis: Int, memoryMiB: Int, labels: [String: String], gpus: [ProbedGPU]) async throws -> Registered {
        let body = RegisterNodeBody(name: name, cpuMillis: cpuMillis, memoryMiB: memoryMiB, labels: labels,
                                    gpus: gpus.map { GPUBody(uuid: $0.uuid, model: $0.model, memoryMiB: max(0, $0.memoryMiB), island: $0.island, migEnabled: $0.migEnabled,
                                                             healthy: $0.healthy ? nil : false, healthReason: $0.healthReason) })
        return try await refused { try await client(joinToken).registerNode(body) }
    }

    func heartbeat(node: UInt64, token: String, gpus: [ProbedGPU], running: [(allocation: UInt64, epoch: UInt64)], assignmentIndex: UInt64) async throws -> HeartbeatWire {
        let body = HeartbeatBody(gpus: gpus.map {
                                     GPUHealthBody(index: $0.index, healthy: $0.healthy, reason: $0.healthReason, powerWatts: $0.powerWatts,
                                                   energyMillijoules: $0.energyMillijoules, utilizationPercent: $0.utilizationPercent,
                                                   memoryUsedMiB: $0.memoryUsedMiB, temperatureCelsius: $0.temperatureCelsius,
                                                   eccCorrected: $0.eccCorrected, eccUncorrected: $0.eccUncorrected,
                                                   xidErrors: $0.xidErrors > 0 ? $0.xidErrors : nil, lastXid: $0.lastXid,
                                                   simulated: $0.simulated ? true : nil)
                                 },
                                 running: running.map { RunningAllocationBody(allocation: $0.allocation, epoch: $0.epoch) }, assignmentIndex: assignmentIndex)
        return try await refused { try await client(token).heartbeat(node: node, body) }
    }

    func assignments(node: UInt64, token: String, after index: UInt64, stepsSeen: UInt64, wait: Int) async throws -> Assignments {
        try await refused { try await client(token).assignments(node: node, after: index, stepsSeen: stepsSeen, wait: .seconds(wait)) }
    }

    func reportStep(node: UInt64, token: String, allocation: UInt64, step: UInt64, _ body: StepReportBody) async throws {
        try await refused { try await client(token).reportStep(node: node, allocation: allocation, step: step, body) }
    }

    func report(node: UInt64, token: String, allocation: UInt64, epoch: UInt64, exitCode: Int32?, pulling: Bool = false) async throws {
        let body = AllocationStatusBody(epoch: epoch, state: pulling ? "pulling" : exitCode == nil ? "running" : "exited", exitCode: exitCode)
        try await refused { try await client(token).report(node: node, allocation: allocation, body) }
    }

    func reportReadiness(node: UInt64, token: String, allocation: UInt64, epoch: UInt64, ready: Bool, host: String, port: Int) async throws {
        let body = ReplicaReadinessBody(epoch: epoch, ready: ready, host: host, port: port)
        try await refused { try await client(token).reportReadiness(node: node, allocation: allocation, body) }
    }

    func uploadLogs(node: UInt64, token: String, allocation: UInt64, chunks: [(sequence: Int64, stream: String, text: String)]) async throws {
        let body = LogUploadBody(chunks: chunks.map { LogChunkBody(sequence: $0.sequence, stream: $0.stream, text: $0.text) })
        try await refused { try await client(token).uploadLogs(node: node, allocation: allocation, body) }
    }

    func reportOutputs(node: UInt64, token: String, allocation: UInt64, uploaded: Bool, error: String?, files: Int, bytes: Int64) async throws {
        let body = OutputsReportBody(uploaded: uploaded, error: error.map { String($0.prefix(500)) }, files: files, bytes: bytes)
        try await refused { try await client(token).reportOutputs(node: node, allocation: allocation, body) }
    }

    private func client(_ token: String) -> FastGPUClient {
        FastGPUClient(servers: servers, token: token, http: http)
    }

    private func refused<T>(_ call: () async throws -> T) async throws -> T {
        do {
            return try await call()
        } catch let error as ClientError {
            if let status = error.status { throw Failure(status: status, description: error.description) }
            throw error
        }
    }
}

extension AgentClient.Assignment {
    /// The allocation's typed slots, or those read from a server that sends only display names.
    var slots: [DeviceSlotWire] { allocation.slots ?? allocation.devices.compactMap(DeviceSlotWire.init(display:)) }
}

extension DeviceSlotWire {
    /// Reads the display form (`gpu0`, `gpu3[500m,20480MiB]`, `gpu1/mig:1g.10gb@2`) of a server
    /// that sends no typed slots yet.
    init?(display device: String) {
        guard device.hasPrefix("gpu"), let index = Int(device.dropFirst(3).prefix { $0.isNumber }) else { return nil }
        if let mig = device.range(of: "/mig:") {
            let rest = device[mig.upperBound...]
            self.init(gpu: index, kind: "mig", profile: String(rest.prefix { $0 != "@" }), start: rest.split(separator: "@").last.flatMap { Int($0) })
        } else {
            self.init(gpu: index, kind: device.contains("[") ? "share" : "whole")
        }
    }
}
