import FastGPUAPI
import FastGPUControlPlane
import FastGPUModel
import Foundation
import HTTPTypes
import Testing

@Suite("API: services")
struct ServicesAPITests {
    static let spec = #""command":["python3","serve.py"],"resources":{"gpus":1}"#

    @Test(arguments: [
        (#"{"name":"m","command":["x"],"replicas":{"min":3,"max":2}}"#, "replicas.min"),
        (#"{"name":"m","command":["x"],"port":0}"#, "port"),
        (#"{"name":"m","command":["x"],"autoscaling":{"metric":"gpu"}}"#, "autoscaling.metric"),
        (#"{"name":"m","command":["x"],"readiness":{"intervalSeconds":1,"timeoutSeconds":1}}"#, "readiness.timeoutSeconds"),
        (#"{"name":"m","command":["x"],"readiness":{"path":"health"}}"#, "readiness.path"),
        (#"{"name":"m","command":["x"],"autoscaling":{"target":0}}"#, "autoscaling.target"),
        (#"{"name":"Bad_Name","command":["x"]}"#, "name"),
        (#"{"name":"v1","command":["x"]}"#, "name"),
        (#"{"name":"m","command":["x"],"priority":"urgent"}"#, "priority"),
        (#"{"name":"m","command":["x"],"resources":{"gpus":1,"mig":"1g.10gb"}}"#, "resources"),
    ])
    func aBadSpecGetsAProblemNamingItsField(body: String, field: String) async throws {
        let fixture = try await Fixture.make()
        try await fixture.test { api in
            let reply = try await api.post("/v1/services", token: fixture.admin, body: body)
            #expect(reply.status == .unprocessableContent, "\(reply.text)")
            #expect(reply.json["field"]?.string == field, "\(reply.text)")
            #expect(try await api.get("/v1/services", token: fixture.admin).json["items"]?.array.count == 0, "nothing was created")
        }
    }

    @Test func anUnknownFieldIsRefusedByName() async throws {
        let fixture = try await Fixture.make()
        try await fixture.test { api in
            let reply = try await api.post("/v1/services", token: fixture.admin, body: #"{"name":"m","command":["x"],"replica":{"min":1}}"#)
            #expect(reply.status == .badRequest)
            #expect(reply.detail.contains("replica"))
        }
    }

    @Test func aServiceStartsItsMinimumAsReplicaJobsAboveBatchPriority() async throws {
        let fixture = try await Fixture.make()
        try await fixture.test { api in
            let created = try await api.post("/v1/services", token: fixture.admin, body: #"{"name":"chat",\#(Self.spec),"replicas":{"min":2,"max":4}}"#)
            #expect(created.status == .created, "\(created.text)")
            #expect(created.json["desiredReplicas"]?.int == 2)
            #expect(created.json["replicas"]?.array.count == 2)
            #expect(created.json["spec"]?["priority"]?.string == "service")
            let jobs = try await api.get("/v1/jobs", token: fixture.admin).json["items"]?.array ?? []
            #expect(jobs.count == 2)
            #expect(jobs.allSatisfy { $0["name"]?.string == "chat-r1" && $0["priority"]?.string == "service" })
            let again = try await api.post("/v1/services", token: fixture.admin, body: #"{"name":"chat",\#(Self.spec)}"#)
            #expect(again.status == .conflict)
        }
    }

    @Test func aReplicaDownloadsTheServicesModelFileFromItsProjectsPrefix() async throws {
        let fixture = try await Fixture.make()
        try await fixture.test { api in
            let node = try await api.register("n1", gpus: 2)
            let body = #"{"name":"onnx",\#(Self.spec),"inputs":[{"from":"s3://local/models/model.onnx","path":"model.onnx"}]}"#
            let created = try await api.post("/v1/services", token: fixture.admin, body: body)
            #expect(created.status == .created, "\(created.text)")
            try await fixture.schedule()
            let assignments = try await api.get("/v1/nodes/\(node.id)/assignments", token: node.token)
            let input = assignments.json["allocations"]?[0]?["inputs"]?[0]
            #expect(input?["key"]?.string == "default/models/model.onnx")
            #expect(input?["path"]?.string == "model.onnx")
            #expect(input?["backend"]?["name"]?.string == "local")
            #expect(input?["backend"]?["endpoint"]?.string == "", "local: the control plane the agent talks to")
            // Inputs that name no backend, or climb out of the working directory, are refused.
            let unknown = try await api.post("/v1/services", token: fixture.admin,
                                              body: #"{"name":"bad",\#(Self.spec),"inputs":[{"from":"s3://nowhere/m.onnx","path":"m.onnx"}]}"#)
            #expect(unknown.status == .notFound)
            let climbing = try await api.post("/v1/services", token: fixture.admin,
                                              body: #"{"name":"bad",\#(Self.spec),"inputs":[{"from":"s3://local/m.onnx","path":"../m.onnx"}]}"#)
            #expect(climbing.status == .unprocessableContent)
        }
    }

    @Test func aViewerMayReadButNotChangeAndAnotherProjectSeesNothing() async throws {
        let fixture = try await Fixture.make()
        try await fixture.test { api in
            let viewer = try await api.member("victor", of: "vision", role: "viewer")
            let member = try await api.member("mia", of: "vision", role: "member")
            let outsider = try await api.member("bob", of: "speech", role: "admin")
            let created = try await api.post("/v1/services", token: member, body: #"{"name":"detect","project":"vision",\#(Self.spec),"replicas":{"min":0,"max":2}}"#)
            #expect(created.status == .created, "\(created.text)")
            #expect(try await api.get("/v1/services/detect", token: viewer).status == .ok)
            #expect(try await api.post("/v1/services/detect/scale", token: viewer, body: #"{"max":3}"#).status == .forbidden)
            #expect(try await api.call(.delete, "/v1/services/detect", token: viewer).status == .forbidden)
            #expect(try await api.post("/v1/services", token: viewer, body: #"{"name":"mine","project":"vision",\#(Self.spec)}"#).status == .forbidden)
            #expect(try await api.get("/v1/services/detect", token: outsider).status == .notFound)
            #expect(try await api.get("/v1/services", token: outsider).json["items"]?.array.count == 0)
            #expect(try await api.call(.delete, "/v1/services/detect", token: outsider).status == .notFound)
            // The gateway's rule is the same: the viewer may call it, the outsider may not see it.
            let directory = ControlPlaneDirectory(controlPlane: fixture.controlPlane, clock: fixture.clock)
            let project = try #require(await fixture.controlPlane.routes().routes.first { $0.name == "detect" }?.project)
            #expect(await directory.authorize(token: viewer, project: project.rawValue) == .allowed)
            #expect(await directory.authorize(token: outsider, project: project.rawValue) == .notVisible)
            #expect(await directory.authorize(token: nil, project: project.rawValue) == .unauthenticated)
            #expect(await directory.authorize(token: "fgpu_forged", project: project.rawValue) == .unauthenticated)
        }
    }

    @Test func aReadyReplicaIsRoutedAndANewRevisionKeepsItUntilItsSuccessorServes() async throws {
        let fixture = try await Fixture.make()
        try await fixture.test { api in
            let node = try await api.register("n1", gpus: 4)
            let created = try await api.post("/v1/services", token: fixture.admin, body: #"{"name":"chat",\#(Self.spec),"replicas":{"min":1,"max":1}}"#)
            #expect(created.status == .created)
            try await fixture.schedule()
            func assignments() async throws -> [JSONValue] {
                try await api.get("/v1/nodes/\(node.id)/assignments", token: node.token).json["allocations"]?.array ?? []
            }
            let first = try #require(try await assignments().first)
            #expect(first["replica"]?["service"]?.string == "chat")
            #expect(first["replica"]?["path"]?.string == "/health")
            let allocation = first["allocation"]?["id"]?.int ?? 0
            let epoch = first["allocation"]?["epoch"]?.int ?? 0
            #expect(try await api.post("/v1/nodes/\(node.id)/allocations/\(allocation)/status", token: node.token, body: #"{"epoch":\#(epoch),"state":"running"}"#).status == .noContent)
            #expect(await fixture.controlPlane.routes().routes.first?.replicas.isEmpty == true, "not routed before it is ready")
            let ready = try await api.post("/v1/nodes/\(node.id)/allocations/\(allocation)/readiness", token: node.token,
                                           body: #"{"epoch":\#(epoch),"ready":true,"host":"127.0.0.1","port":31000}"#)
            #expect(ready.status == .noContent, "\(ready.text)")
            #expect(await fixture.controlPlane.routes().routes.first?.replicas.map(\.port) == [31000])

            // Revision 2: one more replica starts; the old one serves until it is ready.
            let revised = try await api.call(.put, "/v1/services/chat", token: fixture.admin,
                                             body: #"{"name":"chat",\#(Self.spec),"env":{"MODEL":"v2"},"replicas":{"min":1,"max":1}}"#)
            #expect(revised.json["revision"]?.int == 2, "\(revised.text)")
            try await fixture.schedule()
            let second = try #require(try await assignments().first { $0["allocation"]?["id"]?.int != allocation })
            #expect(second["replica"]?["revision"]?.int == 2)
            #expect(await fixture.controlPlane.routes().routes.first?.replicas.map(\.port) == [31000], "the old replica still serves")
            let secondID = second["allocation"]?["id"]?.int ?? 0
            let secondEpoch = second["allocation"]?["epoch"]?.int ?? 0
            _ = try await api.post("/v1/nodes/\(node.id)/allocations/\(secondID)/status", token: node.token, body: #"{"epoch":\#(secondEpoch),"state":"running"}"#)
            _ = try await api.post("/v1/nodes/\(node.id)/allocations/\(secondID)/readiness", token: node.token,
                                   body: #"{"epoch":\#(secondEpoch),"ready":true,"host":"127.0.0.1","port":31001}"#)
            // The new one serves; the old one drains (out of the routes) and stops once idle.
            #expect(await fixture.controlPlane.routes().routes.first?.replicas.map(\.port) == [31001])
            fixture.clock.advance(by: .seconds(2))
            try await fixture.controlPlane.reconcileServices()
            let show = try await api.get("/v1/services/chat", token: fixture.admin).json
            #expect(show["replicas"]?.array.map { $0["revision"]?.int ?? 0 } == [2])
            let events = try await api.get("/v1/services/chat/events", token: fixture.admin).json["items"]?.array.map { $0["kind"]?.string ?? "" } ?? []
            #expect(events.contains("replicaDraining") && events.contains("replicaStopped") && events.contains("revised"))
        }
    }

    @Test func aReplicaThatExitsIsRestartedWithBackoff() async throws {
        let fixture = try await Fixture.make()
        try await fixture.test { api in
            let node = try await api.register("n1", gpus: 4)
            _ = try await api.post("/v1/services", token: fixture.admin, body: #"{"name":"chat",\#(Self.spec),"replicas":{"min":1,"max":1}}"#)
            try await fixture.schedule()
            let assigned = try await api.get("/v1/nodes/\(node.id)/assignments", token: node.token).json["allocations"]?[0]?["allocation"]
            let allocation = assigned?["id"]?.int ?? 0
            let epoch = assigned?["epoch"]?.int ?? 0
            let exited = try await api.post("/v1/nodes/\(node.id)/allocations/\(allocation)/status", token: node.token,
                                            body: #"{"epoch":\#(epoch),"state":"exited","exitCode":1}"#)
            #expect(exited.status == .noContent, "\(exited.text)")
            try await fixture.controlPlane.reconcileServices()
            // It never served: the next start waits 1 s.
            var show = try await api.get("/v1/services/chat", token: fixture.admin).json
            #expect(show["replicas"]?.array.count == 0)
            fixture.clock.advance(by: .milliseconds(1100))
            try await fixture.controlPlane.reconcileServices()
            show = try await api.get("/v1/services/chat", token: fixture.admin).json
            #expect(show["replicas"]?.array.count == 1)
            let events = try await api.get("/v1/services/chat/events", token: fixture.admin).json["items"]?.array.map { $0["kind"]?.string ?? "" } ?? []
            #expect(events.filter { $0 == "replicaStarted" }.count == 2)
            #expect(events.contains("restartBackoff"))
        }
    }

    @Test func servicesSurviveARestart() async throws {
        let fixture = try await Fixture.make()
        try await fixture.test { api in
            _ = try await api.post("/v1/services", token: fixture.admin, body: #"{"name":"chat",\#(Self.spec),"replicas":{"min":1,"max":3}}"#)
        }
        let restarted = try await fixture.restarted()
        try await restarted.test { api in
            let show = try await api.get("/v1/services/chat", token: fixture.admin).json
            #expect(show["revision"]?.int == 1)
            #expect(show["replicas"]?.array.count == 1)
            #expect(show["spec"]?["replicas"]?["max"]?.int == 3)
        }
    }
}
