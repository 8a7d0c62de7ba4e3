@testable import FastGPUControlPlane
import FastGPUModel
import Foundation
import Hummingbird
import Testing

@Suite("API: nodes and agents")
struct AgentAPITests {
    /// A node whose driver lost a GPU registers with it (size 0, unhealthy): the other GPUs keep
    /// the driver's indices, and nothing is placed on the lost one.
    @Test func aNodeWithALostGPURegistersAndKeepsItsIndices() async throws {
        let fixture = try await Fixture.make()
        try await fixture.test { api in
            let join = try await api.post("/v1/tokens", token: fixture.admin, body: #"{"name":"join","kind":"join"}"#).json["token"]?.string
            let zeroButHealthy = try await api.post("/v1/nodes/register", token: join, body: #"{"name":"n","cpuMillis":1000,"memoryMiB":1024,"gpus":[{"model":"H100-80GB","memoryMiB":0}]}"#)
            #expect(zeroButHealthy.status == .badRequest)
            let body = #"{"name":"half-lost","cpuMillis":64000,"memoryMiB":65536,"gpus":[{"model":"H100-80GB","memoryMiB":0,"healthy":false,"healthReason":"[GPU is lost]"},{"model":"H100-80GB","memoryMiB":81559}]}"#
            let reply = try await api.post("/v1/nodes/register", token: join, body: body)
            #expect(reply.status == .created, "\(reply.text)")
            let gpus = reply.json["node"]?["gpus"]?.array ?? []
            #expect(gpus.map { $0["healthy"]?.bool } == [false, true])
            #expect(gpus.first?["healthReason"]?.string == "[GPU is lost]")
            let two = try await api.submit(fixture.admin, gpus: 2)
            let one = try await api.submit(fixture.admin, gpus: 1)
            try await fixture.schedule()
            #expect(try await api.get("/v1/jobs/\(two)", token: fixture.admin).json["state"]?.string == "pending")
            let placed = try await api.get("/v1/jobs/\(one)", token: fixture.admin).json
            #expect(placed["allocations"]?[0]?["devices"]?.array.compactMap(\.string) == ["gpu1"])
            #expect(placed["allocations"]?[0]?["slots"]?[0]?["kind"]?.string == "whole")
            #expect(placed["allocations"]?[0]?["slots"]?[0]?["gpu"]?.int == 1)
            // Events are told with names, and say who asked.
            let events = try await api.get("/v1/jobs/\(one)/events", token: fixture.admin).json["items"]?.array ?? []
            #expect(events.first?["message"]?.string == "submitted to default")
            #expect(events.first?["actor"]?.string == "admin")
            #expect(events.last?["message"]?.string?.hasPrefix("task 0/0 placed on half-lost with gpu1") == true, "\(events)")
            #expect(events.last?["actor"] == nil, "the scheduler placed it")
        }
    }

    @Test func anAgentRunsAnAllocationFromAssignmentToExit() async throws {
        let fixture = try await Fixture.make()
        try await fixture.test { api in
            let (node, credential) = try await api.register("gpu-01", gpus: 8)
            let empty = try await api.get("/v1/nodes/\(node)/assignments", token: credential).json
            #expect(empty["allocations"]?.array.isEmpty == true)
            let index = empty["index"]?.int ?? 0

            // The blocking query answers when the plan commits, not when it times out.
            async let waited = api.get("/v1/nodes/\(node)/assignments?index=\(index)&wait=5m", token: credential)
            let job = try await api.submit(fixture.admin, gpus: 2, extra: #","tasks":1,"maxRuntimeSeconds":120"#)
            try await fixture.schedule()
            let assignments = try await waited.json
            #expect((assignments["index"]?.int ?? 0) > index)
            let assignment = try #require(assignments["allocations"]?[0])
            #expect(assignment["job"]?.int == Int64(job))
            #expect(assignment["command"]?.array.compactMap(\.string) == ["python", "train.py"])
            #expect(assignment["allocation"]?["devices"]?.array.compactMap(\.string) == ["gpu0", "gpu1"])
            #expect(assignment["maxRuntimeSeconds"]?.int == 120)
            let allocation = assignment["allocation"]?["id"]?.int ?? 0
            let epoch = assignment["allocation"]?["epoch"]?.int ?? 0

            let stale = try await api.post("/v1/nodes/\(node)/allocations/\(allocation)/status", token: credential, body: #"{"epoch":\#(epoch - 1),"state":"running"}"#)
            #expect(stale.status == .conflict)
            #expect(stale.detail.hasPrefix("stale epoch"))
            #expect(try await api.post("/v1/nodes/\(node)/allocations/\(allocation)/status", token: credential, body: #"{"epoch":\#(epoch),"state":"running"}"#).status == .noContent)
            #expect(try await api.get("/v1/jobs/\(job)", token: fixture.admin).json["allocations"]?[0]?["report"]?.string == "running")

            let upload = #"{"chunks":[{"sequence":0,"stream":"stdout","text":"epoch 1\n"},{"sequence":1,"stream":"stderr","text":"warning\n"}]}"#
            #expect(try await api.post("/v1/nodes/\(node)/allocations/\(allocation)/logs", token: credential, body: upload).status == .noContent)
            #expect(try await api.post("/v1/nodes/\(node)/allocations/\(allocation)/logs", token: credential, body: upload).status == .noContent, "a retried upload")
            #expect(try await api.post("/v1/nodes/\(node)/allocations/\(allocation)/logs", token: credential,
                                       body: #"{"chunks":[{"sequence":2,"stream":"stdout","text":"epoch 2\n"}]}"#).status == .noContent)
            #expect(try await api.post("/v1/nodes/\(node)/allocations/\(allocation)/status", token: credential,
                                       body: #"{"epoch":\#(epoch),"state":"exited"}"#).status == .badRequest)
            #expect(try await api.post("/v1/nodes/\(node)/allocations/\(allocation)/status", token: credential,
                                       body: #"{"epoch":\#(epoch),"state":"exited","exitCode":0}"#).status == .noContent)

            let done = try await api.get("/v1/jobs/\(job)", token: fixture.admin).json
            #expect(done["state"]?.string == "succeeded")
            #expect(done["allocations"]?[0]?["outcome"]?.string == "succeeded")
            #expect(done["allocations"]?[0]?["live"]?.bool == false)
            let logs = try await api.get("/v1/jobs/\(job)/logs?follow=true", token: fixture.admin)
            #expect(logs.headers[.contentType] == "application/x-ndjson")
            let lines = logs.text.split(separator: "\n").compactMap { JSONValue.parse(String($0)) }
            #expect(lines.compactMap { $0["text"]?.string } == ["epoch 1\n", "warning\n", "epoch 2\n"], "in order, once each")
            let second = lines[1]["position"]?.int ?? 0
            let tail = try await api.get("/v1/jobs/\(job)/logs?after=\(second)", token: fixture.admin)
            #expect(tail.text.split(separator: "\n").compactMap { JSONValue.parse(String($0))?["text"]?.string } == ["epoch 2\n"])
            #expect(try await api.get("/v1/jobs/\(job)/logs?after=x", token: fixture.admin).status == .badRequest)
            let kinds = try await api.get("/v1/jobs/\(job)/events", token: fixture.admin).json["items"]?.array.compactMap { $0["kind"]?.string }
            #expect(kinds == ["submitted", "placed", "started", "exited"])
            #expect(try await api.get("/v1/nodes/\(node)/assignments", token: credential).json["allocations"]?.array.isEmpty == true)
        }
    }

    @Test func followingLogsEndsWhenTheJobFinishes() async throws {
        let fixture = try await Fixture.make()
        try await fixture.test { api in
            let (node, credential) = try await api.register("gpu-01", gpus: 1)
            let job = try await api.submit(fixture.admin)
            try await fixture.schedule()
            let assignment = try await api.get("/v1/nodes/\(node)/assignments", token: credential).json["allocations"]?[0]?["allocation"]
            let allocation = assignment?["id"]?.int ?? 0, epoch = assignment?["epoch"]?.int ?? 0
            async let followed = api.get("/v1/jobs/\(job)/logs?follow=true", token: fixture.admin)
            _ = try await api.post("/v1/nodes/\(node)/allocations/\(allocation)/logs", token: credential, body: #"{"chunks":[{"sequence":0,"stream":"stdout","text":"hello\n"}]}"#)
            _ = try await api.post("/v1/nodes/\(node)/allocations/\(allocation)/status", token: credential, body: #"{"epoch":\#(epoch),"state":"exited","exitCode":3}"#)
            let lines = try await followed.text.split(separator: "\n")
            #expect(lines.count == 1)
            #expect(try await api.get("/v1/jobs/\(job)", token: fixture.admin).json["state"]?.string == "failed")
        }
    }

    @Test func cancelStopsTheAllocationOnItsNode() async throws {
        let fixture = try await Fixture.make()
        try await fixture.test { api in
            let (node, credential) = try await api.register("gpu-01", gpus: 8)
            let job = try await api.submit(fixture.admin, gpus: 4)
            try await fixture.schedule()
            let before = try await api.get("/v1/nodes/\(node)/assignments", token: credential).json
            #expect(before["allocations"]?.array.count == 1)
            async let waited = api.get("/v1/nodes/\(node)/assignments?index=\(before["index"]?.int ?? 0)&wait=5m", token: credential)
            _ = try await api.post("/v1/jobs/\(job)/cancel", token: fixture.admin)
            #expect(try await waited.json["allocations"]?.array.isEmpty == true, "the agent learns at once that its allocation is gone")
            let allocation = before["allocations"]?[0]?["allocation"]
            let late = try await api.post("/v1/nodes/\(node)/allocations/\(allocation?["id"]?.int ?? 0)/status", token: credential,
                                          body: #"{"epoch":\#(allocation?["epoch"]?.int ?? 0),"state":"exited","exitCode":143}"#)
            #expect(late.status == .conflict)
            let view = try await api.get("/v1/jobs/\(job)", token: fixture.admin).json
            #expect(view["state"]?.string == "cancelled")
            #expect(view["allocations"]?[0]?["outcome"]?.string == "cancelled")
            #expect(try await api.get("/v1/nodes/\(node)", token: fixture.admin).json["gpus"]?.array.allSatisfy { $0["usage"]?.string == "free" } == true)
        }
    }

    @Test func aSilentNodeGoesDownAndItsJobRunsElsewhere() async throws {
        var configuration = ControlPlaneConfiguration()
        configuration.heartbeatTTL = .seconds(5)
        configuration.heartbeatGrace = .seconds(5)
        configuration.startupGrace = .seconds(30)
        let fixture = try await Fixture.make(configuration: configuration)
        try await fixture.test { api in
            let (first, firstCredential) = try await api.register("gpu-01", gpus: 8)
            let job = try await api.submit(fixture.admin, gpus: 8)
            try await fixture.schedule()
            #expect(try await api.get("/v1/jobs/\(job)", token: fixture.admin).json["allocations"]?[0]?["node"]?.int == Int64(first))
            let (second, secondCredential) = try await api.register("gpu-02", gpus: 8)

            // Within the start-up grace nobody is judged; after it, the silent node goes down.
            fixture.clock.advance(by: .seconds(25))
            #expect(try await fixture.controlPlane.checkLiveness().isEmpty)
            fixture.clock.advance(by: .seconds(8))
            #expect(try await api.post("/v1/nodes/\(second)/heartbeat", token: secondCredential).status == .ok)
            #expect(try await fixture.controlPlane.checkLiveness() == [NodeID(first)])

            let requeued = try await api.get("/v1/jobs/\(job)", token: fixture.admin).json
            #expect(requeued["state"]?.string == "pending")
            #expect(requeued["attempts"]?.int == 1)
            #expect(requeued["allocations"]?[0]?["outcome"]?.string == "lost")
            #expect(try await api.get("/v1/nodes/\(first)", token: fixture.admin).json["state"]?.string == "down")
            // Retried after a backoff, not at once: a job that kills its node should not kill the next one right away.
            try await fixture.schedule()
            let backingOff = try await api.get("/v1/jobs/\(job)", token: fixture.admin).json
            #expect(backingOff["state"]?.string == "pending")
            #expect(backingOff["queue"]?["reason"]?["message"]?.string?.contains("retry backoff") == true)
            #expect(backingOff["queue"]?["estimatedStart"]?.string != nil)
            #expect(await fixture.controlPlane.wakeIfBackoffDue() == false)
            fixture.clock.advance(by: .seconds(10))
            #expect(await fixture.controlPlane.wakeIfBackoffDue(), "the liveness tick wakes the scheduler when the backoff runs out")
            try await fixture.schedule()
            let moved = try await api.get("/v1/jobs/\(job)", token: fixture.admin).json
            #expect(moved["state"]?.string == "running")
            #expect(moved["attempts"]?.int == 2)
            #expect(moved["allocations"]?.array.compactMap { $0["node"]?.int } == [Int64(first), Int64(second)])

            // The first agent comes back: its node takes work again, its old allocation is gone.
            let back = try await api.post("/v1/nodes/\(first)/heartbeat", token: firstCredential)
            #expect(back.status == .ok)
            #expect(try await api.get("/v1/nodes/\(first)", token: fixture.admin).json["state"]?.string == "ready")
            #expect(try await api.get("/v1/nodes/\(first)/assignments", token: firstCredential).json["allocations"]?.array.isEmpty == true)
        }
    }

    @Test func anAllocationTheAgentNoLongerRunsIsLostAndRequeued() async throws {
        let fixture = try await Fixture.make()
        try await fixture.test { api in
            let (node, credential) = try await api.register("gpu-01", gpus: 8)
            let job = try await api.submit(fixture.admin, gpus: 2)
            let other = try await api.submit(fixture.admin, gpus: 2)
            try await fixture.schedule()
            let assigned = try await api.get("/v1/nodes/\(node)/assignments", token: credential).json["allocations"]?.array ?? []
            #expect(assigned.count == 2)
            for assignment in assigned {
                let allocation = assignment["allocation"]
                _ = try await api.post("/v1/nodes/\(node)/allocations/\(allocation?["id"]?.int ?? 0)/status", token: credential,
                                       body: #"{"epoch":\#(allocation?["epoch"]?.int ?? 0),"state":"running"}"#)
            }
            // The agent restarted and found only the second job's process.
            let kept = assigned[1]["allocation"]
            let reply = try await api.post("/v1/nodes/\(node)/heartbeat", token: credential,
                                           body: #"{"running":[{"allocation":\#(kept?["id"]?.int ?? 0),"epoch":\#(kept?["epoch"]?.int ?? 0)}]}"#)
            #expect(reply.status == .ok)
            let lost = try await api.get("/v1/jobs/\(job)", token: fixture.admin).json
            #expect(lost["state"]?.string == "pending")
            #expect(lost["allocations"]?[0]?["outcome"]?.string == "lost")
            #expect(try await api.get("/v1/jobs/\(other)", token: fixture.admin).json["state"]?.string == "running")
            let events = try await api.get("/v1/jobs/\(job)/events", token: fixture.admin).json["items"]?.array ?? []
            #expect(events.suffix(2).compactMap { $0["kind"]?.string } == ["lost", "requeued"])
            #expect(events.suffix(2).compactMap { $0["message"]?.string } == ["alloc-\(assigned[0]["allocation"]?["id"]?.int ?? 0) lost: its agent no longer runs it",
                                                                             "requeued; retried in 10 s"])
        }
    }

    @Test func backoffDoublesPerAttemptUpToItsCap() {
        #expect(RetryPolicy(base: .seconds(10), cap: .seconds(300)).backoff(attempt: 1) == .seconds(10))
        #expect(RetryPolicy(base: .seconds(10), cap: .seconds(300)).backoff(attempt: 2) == .seconds(20))
        #expect(RetryPolicy(base: .seconds(10), cap: .seconds(300)).backoff(attempt: 4) == .seconds(80))
        #expect(RetryPolicy(base: .seconds(10), cap: .seconds(300)).backoff(attempt: 40) == .seconds(300))
        #expect(RetryPolicy(base: .zero, cap: .seconds(300)).backoff(attempt: 3) == .zero)
    }

    @Test func aTaskOutOfAttemptsFailsItsJob() async throws {
        var configuration = ControlPlaneConfiguration()
        configuration.startupGrace = .zero
        let fixture = try await Fixture.make(configuration: configuration)
        try await fixture.test { api in
            _ = try await api.register("gpu-01", gpus: 8)
            let job = try await api.submit(fixture.admin, gpus: 8, extra: #","maxAttempts":1"#)
            try await fixture.schedule()
            fixture.clock.advance(by: .seconds(11))
            _ = try await fixture.controlPlane.checkLiveness()
            let failed = try await api.get("/v1/jobs/\(job)", token: fixture.admin).json
            #expect(failed["state"]?.string == "failed")
            let events = try await api.get("/v1/jobs/\(job)/events", token: fixture.admin).json["items"]?.array ?? []
            #expect(events.last?["kind"]?.string == "failed")
            #expect(events.last?["message"]?.string?.contains("out of attempts") == true)
        }
    }

    @Test func cordonDrainAndUncordon() async throws {
        let fixture = try await Fixture.make()
        try await fixture.test { api in
            let (node, _) = try await api.register("gpu-01", gpus: 8)
            #expect(try await api.post("/v1/nodes/\(node)/cordon", token: fixture.admin).json["state"]?.string == "cordoned")
            let job = try await api.submit(fixture.admin)
            try await fixture.schedule()
            #expect(try await api.get("/v1/jobs/\(job)", token: fixture.admin).json["queue"]?["reason"]?["message"]?.string?.contains("no node is ready") == true)
            #expect(try await api.post("/v1/nodes/\(node)/uncordon", token: fixture.admin).json["state"]?.string == "ready")
            try await fixture.schedule()
            #expect(try await api.get("/v1/jobs/\(job)", token: fixture.admin).json["state"]?.string == "running")
            let drained = try await api.post("/v1/nodes/\(node)/drain", token: fixture.admin).json
            #expect(drained["state"]?.string == "draining")
            #expect(drained["allocations"]?.array.count == 1, "draining keeps running work")
            #expect(try await api.post("/v1/nodes/99/cordon", token: fixture.admin).status == .notFound)
            let nodes = try await api.get("/v1/nodes", token: fixture.admin).json["items"]?.array ?? []
            #expect(nodes.count == 1)
            #expect(nodes.first?["gpus"]?.array.filter { $0["usage"]?.string == "whole" }.count == 1)
            // A cordoned node that goes down and comes back is still cordoned.
            let (other, credential) = try await api.register("gpu-02", gpus: 8)
            _ = try await api.post("/v1/nodes/\(other)/cordon", token: fixture.admin)
            fixture.clock.advance(by: .seconds(60))
            _ = try await fixture.controlPlane.checkLiveness()
            #expect(try await api.get("/v1/nodes/\(other)", token: fixture.admin).json["state"]?.string == "down")
            _ = try await api.post("/v1/nodes/\(other)/heartbeat", token: credential)
            #expect(try await api.get("/v1/nodes/\(other)", token: fixture.admin).json["state"]?.string == "cordoned")
        }
    }

    @Test func registrationIsValidatedAndANodeRegisteringAgainIsTheSameNode() async throws {
        let fixture = try await Fixture.make()
        try await fixture.test { api in
            let join = try await api.post("/v1/tokens", token: fixture.admin, body: #"{"name":"join","kind":"join"}"#).json["token"]?.string
            let bad = try await api.post("/v1/nodes/register", token: join, body: #"{"name":"n","cpuMillis":1,"memoryMiB":1,"gpus":[{"model":"H100","memoryMiB":0}]}"#)
            #expect(bad.status == .badRequest)
            #expect(bad.detail == "gpus[0] needs a model and a positive memoryMiB (0 only with healthy: false)")
            let missing = try await api.post("/v1/nodes/register", token: join, body: #"{"name":"n","gpus":[]}"#)
            #expect(missing.detail == "field 'cpuMillis' is required")
            let (first, oldCredential) = try await api.register("gpu-01", gpus: 2)
            // The node itself registers again (with its own credential): same node, new credential.
            let gpus = #"[{"model":"H100-80GB","memoryMiB":81559},{"model":"H100-80GB","memoryMiB":81559}]"#
            let reply = try await api.post("/v1/nodes/register", token: oldCredential, body: #"{"name":"gpu-01","cpuMillis":128000,"memoryMiB":1048576,"gpus":\#(gpus)}"#)
            #expect(reply.status == .created, "\(reply.text)")
            let again = UInt64(reply.json["node"]?["id"]?.int ?? 0)
            let newCredential = reply.json["token"]?.string ?? ""
            #expect(first == again)
            #expect(oldCredential != newCredential)
            #expect(try await api.post("/v1/nodes/\(first)/heartbeat", token: oldCredential).status == .unauthorized, "the old credential is revoked")
            let unhealthy = try await api.post("/v1/nodes/\(first)/heartbeat", token: newCredential, body: #"{"gpus":[{"index":1,"healthy":false,"reason":"XID 79"}]}"#)
            #expect(unhealthy.status == .ok)
            let gpu = try await api.get("/v1/nodes/\(first)", token: fixture.admin).json["gpus"]?[1]
            #expect(gpu?["healthy"]?.bool == false)
            #expect(gpu?["healthReason"]?.string == "XID 79")
            #expect(try await api.post("/v1/nodes/\(first)/heartbeat", token: newCredential, body: #"{"gpus":[{"index":7,"healthy":true}]}"#).status == .unprocessableContent)
            #expect(try await api.get("/v1/nodes/\(first)/assignments?wait=soon", token: newCredential).status == .badRequest)
        }
    }
}
