import FastGPUControlPlane
import FastGPUModel
import Foundation
import Hummingbird
import Testing

@Suite("API: jobs")
struct JobsAPITests {
    @Test func submitThenReadListAndCancel() async throws {
        let fixture = try await Fixture.make()
        try await fixture.test { api in
            let created = try await api.post("/v1/jobs", token: fixture.admin, body: """
                {"project":"default","name":"train","command":["python","train.py"],"env":{"LR":"0.1"},
                 "resources":{"gpus":2,"gpuModel":"H100","cpuMillis":8000,"memoryMiB":65536},"priority":"high","maxRuntimeSeconds":3600}
                """)
            #expect(created.status == .created)
            #expect(created.headers[.location] == "/v1/jobs/1")
            let job = created.json
            #expect(job["id"]?.int == 1)
            #expect(job["name"]?.string == "train")
            #expect(job["state"]?.string == "pending")
            #expect(job["gpus"]?.string == "2")
            #expect(job["gpuModel"]?.string == "H100")
            #expect(job["priority"]?.string == "high")
            #expect(job["submitter"]?.string == "admin")
            #expect(job["env"]?["LR"]?.string == "0.1")
            #expect(job["maxRuntimeSeconds"]?.int == 3600)
            #expect(job["queue"]?["position"]?.int == 1, "pending and not yet seen by a pass: behind everything")

            let read = try await api.get("/v1/jobs/job-1", token: fixture.admin)
            #expect(read.status == .ok)
            #expect(read.json["name"]?.string == "train")
            #expect(try await api.get("/v1/jobs/1", token: fixture.admin).json == read.json, "job-1 and 1 name the same job")

            let list = try await api.get("/v1/jobs", token: fixture.admin)
            #expect(list.json["items"]?.array.count == 1)

            let cancelled = try await api.post("/v1/jobs/1/cancel", token: fixture.admin)
            #expect(cancelled.status == .ok)
            #expect(cancelled.json["state"]?.string == "cancelled")
            #expect(cancelled.json["finishedAt"]?.string != nil)
            #expect(try await api.post("/v1/jobs/1/cancel", token: fixture.admin).json["state"]?.string == "cancelled", "cancel is idempotent")

            let events = try await api.get("/v1/jobs/1/events", token: fixture.admin)
            #expect(events.json["items"]?.array.compactMap { $0["kind"]?.string } == ["submitted", "cancelled"])
            #expect(try await api.get("/v1/jobs/99", token: fixture.admin).status == .notFound)
            #expect(try await api.get("/v1/jobs/banana", token: fixture.admin).status == .notFound)
        }
    }

    @Test func aPlacedJobShowsItsAllocationAndAPendingOneItsReasonAndStart() async throws {
        let fixture = try await Fixture.make()
        try await fixture.test { api in
            _ = try await api.register("n1", gpus: 8)
            let first = try await api.submit(fixture.admin, gpus: 8, extra: #","estimatedRuntimeSeconds":600"#)
            let second = try await api.submit(fixture.admin, gpus: 8)
            let never = try await api.submit(fixture.admin, gpus: 16)
            #expect(try await fixture.schedule() == 1)

            let running = try await api.get("/v1/jobs/\(first)", token: fixture.admin).json
            #expect(running["state"]?.string == "running")
            #expect(running["attempts"]?.int == 1)
            #expect(running["allocations"]?[0]?["devices"]?.array.count == 8)
            #expect(running["allocations"]?[0]?["report"]?.string == "assigned")
            #expect(running["queue"] == nil)

            let waiting = try await api.get("/v1/jobs/\(second)", token: fixture.admin).json
            #expect(waiting["queue"]?["position"]?.int == 1)
            #expect(waiting["queue"]?["reason"]?["kind"]?.string == "notNow")
            #expect(waiting["queue"]?["reason"]?["code"]?.string == "gpus")
            #expect(waiting["queue"]?["reason"]?["jobsAhead"]?.int == 0)
            #expect(waiting["queue"]?["reason"]?["message"]?.string?.contains("no ready node has 8 free") == true)
            let start = waiting["queue"]?["estimatedStart"]?.string
            #expect(start != nil, "the running job has an estimate, so the next one gets a start")

            let hopeless = try await api.get("/v1/jobs/\(never)", token: fixture.admin).json
            #expect(hopeless["queue"]?["reason"]?["kind"]?.string == "never")
            #expect(hopeless["queue"]?["reason"]?["code"]?.string == "taskLargerThanAnyNode")
            #expect(hopeless["queue"]?["reason"]?["message"]?.string == "never: one task needs 16 GPUs; the largest node has 8")

            let queue = try await api.get("/v1/queue", token: fixture.admin).json["items"]?.array ?? []
            #expect(queue.compactMap { $0["job"]?.int } == [Int64(second), Int64(never)])
            #expect(queue.compactMap { $0["position"]?.int } == [1, 2])
            #expect(queue.first?["estimatedStart"]?.string == start)
        }
    }

    @Test(arguments: [
        (#"{"project":"default","command":["x"],"state":"running"}"#, "field 'state' is not accepted"),
        (#"{"project":"default","command":["x"],"epoch":3}"#, "field 'epoch' is not accepted"),
        (#"{"project":"default","command":["x"],"resources":{"gpus":1,"node":"n1"}}"#, "field 'resources.node' is not accepted"),
        (#"{"project":"default"}"#, "field 'command' is required"),
        (#"{"project":"default","command":"python"}"#, "field 'command': expected an array"),
        (#"{"project":"default","command":["x"],"resources":{"gpus":"abc"}}"#, "field 'resources.gpus': expected an integer"),
        (#"{"project":"default","command":[]}"#, "command needs at least a program"),
        (#"{"project":"default","command":["x"],"resources":{"gpus":1,"mig":"1g.10gb"}}"#, "ask for whole GPUs (gpus), a share (gpuMemoryMiB, gpuMilli) or a MIG profile (mig), not several"),
        (#"{"project":"default","command":["x"],"priority":"urgent"}"#, "priority must be low, normal or high, not urgent"),
        (#"{"project":"default","command":["x"],"tasks":0}"#, "tasks must be 1 to 4096"),
        (#"{"project":"default","command":["x"],"maxRuntimeSeconds":0}"#, "maxRuntimeSeconds must be positive"),
        (#"{"project":"default","command":["x"],"resources":{"gpuMilli":1000}}"#, "gpuMilli must be 1 to 999 (1000 is a whole GPU: ask gpus: 1)"),
        (#"{"project":"default","command":["x"]"#, "the body is not valid JSON"),
        ("", "a JSON body is required"),
    ])
    func badSubmissionsAreRefusedByNameAndChangeNothing(body: String, detail: String) async throws {
        let fixture = try await Fixture.make()
        try await fixture.test { api in
            let reply = try await api.call(.post, "/v1/jobs", token: fixture.admin, body: body)
            #expect(reply.status == .badRequest)
            #expect(reply.detail == detail)
            #expect(try await api.get("/v1/jobs", token: fixture.admin).json["items"]?.array.isEmpty == true)
        }
    }

    @Test func unknownProjectIsNotFoundAndAnUnknownRouteIsAProblemToo() async throws {
        let fixture = try await Fixture.make()
        try await fixture.test { api in
            let reply = try await api.post("/v1/jobs", token: fixture.admin, body: #"{"project":"nope","command":["x"]}"#)
            #expect(reply.status == .notFound)
            #expect(reply.detail == "project nope not found")
            let route = try await api.client.execute(uri: "/v1/nothing", method: .get, headers: [.authorization: "Bearer \(fixture.admin)"], body: nil)
            #expect(route.status == .notFound)
            #expect(route.headers[.contentType] == "application/problem+json")
        }
    }

    @Test func aRetriedSubmissionWithTheSameKeyReturnsTheSameJob() async throws {
        let fixture = try await Fixture.make()
        try await fixture.test { api in
            let body = #"{"project":"default","command":["python","train.py"]}"#
            let first = try await api.post("/v1/jobs", token: fixture.admin, body: body, headers: ["Idempotency-Key": "abc"])
            let retry = try await api.post("/v1/jobs", token: fixture.admin, body: body, headers: ["Idempotency-Key": "abc"])
            #expect(first.status == .created)
            #expect(retry.status == .ok)
            #expect(retry.json["id"] == first.json["id"])
            // The same request with its keys in another order and other spacing is the same request.
            let reordered = try await api.post("/v1/jobs", token: fixture.admin, body: #"{ "command": ["python", "train.py"], "project": "default" }"#,
                                               headers: ["Idempotency-Key": "abc"])
            #expect(reordered.status == .ok && reordered.json["id"] == first.json["id"], "\(reordered.text)")
            let other = try await api.post("/v1/jobs", token: fixture.admin, body: #"{"project":"default","command":["other"]}"#, headers: ["Idempotency-Key": "abc"])
            #expect(other.status == .conflict)
            #expect(other.detail == "Idempotency-Key abc was used for a different request")
            // Keys belong to the caller: someone else's "abc" is their own submission.
            let bob = try await api.member("bob", of: "default", role: "member")
            let bobs = try await api.post("/v1/jobs", token: bob, body: body, headers: ["Idempotency-Key": "abc"])
            #expect(bobs.status == .created)
            #expect(bobs.json["id"] != first.json["id"])
            #expect(try await api.get("/v1/jobs", token: fixture.admin).json["items"]?.array.count == 2)
        }
    }

    @Test func aKeyIsRememberedForItsRetentionOnly() async throws {
        let fixture = try await Fixture.make()
        try await fixture.test { api in
            let body = #"{"project":"default","command":["python","train.py"]}"#
            let first = try await api.post("/v1/jobs", token: fixture.admin, body: body, headers: ["Idempotency-Key": "daily"])
            fixture.clock.advance(by: .seconds(23 * 3600))
            #expect(try await api.post("/v1/jobs", token: fixture.admin, body: body, headers: ["Idempotency-Key": "daily"]).json["id"] == first.json["id"])
            fixture.clock.advance(by: .seconds(2 * 3600))
            try await fixture.controlPlane.expireIdempotencyKeys()
            let later = try await api.post("/v1/jobs", token: fixture.admin, body: body, headers: ["Idempotency-Key": "daily"])
            #expect(later.status == .created, "after 24 h the same key is a new submission")
            #expect(later.json["id"] != first.json["id"])
        }
        let restarted = try await fixture.restarted()
        try await restarted.test { api in
            let again = try await api.post("/v1/jobs", token: fixture.admin, body: #"{"project":"default","command":["python","train.py"]}"#, headers: ["Idempotency-Key": "daily"])
            #expect(again.status == .ok, "the renewed key survived the restart")
        }
    }

    @Test func concurrentRetriesCreateOneJob() async throws {
        let fixture = try await Fixture.make()
        try await fixture.test { api in
            let body = #"{"project":"default","command":["python","train.py"]}"#
            let ids = try await withThrowingTaskGroup(of: Int64?.self) { group in
                for _ in 0..<8 {
                    group.addTask { try await api.post("/v1/jobs", token: fixture.admin, body: body, headers: ["Idempotency-Key": "same"]).json["id"]?.int }
                }
                return try await group.reduce(into: Set<Int64?>()) { $0.insert($1) }
            }
            #expect(ids == [1])
        }
    }

    @Test func pagesAreClampedAndFollowTheCursor() async throws {
        var configuration = ControlPlaneConfiguration()
        configuration.maxPageSize = 4
        let fixture = try await Fixture.make(configuration: configuration)
        try await fixture.test { api in
            for _ in 0..<10 { _ = try await api.submit(fixture.admin) }
            let first = try await api.get("/v1/jobs?limit=3", token: fixture.admin).json
            #expect(first["items"]?.array.compactMap { $0["id"]?.int } == [1, 2, 3])
            #expect(first["next"]?.string == "3")
            let clamped = try await api.get("/v1/jobs?limit=1000&after=3", token: fixture.admin).json
            #expect(clamped["items"]?.array.compactMap { $0["id"]?.int } == [4, 5, 6, 7], "clamped to the largest page")
            let last = try await api.get("/v1/jobs?limit=4&after=7", token: fixture.admin).json
            #expect(last["items"]?.array.compactMap { $0["id"]?.int } == [8, 9, 10])
            #expect(last["next"] == nil)
            #expect(try await api.get("/v1/jobs?limit=0", token: fixture.admin).status == .badRequest)
            #expect(try await api.get("/v1/jobs?state=sleeping", token: fixture.admin).status == .badRequest)
            _ = try await api.post("/v1/jobs/2/cancel", token: fixture.admin)
            let cancelled = try await api.get("/v1/jobs?state=cancelled", token: fixture.admin).json
            #expect(cancelled["items"]?.array.compactMap { $0["id"]?.int } == [2])
        }
    }
}

@Suite("API: edges found by fuzzing")
struct FuzzFoundTests {
    @Test func hugeCapacitiesAreRefusedNotOverflowed() async throws {
        let fixture = try await Fixture.make()
        try await fixture.test { api in
            let join = try await api.post("/v1/tokens", token: fixture.admin, body: #"{"name":"join","kind":"join"}"#).json["token"]?.string
            let huge = try await api.post("/v1/nodes/register", token: join,
                                          body: #"{"name":"n","cpuMillis":137,"memoryMiB":1641563386619008256,"gpus":[{"model":"H100","memoryMiB":43355986843}]}"#)
            #expect(huge.status == .badRequest)
            let long = try await api.post("/v1/jobs", token: fixture.admin, body: #"{"project":"default","command":["x"],"maxRuntimeSeconds":9223372036854775807}"#)
            #expect(long.status == .badRequest)
            #expect(long.detail == "runtimes must be at most 315360000 seconds")
        }
    }

    @Test func nullIsNotAbsentAndEmptyQueryValuesAre() async throws {
        let fixture = try await Fixture.make()
        try await fixture.test { api in
            let null = try await api.post("/v1/projects", token: fixture.admin, body: #"{"name":"x","weight":null}"#)
            #expect(null.status == .badRequest)
            #expect(null.detail == "field 'weight' must not be null; leave it out instead")
            #expect(try await api.get("/v1/jobs?project=&limit=1&after=", token: fixture.admin).status == .ok)
        }
    }

    @Test func aWrongMethodIs405WithTheAllowedOnes() async throws {
        let fixture = try await Fixture.make()
        try await fixture.test { api in
            let reply = try await api.client.execute(uri: "/v1/nodes/register", method: .get, headers: [.authorization: "Bearer \(fixture.admin)"], body: nil)
            #expect(reply.status == .methodNotAllowed, "a literal segment wins: /v1/nodes/register answers POST only")
            #expect(reply.headers[.allow] == "POST")
            let delete = try await api.client.execute(uri: "/v1/jobs", method: .delete, headers: [:], body: nil)
            #expect(delete.status == .methodNotAllowed)
            #expect(delete.headers[.allow] == "GET, POST")
            let options = try await api.client.execute(uri: "/v1/nodes/register", method: .options, headers: [:], body: nil)
            #expect(options.headers[.allow] == "POST")
            #expect(try await api.get("/healthz", token: "fgpu_broken").status == .ok, "a bad token does not matter where none is needed")
        }
    }
}
