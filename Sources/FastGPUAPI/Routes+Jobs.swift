import FastGPUControlPlane
import FastGPUModel
import FastGPUStore
import FastGPUWire
import Foundation
import Hummingbird
import HTTPTypes
import NIOCore

extension APIServer {
    /// Jobs and the queue: members of the job's project.
    func jobRoutes(_ route: RouteBuilder, buckets: RequestBuckets) {
        let cp = controlPlane
        let clock = self.clock
        let longPolls = self.longPolls
        let limits = self.limits
        _ = (cp, clock, longPolls, limits)

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
            let (nodes, projects) = await cp.names(of: events.map(\.event))
            let names = EventNames(nodes: nodes, projects: projects)
            return try json(EventListWire(items: events.map { Wire.event($0, names: names) }))
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
                              submitter: view.job.submitter, reason: Wire.reason(entry.reason, now: now), estimatedStart: entry.estimatedStart.map(Wire.time),
                              estimatedStartBasis: Wire.startBasis(entry))
            }
            return try json(QueueListWire(items: items))
        }
    }
}
