import FastGPUControlPlane
import FastGPUModel
import FastGPUWire
import Foundation
import Hummingbird

extension APIServer {
    /// Steps: commands run in a running job's allocation. Members start them; the node's agent
    /// runs them and reports their output and exit.
    func stepRoutes(_ route: RouteBuilder) {
        let cp = controlPlane
        let longPolls = self.longPolls

        route(.post, "/v1/jobs/{id}/steps") { request, context in
            let principal = try context.requirePrincipal()
            var request = request
            let body = try decode(StepSubmissionBody.self, from: try await body(of: &request))
            let probe = JobSubmissionBody(project: "", command: body.command, env: body.env)
            try probe.checkLaunchSize()
            let step = try await cp.startStep(job: try jobID(context), command: body.command, environment: body.env ?? [:], by: principal)
            var response = try json(Wire.step(step), status: .created)
            response.headers[.location] = "/v1/jobs/\(step.job.rawValue)/steps/\(step.id)"
            return response
        }
        route(.get, "/v1/jobs/{id}/steps") { _, context in
            let principal = try context.requirePrincipal()
            return try json(StepsWire(items: try await cp.steps(of: try jobID(context), by: principal).map(Wire.step)))
        }
        route(.get, "/v1/jobs/{id}/steps/{step}") { request, context in
            let principal = try context.requirePrincipal()
            let query = request.uri.queryParameters
            let after = try nonEmpty(query["after"]).map { text throws -> UInt64 in
                guard let value = UInt64(text) else { throw APIProblem(status: .badRequest, title: "Bad request", detail: "after must be a step's version") }
                return value
            } ?? 0
            let wait = try nonEmpty(query["wait"]).map { try parseWait($0) } ?? .zero
            let id = try jobID(context), step = try stepID(context)
            let view = wait > .zero
                ? try await longPolls.hold(for: principal) { try await cp.step(step, of: id, after: after, wait: wait, by: principal) }
                : try await cp.step(step, of: id, after: after, wait: .zero, by: principal)
            return try json(Wire.step(view))
        }
        route(.post, "/v1/nodes/{id}/allocations/{allocation}/steps/{step}") { request, context in
            let principal = try context.requirePrincipal()
            var request = request
            let body = try decode(StepReportBody.self, from: try await body(of: &request))
            guard body.stdout.utf8.count + body.stderr.utf8.count <= 4 << 20 else {
                throw APIProblem(status: .contentTooLarge, title: "Too large", detail: "a step report carries at most 4 MiB of output")
            }
            try await cp.reportStep(node: try nodeID(context), allocation: try allocationID(context), step: try stepID(context), epoch: Epoch(body.epoch),
                                    started: body.started, stdout: (body.stdoutOffset, body.stdout), stderr: (body.stderrOffset, body.stderr),
                                    exitCode: body.exitCode, by: principal)
            return Response(status: .noContent)
        }
    }
}

func stepID(_ context: APIRequestContext) throws -> UInt64 {
    let text = try context.parameters.require("step")
    guard let id = UInt64(text) else { throw APIProblem(status: .notFound, title: "Not found", detail: "\(quoted(text)) is not a step id") }
    return id
}

extension Wire {
    static func step(_ step: StepView) -> StepWire {
        StepWire(id: step.id, job: step.job.rawValue, allocation: step.allocation.rawValue, command: step.command, state: step.state.rawValue,
                 exitCode: step.exitCode, stdout: step.stdout, stderr: step.stderr, truncated: step.truncated,
                 stdoutBytes: step.stdoutBytes, stderrBytes: step.stderrBytes, version: step.version,
                 createdAt: time(step.createdAt), startedAt: step.startedAt.map(time), endedAt: step.endedAt.map(time))
    }
}
