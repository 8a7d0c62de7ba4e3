import FastGPUAPI
import FastGPUControlPlane
import FastGPUModel
import Foundation
import HTTPTypes
import Hummingbird
import Testing

/// The findings of the hardening review (issue 11), one test each: every one of them failed on
/// the code before its fix.
@Suite("API: hostile input and fair use")
struct HardeningTests {
    // Finding 1: `wait=200000000000000m` trapped on overflow and took the server down.
    @Test func anOverflowingWaitIsABadRequestNotACrash() async throws {
        let fixture = try await Fixture.make()
        try await fixture.test { api in
            let job = try await api.submit(fixture.admin)
            let node = try await api.register("n1")
            for uri in ["/v1/jobs/\(job)?index=0&wait=200000000000000m", "/v1/nodes/\(node.id)/assignments?index=0&wait=9223372036854775807ms",
                        "/v1/jobs/\(job)?index=0&wait=-1s", "/v1/jobs/\(job)?index=0&wait=1e9s"] {
                let reply = try await api.get(uri, token: uri.contains("assignments") ? node.token : fixture.admin)
                #expect(reply.status == .badRequest, "\(uri): \(reply.text)")
            }
            // A long but well-formed wait is cut to 5 minutes, not refused; with the job already
            // past the index it answers at once.
            let reply = try await api.get("/v1/jobs/\(job)?index=0&wait=999999999m", token: fixture.admin)
            #expect(reply.status == .ok)
        }
    }

    // Finding 3: a join token registering an existing node's name took the node over.
    @Test func aJoinTokenCannotTakeOverARegisteredNodeUntilAnAdminReplacesIt() async throws {
        let fixture = try await Fixture.make()
        try await fixture.test { api in
            let node = try await api.register("gpu-7")
            let job = try await api.submit(fixture.admin, gpus: 1)
            try await fixture.schedule()
            #expect(try await api.get("/v1/nodes/\(node.id)/assignments", token: node.token).json["allocations"]?.array.count == 1)

            let join = try await api.post("/v1/tokens", token: fixture.admin, body: #"{"name":"intruder","kind":"join"}"#).json["token"]?.string
            let body = #"{"name":"gpu-7","cpuMillis":1000,"memoryMiB":1024,"gpus":[{"model":"H100-80GB","memoryMiB":81559}]}"#
            let refused = try await api.post("/v1/nodes/register", token: join, body: body)
            #expect(refused.status == .conflict, "\(refused.text)")
            #expect(refused.detail.contains("fastgpu nodes replace gpu-7"))
            // The real agent is untouched: its credential works and its work stays.
            #expect(try await api.get("/v1/nodes/\(node.id)/assignments", token: node.token).json["allocations"]?.array.count == 1)
            // Another node's credential cannot register it either.
            let other = try await api.register("gpu-8")
            #expect(try await api.post("/v1/nodes/register", token: other.token, body: body).status == .conflict)

            // The admin replaces it: the old credential is refused, the work requeued, and the
            // join token may now register the name.
            let member = try await api.member("mallory", of: "default", role: "member")
            #expect(try await api.post("/v1/nodes/\(node.id)/replace", token: member).status == .forbidden)
            let replaced = try await api.post("/v1/nodes/\(node.id)/replace", token: fixture.admin)
            #expect(replaced.status == .ok, "\(replaced.text)")
            #expect(replaced.json["state"]?.string == "down")
            #expect(try await api.get("/v1/nodes/\(node.id)/assignments", token: node.token).status == .unauthorized)
            #expect(try await api.get("/v1/jobs/\(job)", token: fixture.admin).json["state"]?.string == "pending")
            let taken = try await api.post("/v1/nodes/register", token: join, body: #"{"name":"gpu-7","cpuMillis":1000,"memoryMiB":1024,"gpus":[\#((0..<8).map { _ in #"{"model":"H100-80GB","memoryMiB":81559}"# }.joined(separator: ","))]}"#)
            #expect(taken.status == .created, "\(taken.text)")
            #expect(taken.json["node"]?["id"]?.int == Int64(node.id), "the name keeps its node id")
        }
    }

    // Finding 6: a token with an expiry minted tokens without one.
    @Test func aMintedTokenDoesNotOutliveItsParent() async throws {
        let fixture = try await Fixture.make()
        try await fixture.test { api in
            let short = try await api.post("/v1/tokens", token: fixture.admin, body: #"{"name":"ci","expiresInSeconds":60}"#).json
            let parent = short["token"]?.string
            let child = try await api.post("/v1/tokens", token: parent, body: #"{"name":"child"}"#)
            #expect(child.status == .created)
            #expect(child.json["expiresAt"]?.string == short["expiresAt"]?.string, "the child expires with its parent")
            let longer = try await api.post("/v1/tokens", token: parent, body: #"{"name":"longer","expiresInSeconds":3600}"#)
            #expect(longer.status == .unprocessableContent, "\(longer.text)")
            fixture.clock.advance(by: .seconds(61))
            #expect(try await api.get("/v1/jobs", token: child.json["token"]?.string).status == .unauthorized)
        }
    }

    // Finding 7: any member could submit at priority high and preempt other projects' work.
    @Test func aProjectsPriorityCeilingIsTheClusterAdminsToRaise() async throws {
        let fixture = try await Fixture.make()
        try await fixture.test { api in
            let alice = try await api.member("alice", of: "vision", role: "admin")
            let high = #"{"project":"vision","command":["x"],"priority":"high"}"#
            let refused = try await api.post("/v1/jobs", token: alice, body: high)
            #expect(refused.status == .forbidden, "\(refused.text)")
            #expect(refused.detail.contains("--max-priority high"))
            #expect(try await api.post("/v1/jobs", token: alice, body: #"{"project":"vision","command":["x"],"priority":"normal"}"#).status == .created)
            // A project admin is not a cluster admin.
            #expect(try await api.call(.patch, "/v1/projects/vision", token: alice, body: #"{"maxPriority":"high"}"#).status == .forbidden)
            #expect(try await api.call(.patch, "/v1/projects/vision", token: fixture.admin, body: #"{"maxPriority":"urgent"}"#).status == .badRequest)
            let raised = try await api.call(.patch, "/v1/projects/vision", token: fixture.admin, body: #"{"maxPriority":"high"}"#)
            #expect(raised.json["maxPriority"]?.string == "high")
            #expect(try await api.post("/v1/jobs", token: alice, body: high).status == .created)
            // Durable: a restarted server keeps the ceiling.
            let restarted = try await fixture.restarted()
            let ceiling = try await restarted.test { api throws -> String? in
                try await api.get("/v1/projects/vision", token: fixture.admin).json["maxPriority"]?.string
            }
            #expect(ceiling == "high")
        }
    }

    // Findings 8 and 9: a 1 MB env value was accepted and could never start; env and command
    // are bounded at submission, with a clear 400.
    @Test(arguments: [
        (#""env":{"BIG":"\#(String(repeating: "x", count: 70_000))"}"#, "the command and env take"),
        (#""env":{"A":"x\u0000y"}"#, "env A holds a NUL byte"),
        (#""env":{"1BAD":"x"}"#, "env name 1BAD must be"),
        (#""env":{"A=B":"x"}"#, "env name A=B must be"),
        (#""name":"\#(String(repeating: "e\u{301}", count: 100))""#, "name is longer than 128 bytes"),
        (#""name":"evil\u202Egpj.exe""#, "name holds a control character (U+202E)"),
    ])
    func launchesThatCannotStartAreRefusedAtSubmission(field: String, detail: String) async throws {
        let fixture = try await Fixture.make()
        try await fixture.test { api in
            let reply = try await api.post("/v1/jobs", token: fixture.admin, body: #"{"project":"default","command":["python"],\#(field)}"#)
            #expect(reply.status == .badRequest, "\(reply.text.prefix(300))")
            #expect(reply.detail.contains(detail), "\(reply.detail)")
        }
    }

    @Test func aProjectCannotQueueMoreThanItsLimit() async throws {
        var configuration = ControlPlaneConfiguration()
        configuration.maxPendingJobsPerProject = 3
        let fixture = try await Fixture.make(configuration: configuration)
        try await fixture.test { api in
            let bob = try await api.member("bob", of: "speech", role: "member")
            for _ in 0..<3 { _ = try await api.submit(fixture.admin) }
            let refused = try await api.post("/v1/jobs", token: fixture.admin, body: #"{"project":"default","command":["x"]}"#)
            #expect(refused.status == .tooManyRequests)
            #expect(refused.headers[.retryAfter] != nil)
            // Another project is not held back by it.
            _ = try await api.submit(bob, project: "speech")
            // Once one starts, there is room again.
            _ = try await api.register("n1", gpus: 1)
            try await fixture.schedule()
            _ = try await api.submit(fixture.admin)
        }
    }

    // Finding 10: control characters in subjects and token names, any Content-Type, long ids echoed.
    @Test func namesContentTypesAndEchoesAreBounded() async throws {
        let fixture = try await Fixture.make()
        try await fixture.test { api in
            let subject = "eve%0Aadmin"
            let member = try await api.call(.put, "/v1/projects/default/members/\(subject)", token: fixture.admin, body: #"{"role":"member"}"#)
            #expect(member.status == .unprocessableContent, "\(member.text)")
            let token = try await api.post("/v1/tokens", token: fixture.admin, body: #"{"name":"ok\u001b[31m"}"#)
            #expect(token.status == .unprocessableContent, "\(token.text)")
            let form = try await api.post("/v1/jobs", token: fixture.admin, body: #"{"project":"default","command":["x"]}"#,
                                          headers: ["Content-Type": "application/x-www-form-urlencoded"])
            #expect(form.status == .unsupportedMediaType)
            let charset = try await api.post("/v1/jobs", token: fixture.admin, body: #"{"project":"default","command":["x"]}"#,
                                             headers: ["Content-Type": "application/json; charset=utf-8"])
            #expect(charset.status == .created)
            let long = String(repeating: "9", count: 50_000)
            let missing = try await api.get("/v1/jobs/\(long)", token: fixture.admin)
            #expect(missing.status == .notFound)
            #expect(missing.text.utf8.count < 400, "a 404 does not echo the id: \(missing.text.prefix(200))")
        }
        // (The SQLite file's mode; PostgreSQL's files are its server's.)
        if !Fixture.usesPostgres {
            let mode = try FileManager.default.attributesOfItem(atPath: fixture.path)[.posixPermissions] as? Int
            #expect(mode == 0o600, "the database is readable by its owner only")
        }
    }

    // Finding 5: one token flooding the API raised another tenant's latency 25-fold.
    @Test func aTokenThatSpendsItsRateIsRefusedAndItsNeighbourIsNot() async throws {
        let fixture = try await Fixture.make()
        var limits = RequestLimits()
        limits.requestsPerSecond = 5
        limits.burst = 10
        try await fixture.test(limits: limits) { api in
            let alice = try await api.member("alice", of: "vision", role: "member")
            let bob = try await api.member("bob", of: "speech", role: "member")
            for _ in 0..<10 { #expect(try await api.get("/v1/jobs?limit=1", token: alice).status == .ok) }
            let refused = try await api.get("/v1/jobs?limit=1", token: alice)
            #expect(refused.status == .tooManyRequests)
            #expect(refused.headers[.retryAfter] == "1")
            #expect(try await api.get("/v1/jobs", token: bob).status == .ok, "the neighbour is served")
            // A page of 500 costs 6 requests: heavy lists spend the budget faster.
            fixture.clock.advance(by: .seconds(2))
            #expect(try await api.get("/v1/jobs?limit=500", token: alice).status == .ok)
            #expect(try await api.get("/v1/jobs?limit=500", token: alice).status == .tooManyRequests)
            // Probes are never limited, the cluster admin is exempt.
            for _ in 0..<30 { #expect(try await api.get("/healthz", token: nil).status == .ok) }
            for _ in 0..<30 { #expect(try await api.get("/v1/jobs?limit=1", token: fixture.admin).status == .ok) }
        }
    }

    @Test func aLargeReplyIsChargedByItsSize() async throws {
        let fixture = try await Fixture.make()
        var limits = RequestLimits()
        limits.requestsPerSecond = 5
        limits.burst = 10
        try await fixture.test(limits: limits) { api in
            let alice = try await api.member("alice", of: "default", role: "member")
            let padding = String(repeating: "x", count: 60_000)
            for _ in 0..<5 { _ = try await api.submit(fixture.admin, extra: #","env":{"PAD":"\#(padding)"}"#) }
            // ~300 KB of jobs: 1 request up front, then one more per 16 KiB once its size is known.
            #expect(try await api.get("/v1/jobs?limit=5", token: alice).status == .ok)
            #expect(try await api.get("/v1/jobs?limit=1", token: alice).status == .tooManyRequests, "the page's size is owed first")
            fixture.clock.advance(by: .seconds(6))
            #expect(try await api.get("/v1/jobs?limit=1", token: alice).status == .ok, "paid back at the token's rate")
        }
    }

    // Finding 4: ~20,000 open long polls ran the server out of descriptors.
    @Test func longPollsAreCappedPerToken() async throws {
        let fixture = try await Fixture.make()
        var limits = RequestLimits.unlimited
        limits.longPollsPerToken = 1
        let server = APIServer(controlPlane: fixture.controlPlane, metrics: APIMetrics(), limits: limits, clock: fixture.clock)
        try await fixture.test(server: server) { api in
            let job = try await api.submit(fixture.admin)
            let alice = try await api.member("alice", of: "default", role: "member")
            let version = try await api.get("/v1/jobs/\(job)", token: alice).headers[HTTPField.Name("X-FastGPU-Index")!] ?? "0"
            async let waiting = api.get("/v1/jobs/\(job)?index=\(version)&wait=60s", token: alice)
            while server.longPolls.count < 1 { await Task.yield() }
            let second = try await api.get("/v1/jobs/\(job)?index=\(version)&wait=60s", token: alice)
            #expect(second.status == .tooManyRequests, "\(second.text)")
            #expect(try await api.get("/v1/jobs/\(job)", token: alice).status == .ok, "a plain read is not a long poll")
            // The change answers the first one, and its slot is free again.
            #expect(try await api.post("/v1/jobs/\(job)/cancel", token: fixture.admin).status == .ok)
            #expect(try await waiting.json["state"]?.string == "cancelled")
            #expect(server.longPolls.count == 0)
        }
    }
}
