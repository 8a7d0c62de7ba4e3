import FastGPUAPI
import FastGPUControlPlane
import FastGPUModel
import FastGPUStore
import Foundation
import Hummingbird
import Testing

@Suite("API: the audit log")
struct AuditTests {
    @Test func everyMutationAndEveryRefusedCredentialIsRecordedWithoutSecrets() async throws {
        let fixture = try await Fixture.make()
        try await fixture.test { api in
            let alice = try await api.member("alice", of: "vision", role: "member")
            let job = try await api.submit(alice, project: "vision")
            #expect(try await api.post("/v1/jobs/\(job)/cancel", token: alice).status == .ok)
            #expect(try await api.post("/v1/projects", token: alice, body: #"{"name":"mine"}"#).status == .forbidden)
            let forged = TokenSecret.generate()
            #expect(try await api.get("/v1/jobs", token: forged).status == .unauthorized)
            #expect(try await api.get("/v1/jobs", token: alice).status == .ok, "reads are not audited")

            let page = try await api.get("/v1/audit?subject=alice", token: fixture.admin)
            #expect(page.status == .ok, "\(page.text)")
            let records = page.json["items"]?.array ?? []
            #expect(records.map { "\($0["action"]?.string ?? "") \($0["status"]?.int ?? 0)" }
                    == ["POST /v1/jobs 201", "POST /v1/jobs/{id}/cancel 200", "POST /v1/projects 403"], "\(records)")
            #expect(records.last?["target"]?.string == "/v1/projects")
            #expect(records.allSatisfy { $0["tokenId"]?.int != nil && $0["requestId"]?.string?.isEmpty == false })

            let all = try await api.get("/v1/audit?limit=1000", token: fixture.admin).json["items"]?.array ?? []
            let refused = all.filter { $0["status"]?.int == 401 }
            #expect(refused.count == 1)
            #expect(refused.first?["failure"]?.string == "unknown")
            #expect(refused.first?["subject"]?.string == "")
            // The admin's own token creation for alice is there, and no secret anywhere.
            #expect(all.contains { $0["action"]?.string == "POST /v1/tokens" && $0["subject"]?.string == "admin" })
            let everything = try await api.get("/v1/audit?limit=1000", token: fixture.admin).text
            #expect(!page.text.contains("fgpu_") && !everything.contains(alice) && !everything.contains(forged))
            // Paging: after the first record's sequence comes the second.
            let first = all.first?["sequence"]?.int ?? 0
            #expect(try await api.get("/v1/audit?after=\(first)&limit=1", token: fixture.admin).json["items"]?[0]?["sequence"]?.int == all.dropFirst().first?["sequence"]?.int)

            // Only cluster admins read it.
            #expect(try await api.get("/v1/audit", token: alice).status == .forbidden)
            #expect(try await api.get("/v1/audit", token: nil).status == .unauthorized)
            #expect(try await api.get("/v1/audit?limit=0", token: fixture.admin).status == .badRequest)
        }
        // Append-only and durable: a restarted server has every record.
        let restarted = try await fixture.restarted()
        let admin = Principal(tokenID: 1, kind: .user, subject: "admin", clusterAdmin: true, nodeID: nil)
        let kept = try await restarted.controlPlane.audit.records(after: 0, limit: 1000, subject: "alice", by: admin)
        #expect(kept.count == 3)
    }
}
