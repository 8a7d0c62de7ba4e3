import FastGPUAPI
import FastGPUControlPlane
import FastGPUModel
import FastGPUStore
import Foundation
import Hummingbird
import Testing
import Yams

@Suite("API: contract, health, metrics, restart")
struct ServerTests {
    @Test func everyRouteIsInTheDocumentAndEveryDocumentedOperationIsARoute() async throws {
        let fixture = try await Fixture.make()
        let registered = Set(fixture.routes().routes.map { "\($0.method) \($0.path)" })
        let documented = Set(Contract.shared.operations.map { "\($0.method) \($0.template)" })
        #expect(!documented.isEmpty)
        #expect(registered.subtracting(documented).sorted() == [], "routes missing from openapi.yaml")
        #expect(documented.subtracting(registered).sorted() == [], "documented operations without a route")
    }

    @Test func everySchemaReferenceResolves() throws {
        let text = APIServer.openAPIDocument
        #expect(text.hasPrefix("openapi: 3.1.0"))
        var missing: [String] = []
        for line in text.split(separator: "\n") {
            guard let range = line.range(of: "#/components/") else { continue }
            let ref = line[range.lowerBound...].prefix { $0 != "\"" }
            let resolved = Contract.shared.resolve(["$ref": String(ref)])
            if resolved.isEmpty { missing.append(String(ref)) }
        }
        #expect(missing == [])
    }

    @Test func theValidatorCatchesWhatItShould() {
        let contract = Contract.shared
        let job = ["$ref": "#/components/schemas/Problem"]
        #expect(contract.validate(.object(["type": .string("a"), "title": .string("b"), "status": .int(400), "detail": .string("d"), "requestId": .string("1")]), against: job, at: "x") == [])
        #expect(contract.validate(.object(["type": .string("a")]), against: job, at: "x").contains("x.title is required"))
        let problems = contract.validate(.object(["type": .string("a"), "title": .string("b"), "status": .bool(true), "detail": .string("d"), "requestId": .string("1"), "extra": .null]), against: job, at: "x")
        #expect(Set(problems) == ["x.status: expected an integer, got true", "x.extra is not in the schema"])
        #expect(contract.check(method: "get", path: "/v1/jobs/1", status: 418, contentType: "application/json", body: "{}", requestBody: nil) == ["GET /v1/jobs/{id} → 418: status 418 is not documented"])
        #expect(contract.template(method: "post", path: "/v1/nodes/register") == "/v1/nodes/register")
        #expect(contract.template(method: "get", path: "/v1/nodes/register") == "/v1/nodes/{id}")
    }

    @Test func healthReadinessMetricsAndTheDocumentNeedNoToken() async throws {
        let fixture = try await Fixture.make()
        try await fixture.test { api in
            #expect(try await api.get("/healthz", token: nil).text == "ok\n")
            #expect(try await api.get("/readyz", token: nil).text == "ready\n")
            let document = try await api.get("/openapi.yaml", token: nil)
            #expect(document.headers[.contentType] == "application/yaml")
            #expect(document.text == APIServer.openAPIDocument)
            _ = try await api.register("gpu-01", gpus: 8)
            _ = try await api.submit(fixture.admin, gpus: 2)
            _ = try await api.submit(fixture.admin, gpus: 16)
            try await fixture.schedule()
            let metrics = try await api.get("/metrics", token: nil)
            #expect(metrics.headers[.contentType] == "text/plain; version=0.0.4")
            let text = metrics.text
            for expected in [#"fastgpu_jobs{state="running"} 1"#, #"fastgpu_jobs{state="pending"} 1"#, "fastgpu_queue_length 1",
                             #"fastgpu_nodes{state="ready"} 1"#, "fastgpu_gpus_total 8", "fastgpu_gpus_allocated 2",
                             "fastgpu_api_request_seconds_bucket", #"route="/v1/jobs""#] {
                #expect(text.contains(expected), "\(expected) in /metrics")
            }
        }
    }

    @Test func aRestartedServerHasEveryAcknowledgedJob() async throws {
        let fixture = try await Fixture.make()
        let (acknowledged, node) = try await fixture.test { api in
            let node = try await api.register("gpu-01", gpus: 8)
            var acknowledged: Set<UInt64> = []
            for i in 0..<20 { acknowledged.insert(try await api.submit(fixture.admin, gpus: 1 + i % 3, key: "k\(i)")) }
            try await fixture.schedule()
            _ = try await api.post("/v1/jobs/20/cancel", token: fixture.admin)
            return (acknowledged, node)
        }
        let before = await fixture.controlPlane.snapshot()

        let restarted = try await fixture.restarted()
        #expect(await restarted.controlPlane.snapshot() == before, "memory rebuilt from the store is the state that was acknowledged")
        try await restarted.test { api in
            let listed = try await api.get("/v1/jobs?limit=100", token: fixture.admin).json["items"]?.array ?? []
            #expect(Set(listed.compactMap { $0["id"]?.int }.map(UInt64.init)) == acknowledged)
            #expect(listed.filter { $0["state"]?.string == "running" }.count > 0)
            #expect(listed.first { $0["id"]?.int == 20 }?["state"]?.string == "cancelled")
            // The admin token, the node's credential and the idempotency keys survive too.
            let retry = try await api.post("/v1/jobs", token: fixture.admin, body: #"{"project":"default","command":["python","train.py"],"resources":{"gpus":1}}"#,
                                           headers: ["Idempotency-Key": "k0"])
            #expect(retry.status == .ok)
            #expect(retry.json["id"]?.int == 1)
            let assignments = try await api.get("/v1/nodes/\(node.id)/assignments", token: node.token).json
            #expect((assignments["allocations"]?.array.count ?? 0) > 0, "the node's running work is still assigned to it")
            #expect(try await api.submit(fixture.admin) == 21, "ids continue after the restart")
        }
    }
}
