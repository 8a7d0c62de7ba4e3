import FastGPUControlPlane
import FastGPUModel
import FastGPUScheduler
import Foundation
import HTTPTypes
import Testing

/// Start estimates from learned run times, with the server's default policy: jobs without an
/// estimate or limit get a start once similar jobs have finished, labelled as learned.
@Suite("API: learned start estimates")
struct LearnedEstimatesAPITests {
    static func date(_ text: String?) -> Date? {
        let format = ISO8601DateFormatter()
        format.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return text.flatMap { format.date(from: $0) ?? ISO8601DateFormatter().date(from: $0) }
    }

    @Test func afterSomeFinishedJobsAPendingJobOnAFullClusterGetsALearnedStart() async throws {
        let fixture = try await Fixture.make(configuration: .running(SchedulingPolicy.named(SchedulingPolicy.defaultName)!))
        try await fixture.test { api in
            let (node, credential) = try await api.register("n1", gpus: 8)
            func report(_ job: UInt64, _ body: String, expected: HTTPResponse.Status = .noContent) async throws {
                let allocation = try #require(try await api.get("/v1/jobs/\(job)", token: fixture.admin).json["allocations"]?[0])
                let id = allocation["id"]?.int ?? 0
                let epoch = allocation["epoch"]?.int ?? 0
                let reply = try await api.post("/v1/nodes/\(node)/allocations/\(id)/status", token: credential, body: #"{"epoch":\#(epoch),\#(body)}"#)
                #expect(reply.status == expected, "\(reply.text)")
            }

            // Nothing has finished, so nothing is learned: no run time is made up. On a cluster
            // that knows nothing the policy ranks by what each job has run (least attained
            // service), so the fresh job displaces the running one once its grace (8 restarts of
            // 30 s) is over: that is its estimate, resting on no learned figure.
            var job = try await api.submit(fixture.admin, gpus: 8)
            #expect(try await fixture.schedule() == 1)
            try await report(job, #""state":"running""#)
            let firstStart = try #require(Self.date(try await api.get("/v1/jobs/\(job)", token: fixture.admin).json["allocations"]?[0]?["startedAt"]?.string))
            let behind = try await api.submit(fixture.admin, gpus: 8)
            #expect(try await fixture.schedule() == 0)
            let cold = try await api.get("/v1/jobs/\(behind)", token: fixture.admin).json["queue"]
            #expect(abs((Self.date(cold?["estimatedStart"]?.string) ?? .distantPast).timeIntervalSince(firstStart) - 240) < 1, "\(String(describing: cold))")
            #expect(cold?["estimatedStartBasis"]?.string == "given")
            _ = try await api.post("/v1/jobs/\(behind)/cancel", token: fixture.admin)

            // Three 8-GPU jobs of the same person run 600 s each, one after another.
            for round in 0..<3 {
                if round > 0 {
                    job = try await api.submit(fixture.admin, gpus: 8)
                    #expect(try await fixture.schedule() == 1)
                    try await report(job, #""state":"running""#)
                }
                fixture.clock.advance(by: .seconds(600))
                try await report(job, #""state":"exited","exitCode":0"#)
            }

            // One like them runs for 100 s; the next waits on the full node.
            let running = try await api.submit(fixture.admin, gpus: 8)
            #expect(try await fixture.schedule() == 1)
            try await report(running, #""state":"running""#)
            fixture.clock.advance(by: .seconds(100))
            let waiting = try await api.submit(fixture.admin, gpus: 8)
            #expect(try await fixture.schedule() == 0)

            let started = try #require(Self.date(try await api.get("/v1/jobs/\(running)", token: fixture.admin).json["allocations"]?[0]?["startedAt"]?.string))
            let queue = try await api.get("/v1/queue", token: fixture.admin).json["items"]?.array ?? []
            let item = try #require(queue.first { $0["job"]?.int == Int64(waiting) })
            // Learned: jobs like the running one ran 600 s, so it ends 600 s after it started.
            let start = try #require(Self.date(item["estimatedStart"]?.string))
            #expect(abs(start.timeIntervalSince(started) - 600) < 1, "estimated start \(start), running since \(started)")
            #expect(item["estimatedStartBasis"]?.string == "learned")
            let place = try await api.get("/v1/jobs/\(waiting)", token: fixture.admin).json["queue"]
            #expect(place?["estimatedStartBasis"]?.string == "learned")
            #expect(place?["estimatedStart"]?.string == item["estimatedStart"]?.string)

            // A user's own limit is not learned: the basis says so.
            _ = try await api.post("/v1/jobs/\(waiting)/cancel", token: fixture.admin)
            _ = try await api.post("/v1/jobs/\(running)/cancel", token: fixture.admin)
            // Cancelled: its allocation ended, so the agent's late report is refused as stale.
            try await report(running, #""state":"exited","exitCode":143"#, expected: .conflict)
            let limited = try await api.submit(fixture.admin, gpus: 8, extra: #","maxRuntimeSeconds":900"#)
            #expect(try await fixture.schedule() == 1)
            let next = try await api.submit(fixture.admin, gpus: 8, extra: #","maxRuntimeSeconds":900"#)
            #expect(try await fixture.schedule() == 0)
            let given = try await api.get("/v1/jobs/\(next)", token: fixture.admin).json["queue"]
            #expect(given?["estimatedStart"]?.string != nil)
            #expect(given?["estimatedStartBasis"]?.string == "given", "\(String(describing: given)) after \(limited)")
        }
    }

    @Test func whatWasLearnedComesBackFromTheStoreAfterARestart() async throws {
        let fixture = try await Fixture.make(configuration: .running(SchedulingPolicy.named(SchedulingPolicy.defaultName)!))
        let node = try await fixture.test { api in
            let (node, credential) = try await api.register("n1", gpus: 8)
            for _ in 0..<3 {
                let job = try await api.submit(fixture.admin, gpus: 8)
                #expect(try await fixture.schedule() == 1)
                let allocation = try #require(try await api.get("/v1/jobs/\(job)", token: fixture.admin).json["allocations"]?[0])
                let path = "/v1/nodes/\(node)/allocations/\(allocation["id"]?.int ?? 0)/status"
                let epoch = allocation["epoch"]?.int ?? 0
                #expect(try await api.post(path, token: credential, body: #"{"epoch":\#(epoch),"state":"running"}"#).status == .noContent)
                fixture.clock.advance(by: .seconds(300))
                #expect(try await api.post(path, token: credential, body: #"{"epoch":\#(epoch),"state":"exited","exitCode":0}"#).status == .noContent)
            }
            return node
        }
        let restarted = try await fixture.restarted()
        try await restarted.test { api in
            let running = try await api.submit(restarted.admin, gpus: 8)
            #expect(try await restarted.schedule() == 1)
            let waiting = try await api.submit(restarted.admin, gpus: 8)
            #expect(try await restarted.schedule() == 0)
            let started = try #require(Self.date(try await api.get("/v1/jobs/\(running)", token: restarted.admin).json["allocations"]?[0]?["startedAt"]?.string))
            let place = try await api.get("/v1/jobs/\(waiting)", token: restarted.admin).json["queue"]
            // The three finished jobs ran 300 s each: the restarted server knows it from the store.
            #expect(place?["estimatedStartBasis"]?.string == "learned", "\(String(describing: place)) on node \(node)")
            #expect(abs((Self.date(place?["estimatedStart"]?.string) ?? .distantPast).timeIntervalSince(started) - 300) < 1)
        }
    }
}
