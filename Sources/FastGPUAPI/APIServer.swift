public import FastGPUControlPlane
import FastGPUModel
import FastGPUStore
import Foundation
public import Hummingbird
import Logging
import NIOCore
public import Prometheus
import HTTPTypes
import FastGPUWire

extension HTTPFields {
    static let idempotencyKey = HTTPField.Name("Idempotency-Key")!
    static let requestID = HTTPField.Name("X-Request-Id")!
}

enum APIHeader {
    /// The index of a blocking query's answer: pass it back as `index` to wait for the next change.
    static let index = HTTPField.Name("X-FastGPU-Index")!
}

/// The request context of every v1 route: who is calling and the request's id.
public struct APIRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public var principal: Principal?
    var authenticationFailure: AuthenticationFailure?
    public var requestID: String = ""
    /// The peer's IP address: the key of rate limits before authentication.
    public var remoteAddress: String

    public init(source: Source) {
        coreContext = .init(source: source)
        remoteAddress = source.channel.remoteAddress?.ipAddress ?? "unknown"
    }

    func requirePrincipal() throws -> Principal {
        guard let principal else { throw authenticationFailure ?? .missing }
        return principal
    }
}

/// The routes of the API as registered: the contract test compares them with `openapi.yaml`.
public struct RouteTable: Sendable {
    public struct Route: Hashable, Sendable {
        public var method: String
        public var path: String
    }

    public private(set) var routes: [Route] = []

    mutating func add(_ method: HTTPRequest.Method, _ path: String) {
        routes.append(Route(method: method.rawValue.lowercased(), path: path))
    }
}

/// Builds the router of the v1 API over a control plane.
public struct APIServer: Sendable {
    public let controlPlane: ControlPlane
    public let metrics: APIMetrics
    public let limits: RequestLimits
    /// The long polls open now; shared by every router built from this server.
    public let longPolls: LongPollGate
    let clock: any WallClock

    public init(controlPlane: ControlPlane, metrics: APIMetrics, limits: RequestLimits = RequestLimits(), clock: any WallClock = SystemWallClock()) {
        self.controlPlane = controlPlane
        self.metrics = metrics
        self.limits = limits
        self.clock = clock
        longPolls = LongPollGate(limits: limits)
    }

    /// The OpenAPI document this server implements.
    public static var openAPIDocument: String {
        guard let url = Bundle.module.url(forResource: "openapi", withExtension: "yaml"),
              let text = try? String(contentsOf: url, encoding: .utf8) else { return "" }
        return text
    }

    public func makeRouter() -> (router: Router<APIRequestContext>, routes: RouteTable) {
        let router = Router(context: APIRequestContext.self)
        let index = RouteIndex()
        router.add(middleware: ProblemMiddleware(metrics: metrics, routes: index))
        router.add(middleware: AuthenticationMiddleware(tokens: controlPlane.tokens, clock: clock))
        let buckets = RequestBuckets()
        router.add(middleware: RateLimitMiddleware(limits: limits, buckets: buckets, clock: clock))
        router.add(middleware: AuditMiddleware(audit: controlPlane.audit, clock: clock))
        var table = RouteTable()
        let cp = controlPlane
        let clock = self.clock
        let document = Self.openAPIDocument
        let metrics = self.metrics
        let longPolls = self.longPolls
        let limits = self.limits

        func route(_ method: HTTPRequest.Method, _ path: String, _ handler: @escaping @Sendable (Request, APIRequestContext) async throws -> Response) {
            table.add(method, path)
            index.add(method: method.rawValue, path: path)
            router.on(RouterPath(path), method: method, use: handler)
        }

        // Health, readiness, metrics, contract: no token needed.
        route(.get, "/healthz") { _, _ in text("ok\n") }
        route(.get, "/readyz") { _, _ in
            let stats = await cp.stats()
            if stats.storeFailed { throw APIProblem(status: .serviceUnavailable, title: "Not ready", detail: "the store failed; restart the server") }
            return text("ready\n")
        }
        route(.get, "/metrics") { _, _ in
            let stats = await cp.stats()
            var response = text(metrics.render(stats))
            response.headers[.contentType] = "text/plain; version=0.0.4"
            return response
        }
        route(.get, "/openapi.yaml") { _, _ in
            var response = text(document)
            response.headers[.contentType] = "application/yaml"
            return response
        }

        // Jobs.
        route(.post, "/v1/jobs") { request, context in
            let principal = try context.requirePrincipal()
            var request = request
            let bytes = try await body(of: &request)
            let body = try decode(JobSubmissionBody.self, from: bytes)
            let submission = try body.submission()
            let key = request.headers[HTTPFields.idempotencyKey]
            if let key, key.isEmpty || key.count > 255 {
                throw APIProblem(status: .badRequest, title: "Bad request", detail: "Idempotency-Key must be 1 to 255 characters")
            }
            // The same request is the same whatever its key order or spacing: the hash is of the
            // decoded body, re-encoded with sorted keys. (Clients on Linux write keys in a
            // per-process order.)
            var hash = ""
            if key != nil {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys]
                // Secret values enter the hash only as keyed fingerprints: the stored hash must
                // not be a plain hash of a secret.
                var hashed = body
                hashed.secrets = body.secrets?.mapValues { cp.secretBox.fingerprint($0) }
                hash = sha256Hex(Array(try encoder.encode(hashed)))
            }
            let (view, created) = try await cp.submit(submission, by: principal, idempotencyKey: key, requestHash: hash)
            var response = try json(Wire.job(view, now: clock.now()), status: created ? .created : .ok)
            response.headers[.location] = "/v1/jobs/\(view.job.id.rawValue)"
            return response
        }
        route(.get, "/v1/jobs") { request, context in
            let principal = try context.requirePrincipal()
            let query = request.uri.queryParameters
            var states: Set<JobState> = []
            if let text = nonEmpty(query["state"]) {
                for part in text.split(separator: ",") {
                    guard let state = JobState(rawValue: String(part)) else {
                        throw APIProblem(status: .badRequest, title: "Bad request", detail: "unknown state \(part); one of \(JobState.allCases.map(\.rawValue).joined(separator: ", "))")
                    }
                    states.insert(state)
                }
            }
            var limit = 100
            if let text = nonEmpty(query["limit"]) {
                guard let value = Int(text), (1...1_000_000).contains(value) else {
                    throw APIProblem(status: .badRequest, title: "Bad request", detail: "limit must be 1 to 1000000 (a page holds at most 500)")
                }
                limit = value
            }
            var after: JobID?
            if let text = nonEmpty(query["after"]) {
                guard let id = JobID(parsing: text) else { throw APIProblem(status: .badRequest, title: "Bad request", detail: "after must be a job id") }
                after = id
            }
            var page = try cp.jobs(by: principal, project: nonEmpty(query["project"]), states: states, after: after, limit: limit)
            // A page holds at most ~4 MiB of commands and environments (each job's at most
            // 64 KiB): a shorter page with `next` instead of one reply of hundreds of MB.
            var bytes = 0
            for (offset, view) in page.jobs.enumerated() {
                bytes += view.launch.command.reduce(0) { $0 + $1.utf8.count } + view.launch.environment.reduce(0) { $0 + $1.key.utf8.count + $1.value.utf8.count }
                if bytes > 4 << 20 && offset > 0 {
                    page.jobs = Array(page.jobs.prefix(offset))
                    page.next = page.jobs.last?.job.id
                    break
                }
            }
            let now = clock.now()
            let reply = try json(JobListWire(items: page.jobs.map { Wire.job($0, now: now) }, next: page.next.map { String($0.rawValue) }))
            RateLimitMiddleware.chargeReply(bytes: reply.body.contentLength ?? 0, to: principal, limits: limits, buckets: buckets, clock: clock)
            return reply
        }
        route(.get, "/v1/jobs/{id}") { request, context in
            let principal = try context.requirePrincipal()
            let id = try jobID(context)
            // A blocking query (as Nomad's): with `index`, answer once the job changed after that
            // index or `wait` ran out. The reply's X-FastGPU-Index is the index to pass next.
            let query = request.uri.queryParameters
            let index = try nonEmpty(query["index"]).map { text throws -> UInt64 in
                guard let value = UInt64(text) else { throw APIProblem(status: .badRequest, title: "Bad request", detail: "index must be a whole number") }
                return value
            }
            let wait = try nonEmpty(query["wait"]).map { try parseWait($0) } ?? .seconds(30)
            _ = try cp.reads.job(id, by: principal)
            if let index, wait > .zero {
                try await longPolls.hold(for: principal) { await cp.waitForJobChange(id, after: index, timeout: wait) }
            }
            let version = await cp.jobVersion(id)
            let view = try await cp.jobWithHistory(id, by: principal)
            var response = try json(Wire.job(view, now: clock.now()))
            response.headers[APIHeader.index] = String(version)
            return response
        }
        route(.post, "/v1/jobs/{id}/cancel") { request, context in
            let principal = try context.requirePrincipal()
            let view = try await cp.cancel(try jobID(context), by: principal)
            return try json(Wire.job(view, now: clock.now()))
        }
        route(.get, "/v1/jobs/{id}/events") { request, context in
            let principal = try context.requirePrincipal()
            let query = request.uri.queryParameters
            guard let after = Int64(nonEmpty(query["after"]) ?? "0"), after >= 0 else {
                throw APIProblem(status: .badRequest, title: "Bad request", detail: "after must be an event sequence number")
            }
            guard let limit = Int(nonEmpty(query["limit"]) ?? "100"), (1...1_000_000).contains(limit) else {
                throw APIProblem(status: .badRequest, title: "Bad request", detail: "limit must be a positive integer")
            }
            let events = try await cp.events(of: try jobID(context), by: principal, after: after, limit: limit)
            return try json(EventListWire(items: events.map(Wire.event)))
        }
        route(.get, "/v1/jobs/{id}/logs") { request, context in
            let principal = try context.requirePrincipal()
            let id = try jobID(context)
            _ = try cp.job(id, by: principal)
            let query = request.uri.queryParameters
            let follow: Bool
            switch nonEmpty(query["follow"]) {
            case nil, "false"?, "0"?: follow = false
            case "true"?, "1"?: follow = true
            case let other?: throw APIProblem(status: .badRequest, title: "Bad request", detail: "follow must be true or false, not \(other)")
            }
            var start: Int64 = 0
            if let text = nonEmpty(query["after"]) {
                guard let value = Int64(text), value >= 0 else {
                    throw APIProblem(status: .badRequest, title: "Bad request", detail: "after must be the position of the last line read")
                }
                start = value
            }
            let initial = start
            var headers = HTTPFields()
            headers[.contentType] = "application/x-ndjson"
            // A followed log is a long poll for as long as it is open.
            if follow { try longPolls.acquire(principal) }
            return Response(status: .ok, headers: headers, body: ResponseBody { writer in
                defer { if follow { longPolls.release(principal) } }
                var position = initial
                while true {
                    let version = await cp.jobVersion(id)
                    let (chunks, finished) = try await cp.logs(of: id, by: principal, after: position, limit: 1000)
                    if !chunks.isEmpty {
                        var buffer = ByteBuffer()
                        for stored in chunks {
                            let chunk = stored.chunk
                            let line = LogLineWire(position: stored.position, allocation: chunk.allocationID.rawValue, sequence: chunk.sequence,
                                                   stream: chunk.stream.rawValue, time: Wire.time(chunk.time), text: chunk.text)
                            buffer.writeBytes(line.jsonBytes)
                            buffer.writeString("\n")
                            position = stored.position
                        }
                        try await writer.write(buffer)
                        continue
                    }
                    if !follow || finished { break }
                    await cp.waitForJobChange(id, after: version, timeout: .seconds(15))
                }
                try await writer.finish(nil)
            })
        }

        route(.get, "/v1/queue") { request, context in
            let principal = try context.requirePrincipal()
            let now = clock.now()
            let items = try cp.queue(by: principal, project: nonEmpty(request.uri.queryParameters["project"])).map { entry, view in
                QueueItemWire(position: entry.position, job: entry.job.rawValue, project: view.projectName, name: view.job.name,
                              submitter: view.job.submitter, reason: Wire.reason(entry.reason, now: now), estimatedStart: entry.estimatedStart.map(Wire.time))
            }
            return try json(QueueListWire(items: items))
        }

        // Nodes: operators.
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
                let power = gpu.powerWatts.flatMap { $0.isFinite && $0 >= 0 && $0 < 100_000 ? $0 : nil }
                let energy = gpu.energyMillijoules.flatMap { $0 >= 0 ? $0 : nil }
                if power != nil || energy != nil { telemetry[gpu.index] = GPUTelemetry(powerWatts: power, energyMillijoules: energy) }
            }
            let running = body.running.map { list in
                Dictionary(list.map { (AllocationID($0.allocation), Epoch($0.epoch)) }, uniquingKeysWith: { first, _ in first })
            }
            let index = try await cp.heartbeat(node: try nodeID(context), gpuHealth: health, telemetry: telemetry, running: running, by: principal)
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
            let node = try nodeID(context)
            let assignments = wait > .zero
                ? try await longPolls.hold(for: principal) { try await cp.assignments(node: node, after: index, wait: wait, by: principal) }
                : try await cp.assignments(node: node, after: index, wait: wait, by: principal)
            return try json(AssignmentsWire(index: assignments.index, allocations: assignments.allocations.map { a in
                var shareLimit: Int?
                for device in a.allocation.devices { if case .share(_, _, let memory) = device { shareLimit = memory } }
                return AssignmentWire(allocation: Wire.allocation(AllocationView(allocation: a.allocation, live: true, report: .assigned, outcome: nil, endedAt: nil)),
                                      job: a.allocation.task.job.rawValue, jobName: a.jobName, command: a.launch.command, env: a.launch.environment,
                                      groupSize: a.groupSize, rank: a.rank, peers: a.peers.map(\.rawValue),
                                      maxRuntimeSeconds: a.runtimeLimit.map { $0.wholeMilliseconds / 1000 }, gpuMemoryLimitMiB: shareLimit,
                                      masterAddress: a.masterAddress, masterPort: a.masterPort)
            }))
        }
        route(.post, "/v1/nodes/{id}/allocations/{allocation}/status") { request, context in
            let principal = try context.requirePrincipal()
            var request = request
            let body = try decode(AllocationStatusBody.self, from: try await body(of: &request))
            guard body.state == "running" || body.state == "exited" else {
                throw APIProblem(status: .badRequest, title: "Bad request", detail: "state must be running or exited")
            }
            if body.state == "exited" && body.exitCode == nil {
                throw APIProblem(status: .badRequest, title: "Bad request", detail: "an exited allocation needs its exitCode")
            }
            try await cp.report(node: try nodeID(context), allocation: try allocationID(context), epoch: Epoch(body.epoch),
                                running: body.state == "running", exitCode: body.exitCode, by: principal)
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

        // Projects and members.
        route(.get, "/v1/projects") { _, context in
            let principal = try context.requirePrincipal()
            return try json(ProjectListWire(items: try await cp.projects(by: principal).map(Wire.project)))
        }
        route(.post, "/v1/projects") { request, context in
            let principal = try context.requirePrincipal()
            var request = request
            let body = try decode(CreateProjectBody.self, from: try await body(of: &request))
            return try json(Wire.project(try await cp.createProject(name: body.name, weight: body.weight ?? 1, by: principal)), status: .created)
        }
        route(.get, "/v1/projects/{name}") { _, context in
            let principal = try context.requirePrincipal()
            return try json(Wire.project(try await cp.project(try pathParameter(context, "name"), by: principal)))
        }
        route(.patch, "/v1/projects/{name}") { request, context in
            let principal = try context.requirePrincipal()
            var request = request
            let body = try decode(UpdateProjectBody.self, from: try await body(of: &request))
            var ceiling: PriorityClass?
            if let name = body.maxPriority {
                guard let parsed = PriorityClass.named(name) else {
                    throw APIProblem(status: .badRequest, title: "Bad request", detail: "maxPriority must be low, normal or high")
                }
                ceiling = parsed
            }
            return try json(Wire.project(try await cp.updateProject(try pathParameter(context, "name"), weight: body.weight, maxPriority: ceiling, by: principal)))
        }
        // A project's secret store: names for members, values only ever to agents.
        route(.get, "/v1/projects/{name}/secrets") { _, context in
            let principal = try context.requirePrincipal()
            return try json(SecretListWire(items: try await cp.secrets(of: try pathParameter(context, "name"), by: principal).map(Wire.secret)))
        }
        route(.put, "/v1/projects/{name}/secrets/{secret}") { request, context in
            let principal = try context.requirePrincipal()
            var request = request
            let body = try decode(SecretBody.self, from: try await body(of: &request))
            let record = try await cp.setSecret(project: try pathParameter(context, "name"), name: try pathParameter(context, "secret"), value: body.value, by: principal)
            guard let record else { throw APIProblem(status: .internalServerError, title: "Internal error", detail: "the secret was not stored") }
            return try json(Wire.secret(record))
        }
        route(.delete, "/v1/projects/{name}/secrets/{secret}") { _, context in
            let principal = try context.requirePrincipal()
            try await cp.setSecret(project: try pathParameter(context, "name"), name: try pathParameter(context, "secret"), value: nil, by: principal)
            return Response(status: .noContent)
        }
        route(.put, "/v1/projects/{name}/members/{subject}") { request, context in
            let principal = try context.requirePrincipal()
            var request = request
            let body = try decode(MemberBody.self, from: try await body(of: &request))
            guard let role = MemberRole(rawValue: body.role) else {
                throw APIProblem(status: .badRequest, title: "Bad request", detail: "role must be admin, member or viewer")
            }
            return try json(Wire.project(try await cp.setMember(project: try pathParameter(context, "name"), subject: try pathParameter(context, "subject"),
                                                              role: role, by: principal)))
        }
        route(.delete, "/v1/projects/{name}/members/{subject}") { _, context in
            let principal = try context.requirePrincipal()
            return try json(Wire.project(try await cp.setMember(project: try pathParameter(context, "name"), subject: try pathParameter(context, "subject"),
                                                              role: nil, by: principal)))
        }

        // The audit log: cluster admins.
        route(.get, "/v1/audit") { request, context in
            let principal = try context.requirePrincipal()
            let query = request.uri.queryParameters
            guard let after = Int64(nonEmpty(query["after"]) ?? "0"), after >= 0 else {
                throw APIProblem(status: .badRequest, title: "Bad request", detail: "after must be an audit sequence number")
            }
            guard let limit = Int(nonEmpty(query["limit"]) ?? "100"), (1...1000).contains(limit) else {
                throw APIProblem(status: .badRequest, title: "Bad request", detail: "limit must be 1 to 1000")
            }
            let subject = nonEmpty(query["subject"])
            if let subject, subject.utf8.count > 128 { throw APIProblem(status: .badRequest, title: "Bad request", detail: "subject is at most 128 bytes") }
            let records = try await cp.audit.records(after: after, limit: limit, subject: subject, by: principal)
            return try json(AuditListWire(items: records.map(Wire.audit), next: records.count == limit ? records.last?.sequence : nil))
        }

        // Tokens.
        route(.get, "/v1/tokens") { _, context in
            let principal = try context.requirePrincipal()
            return try json(TokenListWire(items: try await cp.listTokens(by: principal).map(Wire.token)))
        }
        route(.post, "/v1/tokens") { request, context in
            let principal = try context.requirePrincipal()
            var request = request
            let body = try decode(CreateTokenBody.self, from: try await body(of: &request))
            let kind: TokenKind
            switch body.kind ?? "user" {
            case "user": kind = .user
            case "join": kind = .join
            case let other: throw APIProblem(status: .badRequest, title: "Bad request", detail: "kind must be user or join, not \(other)")
            }
            if let seconds = body.expiresInSeconds, seconds <= 0 || seconds > Limits.seconds {
                throw APIProblem(status: .badRequest, title: "Bad request", detail: "expiresInSeconds must be 1 to \(Limits.seconds)")
            }
            let expiry = body.expiresInSeconds.map { clock.now() + .seconds($0) }
            let view = try await cp.createToken(name: body.name, kind: kind, subject: body.subject, clusterAdmin: body.clusterAdmin ?? false,
                                                expiresAt: expiry, by: principal)
            return try json(Wire.token(view), status: .created)
        }
        route(.post, "/v1/tokens/{id}/revoke") { _, context in
            let principal = try context.requirePrincipal()
            guard let id = UInt64(try context.parameters.require("id")) else {
                throw APIProblem(status: .badRequest, title: "Bad request", detail: "token id must be an integer")
            }
            return try json(Wire.token(try await cp.revokeToken(id, by: principal)))
        }
        return (router, table)
    }
}

// MARK: - Helpers

/// A path parameter, percent-decoded (`/members/jos%C3%A9` is josé).
func pathParameter(_ context: APIRequestContext, _ name: String) throws -> String {
    let raw = try context.parameters.require(name)
    return raw.removingPercentEncoding ?? raw
}

/// `application/json`, with parameters (`; charset=utf-8`) or as a `+json` type.
func isJSON(contentType: String) -> Bool {
    let type = contentType.split(separator: ";", maxSplits: 1).first.map { $0.trimmingCharacters(in: .whitespaces).lowercased() } ?? ""
    return type == "application/json" || (type.hasPrefix("application/") && type.hasSuffix("+json"))
}

/// A query parameter's value; an empty one (`?after=`) counts as absent.
func nonEmpty(_ value: Substring?) -> String? {
    guard let value, !value.isEmpty else { return nil }
    return String(value)
}

func text(_ string: String) -> Response {
    var headers = HTTPFields()
    headers[.contentType] = "text/plain; charset=utf-8"
    return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: string)))
}

func json<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok) throws -> Response {
    let data = try JSONEncoder().encode(value)
    var headers = HTTPFields()
    headers[.contentType] = "application/json"
    return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data)))
}

/// The JSON body of a request, at most 1 MiB. A body that says it is something else than JSON
/// (a form, text) is refused with 415; one that says nothing is read as JSON.
func body(of request: inout Request) async throws -> [UInt8] {
    if let type = request.headers[.contentType], !isJSON(contentType: type) {
        throw APIProblem(status: .unsupportedMediaType, title: "Unsupported media type", detail: "the body must be JSON: Content-Type: application/json")
    }
    do {
        let buffer = try await request.collectBody(upTo: 1 << 20)
        return buffer.getBytes(at: buffer.readerIndex, length: buffer.readableBytes) ?? []
    } catch {
        throw APIProblem(status: .contentTooLarge, title: "Body too large", detail: "a request body may be at most 1 MiB")
    }
}

func decode<T: Decodable>(_ type: T.Type, from bytes: [UInt8]) throws -> T {
    guard !bytes.isEmpty else { throw APIProblem(status: .badRequest, title: "Bad request", detail: "a JSON body is required") }
    do {
        return try JSONDecoder().decode(type, from: Data(bytes))
    } catch let error as WireError {
        throw error
    } catch let error as DecodingError {
        throw WireError(description: describe(error))
    }
}

func describe(_ error: DecodingError) -> String {
    func path(_ context: DecodingError.Context) -> String {
        let parts = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }
        return parts.isEmpty ? "body" : "field '\(parts.joined(separator: ".").replacingOccurrences(of: ".[", with: "["))'"
    }
    switch error {
    case .keyNotFound(let key, let context):
        return "\(path(DecodingError.Context(codingPath: context.codingPath + [key], debugDescription: ""))) is required"
    case .typeMismatch(let type, let context): return "\(path(context)): expected \(wireTypeName(type))"
    case .valueNotFound(let type, let context): return "\(path(context)): expected \(wireTypeName(type)), found null"
    case .dataCorrupted(let context): return context.codingPath.isEmpty ? "the body is not valid JSON" : "\(path(context)): invalid value"
    @unknown default: return "the body does not match the schema"
    }
}

private func wireTypeName(_ type: Any.Type) -> String {
    switch type {
    case is String.Type: "a string"
    case is Bool.Type: "a boolean"
    case is Int.Type, is Int64.Type, is Int32.Type, is UInt64.Type: "an integer"
    default: type is any Collection.Type ? "an array" : "an object"
    }
}

func jobID(_ context: APIRequestContext) throws -> JobID {
    let text = try context.parameters.require("id")
    guard let id = JobID(parsing: text) else { throw APIProblem(status: .notFound, title: "Not found", detail: "\(quoted(text)) is not a job id") }
    return id
}

func nodeID(_ context: APIRequestContext) throws -> NodeID {
    let text = try context.parameters.require("id")
    guard let id = NodeID(parsing: text) else { throw APIProblem(status: .notFound, title: "Not found", detail: "\(quoted(text)) is not a node id") }
    return id
}

func allocationID(_ context: APIRequestContext) throws -> AllocationID {
    let text = try context.parameters.require("allocation")
    guard let id = AllocationID(parsing: text) else { throw APIProblem(status: .notFound, title: "Not found", detail: "\(quoted(text)) is not an allocation id") }
    return id
}

/// `30s`, `500ms`, `2m`; at most 5 minutes (a longer wait is cut to 5 minutes, as Nomad does).
/// At most 9 digits: a number that large is no wait anyone means, and nothing is multiplied
/// that could overflow.
func parseWait(_ text: String) throws -> Duration {
    let units: [(String, Int64)] = [("ms", 1), ("s", 1000), ("m", 60_000)]
    for (suffix, scale) in units where text.hasSuffix(suffix) {
        if suffix == "s" && text.hasSuffix("ms") { continue }
        let digits = text.dropLast(suffix.count)
        if (1...9).contains(digits.utf8.count), digits.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let value = Int64(digits) {
            return .milliseconds(min(value, 300_000 / scale) * scale)
        }
    }
    throw APIProblem(status: .badRequest, title: "Bad request", detail: "wait must look like 30s, 500ms or 2m (at most 9 digits)")
}

/// An identifier from a path, quoted for an error message: long ones are cut, so a 404 never
/// echoes a megabyte back.
func quoted(_ text: String) -> String {
    text.utf8.count <= 40 ? "'\(text)'" : "'\(String(decoding: text.utf8.prefix(32), as: UTF8.self))…' (\(text.utf8.count) bytes)"
}
