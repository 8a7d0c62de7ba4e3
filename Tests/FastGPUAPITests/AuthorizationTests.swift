import FastGPUControlPlane
import FastGPUModel
import Foundation
import Hummingbird
import Testing

@Suite("API: tokens, roles and projects")
struct AuthorizationTests {
    @Test func tokensHaveTheirShapeAndOnlyTheirHashIsStored() async throws {
        let token = TokenSecret.generate()
        #expect(token.hasPrefix("fgpu_"))
        #expect(token.count == 41)
        #expect(TokenSecret.isWellFormed(token))
        var typo = Array(token)
        typo[10] = typo[10] == "a" ? "b" : "a"
        #expect(!TokenSecret.isWellFormed(String(typo)), "the checksum catches a changed character")
        #expect(TokenSecret.generate() != token)

        let fixture = try await Fixture.make()
        let database = try fixture.storedText()
        #expect(!database.contains(fixture.admin), "the database never holds a token")
        #expect(database.contains(TokenSecret.hash(fixture.admin)))
    }

    @Test func missingMalformedUnknownRevokedAndExpiredTokensAre401() async throws {
        let fixture = try await Fixture.make()
        try await fixture.test { api in
            #expect(try await api.get("/v1/jobs", token: nil).status == .unauthorized)
            #expect(try await api.get("/v1/jobs", token: "not-a-token").status == .unauthorized)
            #expect(try await api.get("/v1/jobs", token: TokenSecret.generate()).status == .unauthorized)
            let basic = try await api.client.execute(uri: "/v1/jobs", method: .get, headers: [.authorization: "Basic YWRtaW46YWRtaW4="], body: nil)
            #expect(basic.status == .unauthorized)
            #expect(basic.headers[.wwwAuthenticate] == "Bearer")

            let created = try await api.post("/v1/tokens", token: fixture.admin, body: #"{"name":"ci","expiresInSeconds":60}"#)
            #expect(created.status == .created)
            let token = created.json["token"]?.string ?? ""
            let id = created.json["id"]?.int ?? 0
            #expect(try await api.get("/v1/jobs", token: token).status == .ok)
            let listed = try await api.get("/v1/tokens", token: fixture.admin).json["items"]?.array ?? []
            #expect(listed.count == 2)
            #expect(listed.allSatisfy { $0["token"] == nil }, "a listing never shows secrets")

            fixture.clock.advance(by: .seconds(61))
            #expect(try await api.get("/v1/jobs", token: token).status == .unauthorized, "expired")

            let other = try await api.post("/v1/tokens", token: fixture.admin, body: #"{"name":"laptop"}"#).json
            let otherToken = other["token"]?.string ?? ""
            #expect(try await api.get("/v1/jobs", token: otherToken).status == .ok)
            let revoked = try await api.post("/v1/tokens/\(other["id"]?.int ?? 0)/revoke", token: fixture.admin)
            #expect(revoked.json["revokedAt"]?.string != nil)
            #expect(try await api.get("/v1/jobs", token: otherToken).status == .unauthorized, "revocation takes effect at once")
            #expect(id > 0)
        }
    }

    @Test func membersSeeOnlyTheirProjectsAndViewersCannotWrite() async throws {
        let fixture = try await Fixture.make()
        try await fixture.test { api in
            let alice = try await api.member("alice", of: "vision", role: "member")
            let victor = try await api.member("victor", of: "vision", role: "viewer")
            let bob = try await api.member("bob", of: "speech", role: "member")

            let visionJob = try await api.submit(alice, project: "vision")
            let speechJob = try await api.submit(bob, project: "speech")

            // Another project's job is not found, not forbidden: its existence is not told.
            #expect(try await api.get("/v1/jobs/\(speechJob)", token: alice).status == .notFound)
            #expect(try await api.post("/v1/jobs/\(speechJob)/cancel", token: alice).status == .notFound)
            #expect(try await api.get("/v1/jobs/\(speechJob)/events", token: alice).status == .notFound)
            #expect(try await api.get("/v1/jobs/\(speechJob)/logs", token: alice).status == .notFound)
            #expect(try await api.get("/v1/jobs", token: alice).json["items"]?.array.compactMap { $0["id"]?.int } == [Int64(visionJob)])
            #expect(try await api.get("/v1/jobs?project=speech", token: alice).status == .notFound)
            #expect(try await api.post("/v1/jobs", token: alice, body: #"{"project":"speech","command":["x"]}"#).status == .notFound)
            #expect(try await api.get("/v1/projects", token: alice).json["items"]?.array.compactMap { $0["name"]?.string } == ["vision"])
            #expect(try await api.get("/v1/projects/speech", token: alice).status == .notFound)

            // The queue shows only what the caller may see, with positions in the whole queue.
            let queue = try await api.get("/v1/queue", token: bob).json["items"]?.array ?? []
            #expect(queue.compactMap { $0["job"]?.int } == [Int64(speechJob)])
            #expect(queue.first?["position"]?.int == 2)

            // A viewer reads, but does not write.
            #expect(try await api.get("/v1/jobs/\(visionJob)", token: victor).status == .ok)
            let refused = try await api.post("/v1/jobs", token: victor, body: #"{"project":"vision","command":["x"]}"#)
            #expect(refused.status == .forbidden)
            #expect(refused.detail == "a viewer of project vision cannot submit jobs")
            #expect(try await api.post("/v1/jobs/\(visionJob)/cancel", token: victor).status == .forbidden)

            // Members do not manage members, create projects, tokens for others, or touch nodes.
            #expect(try await api.call(.put, "/v1/projects/vision/members/mallory", token: alice, body: #"{"role":"admin"}"#).status == .forbidden)
            #expect(try await api.post("/v1/projects", token: alice, body: #"{"name":"mine"}"#).status == .forbidden)
            #expect(try await api.post("/v1/tokens", token: alice, body: #"{"name":"x","subject":"bob"}"#).status == .forbidden)
            #expect(try await api.post("/v1/tokens", token: alice, body: #"{"name":"x","kind":"join"}"#).status == .forbidden)
            #expect(try await api.post("/v1/tokens", token: alice, body: #"{"name":"x","clusterAdmin":true}"#).status == .forbidden)
            let own = try await api.post("/v1/tokens", token: alice, body: #"{"name":"laptop"}"#)
            #expect(own.status == .created)
            #expect(own.json["subject"]?.string == "alice")
            #expect(try await api.get("/v1/tokens", token: alice).json["items"]?.array.count == 2, "alice's two tokens, nobody else's")
            let (node, _) = try await api.register("n1", gpus: 2)
            #expect(try await api.post("/v1/nodes/\(node)/cordon", token: alice).status == .forbidden)
            #expect(try await api.get("/v1/nodes", token: alice).status == .ok, "everyone may see the nodes")

            // A removed member loses access at once.
            let removed = try await api.call(.delete, "/v1/projects/vision/members/alice", token: fixture.admin)
            #expect(removed.status == .ok)
            #expect(try await api.get("/v1/jobs/\(visionJob)", token: alice).status == .notFound)
        }
    }

    @Test func agentAndJoinTokensOnlyDoAgentThings() async throws {
        let fixture = try await Fixture.make()
        try await fixture.test { api in
            let join = try await api.post("/v1/tokens", token: fixture.admin, body: #"{"name":"join","kind":"join"}"#).json["token"]?.string
            #expect(try await api.get("/v1/jobs", token: join).status == .forbidden)
            let (node, credential) = try await api.register("n1", gpus: 2)
            let (other, _) = try await api.register("n2", gpus: 2)
            #expect(try await api.get("/v1/jobs", token: credential).status == .forbidden)
            #expect(try await api.post("/v1/jobs", token: credential, body: #"{"project":"default","command":["x"]}"#).status == .forbidden)
            #expect(try await api.post("/v1/nodes/\(other)/heartbeat", token: credential).status == .forbidden, "a node speaks only for itself")
            #expect(try await api.post("/v1/nodes/\(node)/heartbeat", token: credential).status == .ok)
            #expect(try await api.get("/v1/nodes/\(other)/assignments", token: credential).status == .forbidden)
            let user = try await api.member("alice", of: "default", role: "admin")
            #expect(try await api.post("/v1/nodes/\(node)/heartbeat", token: user).status == .forbidden)
            #expect(try await api.post("/v1/nodes/register", token: user, body: #"{"name":"rogue","cpuMillis":1,"memoryMiB":1,"gpus":[]}"#).status == .forbidden)
            // Replacing nodes and changing projects' priority ceilings are the cluster admin's.
            for token in [join, credential, user] {
                #expect(try await api.post("/v1/nodes/\(other)/replace", token: token).status == .forbidden)
                #expect(try await api.call(.patch, "/v1/projects/default", token: token, body: #"{"maxPriority":"high"}"#).status == .forbidden)
            }
            #expect(try await api.post("/v1/nodes/\(other)/replace", token: nil).status == .unauthorized)
            #expect(try await api.call(.patch, "/v1/projects/default", token: nil, body: #"{"weight":2}"#).status == .unauthorized)
            // A node credential may register only its own name.
            #expect(try await api.post("/v1/nodes/register", token: credential, body: #"{"name":"n3","cpuMillis":1,"memoryMiB":1,"gpus":[]}"#).status == .forbidden)
        }
    }

    @Test func projectsAndMembersAreValidated() async throws {
        let fixture = try await Fixture.make()
        try await fixture.test { api in
            #expect(try await api.post("/v1/projects", token: fixture.admin, body: #"{"name":"Bad Name"}"#).status == .unprocessableContent)
            #expect(try await api.post("/v1/projects", token: fixture.admin, body: #"{"name":"default"}"#).status == .conflict)
            #expect(try await api.post("/v1/projects", token: fixture.admin, body: #"{"name":"ok","weight":0}"#).status == .unprocessableContent)
            let created = try await api.post("/v1/projects", token: fixture.admin, body: #"{"name":"ok","weight":3}"#)
            #expect(created.json["weight"]?.int == 3)
            #expect(try await api.call(.put, "/v1/projects/ok/members/a", token: fixture.admin, body: #"{"role":"owner"}"#).status == .badRequest)
            let project = try await api.call(.put, "/v1/projects/ok/members/a", token: fixture.admin, body: #"{"role":"viewer"}"#).json
            #expect(project["members"]?.array.compactMap { $0["role"]?.string } == ["viewer"])
        }
    }
}
