import FastGPUControlPlane
import FastGPUModel
import FastGPUStore
import FastGPUWire
import Foundation
import Hummingbird
import HTTPTypes
import NIOCore

extension APIServer {
    /// Nodes: operators read and manage them; agents register, heartbeat, fetch assignments, report and ship logs.
    func nodeRoutes(_ route: RouteBuilder) {
        let cp = controlPlane
        let clock = self.clock
        let longPolls = self.longPolls
        let limits = self.limits
        _ = (cp, clock, longPolls, limits)

        route(.get, "/v1/nodes") { _, context in
            let principal = try context.requirePrincipal()
            return try json(NodeListWire(items: try await cp.nodes(by: principal).map(Wire.node)))
        }
        route(.get, "/v1/nodes/{id}") { _, context in
            let principal = try context.requirePrincipal()
            return try json(Wire.node(try await cp.node(try nodeID(context), by: principal)))
        }
        for (verb, target) in [("cordon", NodeState.cordoned), ("uncordon", .ready), ("drain", .draining)] {
            route(.post, "/v1/nodes/{id}/\(verb)") { _, context in
                let principal = try context.requirePrincipal()
                return try json(Wire.node(try await cp.setNodeState(try nodeID(context), to: target, by: principal)))
            }
        }

        route(.post, "/v1/nodes/{id}/replace") { _, context in
            let principal = try context.requirePrincipal()
            return try json(Wire.node(try await cp.replaceNode(try nodeID(context), by: principal)))
        }

        // Nodes: agents.
        route(.post, "/v1/nodes/register") { request, context in
            let principal = try context.requirePrincipal()
            var request = request
            let body = try decode(RegisterNodeBody.self, from: try await body(of: &request))
            guard body.gpus.count <= Limits.gpusPerNode else { throw WireError(description: "a node has at most \(Limits.gpusPerNode) GPUs") }
            guard (0...Limits.cpuMillis).contains(body.cpuMillis), (0...Limits.memoryMiB).contains(body.memoryMiB) else {
                throw WireError(description: "cpuMillis must be 0 to \(Limits.cpuMillis) and memoryMiB 0 to \(Limits.memoryMiB)")
            }
            guard (body.labels?.count ?? 0) <= Limits.entries else { throw WireError(description: "more than \(Limits.entries) labels") }
            let gpus = try body.gpus.enumerated().map { index, gpu in
                // A lost GPU is registered too (memoryMiB 0, healthy false), so that the indices
                // of the others stay the driver's; it is never scheduled until it is healthy.
                let healthy = gpu.healthy ?? true
                guard !gpu.model.isEmpty, gpu.memoryMiB > 0 || !healthy else {
                    throw WireError(description: "gpus[\(index)] needs a model and a positive memoryMiB (0 only with healthy: false)")
                }
                guard gpu.memoryMiB >= 0, (gpu.healthReason?.count ?? 0) <= 1024 else { throw WireError(description: "gpus[\(index)]: memoryMiB must not be negative, healthReason at most 1024 characters") }
                guard gpu.memoryMiB <= Limits.gpuMemoryMiB, (0...Limits.gpusPerNode).contains(gpu.island ?? 0) else {
                    throw WireError(description: "gpus[\(index)]: memoryMiB at most \(Limits.gpuMemoryMiB), island 0 to \(Limits.gpusPerNode)")
                }
                return GPU(index: index, uuid: gpu.uuid, model: gpu.model, memoryMiB: gpu.memoryMiB, island: gpu.island ?? 0,
                           health: healthy ? .healthy : .unhealthy(reason: gpu.healthReason ?? "reported unhealthy at registration"),
                           migEnabled: gpu.migEnabled ?? false)
            }
            let (view, token) = try await cp.registerNode(name: body.name, gpus: gpus, cpuMillis: body.cpuMillis, memoryMiB: body.memoryMiB,
                                                          labels: body.labels ?? [:], by: principal)
            return try json(RegisteredNodeWire(node: Wire.node(view), token: token), status: .created)
        }
        route(.post, "/v1/nodes/{id}/heartbeat") { request, context in
            let principal = try context.requirePrincipal()
            var request = request
            let body = try decode(HeartbeatBody.self, from: try await body(of: &request))
            var health: [Int: GPUHealth] = [:]
            var telemetry: [Int: GPUTelemetry] = [:]
            for gpu in body.gpus ?? [] {
                health[gpu.index] = gpu.healthy ? .healthy : .unhealthy(reason: gpu.reason ?? "reported unhealthy")
                // Readings outside what any GPU draws or counts are dropped, not stored.
                let reading = GPUTelemetry(
                    powerWatts: gpu.powerWatts.flatMap { $0.isFinite && $0 >= 0 && $0 < 100_000 ? $0 : nil },
                    energyMillijoules: gpu.energyMillijoules.flatMap { $0 >= 0 ? $0 : nil },
                    utilizationPercent: gpu.utilizationPercent.flatMap { (0...100).contains($0) ? $0 : nil },
                    memoryUsedMiB: gpu.memoryUsedMiB.flatMap { (0...16_777_216).contains($0) ? $0 : nil },
                    temperatureCelsius: gpu.temperatureCelsius.flatMap { (-60...250).contains($0) ? $0 : nil },
                    eccCorrected: gpu.eccCorrected.flatMap { $0 >= 0 ? $0 : nil }, eccUncorrected: gpu.eccUncorrected.flatMap { $0 >= 0 ? $0 : nil },
                    xidErrors: gpu.xidErrors.flatMap { $0 >= 0 ? $0 : nil }, lastXid: gpu.lastXid.flatMap { (0..<100_000).contains($0) ? $0 : nil },
                    simulated: gpu.simulated ?? false)
                if !reading.isEmpty || reading.simulated { telemetry[gpu.index] = reading }
            }
            let running = body.running.map { list in
                Dictionary(list.map { (AllocationID($0.allocation), Epoch($0.epoch)) }, uniquingKeysWith: { first, _ in first })
            }
            let index = try await cp.heartbeat(node: try nodeID(context), gpuHealth: health, telemetry: telemetry, running: running,
                                               reconciled: body.assignmentIndex, by: principal)
            return try json(HeartbeatWire(assignmentIndex: index))
        }
        route(.get, "/v1/nodes/{id}/assignments") { request, context in
            let principal = try context.requirePrincipal()
            let query = request.uri.queryParameters
            let index: UInt64 = try nonEmpty(query["index"]).map { text throws -> UInt64 in
                guard let value = UInt64(text) else { throw APIProblem(status: .badRequest, title: "Bad request", detail: "index must be a non-negative integer") }
                return value
            } ?? 0
            let wait = try nonEmpty(query["wait"]).map { try parseWait($0) } ?? .zero
            let stepsSeen: UInt64? = try nonEmpty(query["steps"]).map { text throws -> UInt64 in
                guard let value = UInt64(text) else { throw APIProblem(status: .badRequest, title: "Bad request", detail: "steps must be the newest step id the agent has") }
                return value
            }
            let node = try nodeID(context)
            let assignments = wait > .zero
                ? try await longPolls.hold(for: principal) { try await cp.assignments(node: node, after: index, stepsSeen: stepsSeen, wait: wait, by: principal) }
                : try await cp.assignments(node: node, after: index, stepsSeen: stepsSeen, wait: wait, by: principal)
            return try json(AssignmentsWire(index: assignments.index, allocations: assignments.allocations.map { a in
                var shareLimit: Int?
                for device in a.allocation.devices { if case .share(_, _, let memory) = device { shareLimit = memory } }
                return AssignmentWire(allocation: Wire.allocation(AllocationView(allocation: a.allocation, live: true, report: .assigned, outcome: nil, endedAt: nil)),
                                      job: a.allocation.task.job.rawValue, jobName: a.jobName, command: a.launch.command, env: a.launch.environment,
                                      groupSize: a.groupSize, rank: a.rank, peers: a.peers.map(\.rawValue),
                                      maxRuntimeSeconds: a.runtimeLimit.map { $0.wholeMilliseconds / 1000 }, gpuMemoryLimitMiB: shareLimit,
                                      masterAddress: a.masterAddress, masterPort: a.masterPort, project: a.project.rawValue,
                                      image: a.launch.image, network: a.launch.network?.rawValue,
                                      replica: a.launch.replica.map { r in
                                          ReplicaAssignmentWire(service: r.service, revision: r.revision, port: r.port, path: r.readiness.path,
                                                                intervalMilliseconds: r.readiness.interval.wholeMilliseconds,
                                                                timeoutMilliseconds: r.readiness.timeout.wholeMilliseconds,
                                                                failureThreshold: r.readiness.failureThreshold,
                                                                startupTimeoutMilliseconds: r.readiness.startupTimeout.wholeMilliseconds)
                                      },
                                      inputs: a.inputs.isEmpty ? nil : a.inputs.map { input, backend in
                                          InputDownloadWire(path: input.path, key: input.key, uri: input.uri, backend: Wire.backendAccess(backend))
                                      },
                                      steps: a.steps.isEmpty ? nil : a.steps.map { StepAssignmentWire(id: $0.id, command: $0.command, env: $0.environment) })
            }, uploads: assignments.uploads.map(Wire.upload)))
        }
        route(.post, "/v1/nodes/{id}/allocations/{allocation}/outputs") { request, context in
            let principal = try context.requirePrincipal()
            var request = request
            let body = try decode(OutputsReportBody.self, from: try await body(of: &request))
            try await cp.settleUpload(node: try nodeID(context), allocation: try allocationID(context), succeeded: body.uploaded,
                                      error: body.error, by: principal)
            return Response(status: .noContent)
        }
        route(.post, "/v1/nodes/{id}/allocations/{allocation}/status") { request, context in
            let principal = try context.requirePrincipal()
            var request = request
            let body = try decode(AllocationStatusBody.self, from: try await body(of: &request))
            guard ["pulling", "running", "exited"].contains(body.state) else {
                throw APIProblem(status: .badRequest, title: "Bad request", detail: "state must be pulling, running or exited")
            }
            if body.state == "exited" && body.exitCode == nil {
                throw APIProblem(status: .badRequest, title: "Bad request", detail: "an exited allocation needs its exitCode")
            }
            try await cp.report(node: try nodeID(context), allocation: try allocationID(context), epoch: Epoch(body.epoch),
                                running: body.state == "running", exitCode: body.exitCode, pulling: body.state == "pulling", by: principal)
            return Response(status: .noContent)
        }
        route(.post, "/v1/nodes/{id}/allocations/{allocation}/readiness") { request, context in
            let principal = try context.requirePrincipal()
            var request = request
            let body = try decode(ReplicaReadinessBody.self, from: try await body(of: &request))
            try await cp.replicaReadiness(node: try nodeID(context), allocation: try allocationID(context), epoch: Epoch(body.epoch), ready: body.ready,
                                          host: body.host, port: body.port, by: principal)
            return Response(status: .noContent)
        }
        route(.post, "/v1/nodes/{id}/allocations/{allocation}/logs") { request, context in
            let principal = try context.requirePrincipal()
            var request = request
            let body = try decode(LogUploadBody.self, from: try await body(of: &request))
            let chunks = try body.chunks.map { chunk in
                guard let stream = LogStream(rawValue: chunk.stream) else { throw WireError(description: "stream must be stdout or stderr") }
                return (sequence: chunk.sequence, stream: stream, text: chunk.text)
            }
            try await cp.appendLogs(node: try nodeID(context), allocation: try allocationID(context), chunks: chunks, by: principal)
            return Response(status: .noContent)
        }
    }
}
