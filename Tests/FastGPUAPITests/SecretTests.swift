import FastGPUAPI
import FastGPUControlPlane
import FastGPUModel
import Foundation
import Hummingbird
import Testing

@Suite("API: secrets")
struct SecretTests {
    static let value = "hf_s3cr3t-value-that-must-not-leak"

    /// Everything the server wrote to disk, as text.
    static func database(_ fixture: Fixture) -> String {
        ["", "-wal"].map { (try? String(contentsOfFile: fixture.path + $0, encoding: .isoLatin1)) ?? "" }.joined()
    }

    @Test func aJobsSecretIsSealedNeverReturnedAndGivenOnlyToItsAgent() async throws {
        let fixture = try await Fixture.make()
        let node = try await fixture.test { api throws -> (id: UInt64, token: String) in
            let alice = try await api.member("alice", of: "default", role: "member")
            let node = try await api.register("n1", gpus: 2)
            let other = try await api.register("n2", gpus: 2)
            _ = try await api.post("/v1/nodes/\(other.id)/cordon", token: fixture.admin)
            let body = #"{"project":"default","command":["python","train.py"],"env":{"MODE":"fast"},"secrets":{"HF_TOKEN":"\#(Self.value)"},"resources":{"gpus":1}}"#
            let submitted = try await api.post("/v1/jobs", token: alice, body: body, headers: ["Idempotency-Key": "k1"])
            #expect(submitted.status == .created)
            #expect(submitted.json["secrets"]?.array.compactMap(\.string) == ["HF_TOKEN"])
            #expect(!submitted.text.contains(Self.value))
            let id = submitted.json["id"]?.int ?? 0
            // A retry with the same key and body is the same job.
            let retried = try await api.post("/v1/jobs", token: alice, body: body, headers: ["Idempotency-Key": "k1"])
            #expect(retried.status == .ok && retried.json["id"]?.int == id)
            for reply in [try await api.get("/v1/jobs/\(id)", token: alice), try await api.get("/v1/jobs", token: fixture.admin),
                          try await api.get("/v1/jobs/\(id)/events", token: alice), try await api.get("/v1/audit?limit=1000", token: fixture.admin)] {
                #expect(!reply.text.contains(Self.value))
            }
            try await fixture.schedule()
            // The node that runs it gets the value; nothing else does.
            let assignments = try await api.get("/v1/nodes/\(node.id)/assignments", token: node.token)
            let env = assignments.json["allocations"]?[0]?["env"]
            #expect(env?["HF_TOKEN"]?.string == Self.value)
            #expect(env?["MODE"]?.string == "fast")
            #expect(try await api.get("/v1/nodes/\(node.id)/assignments", token: other.token).status == .forbidden)
            #expect(!(try await api.get("/v1/nodes/\(other.id)/assignments", token: other.token).text.contains(Self.value)))
            return node
        }
        #expect(!Self.database(fixture).contains(Self.value), "the database holds the secret sealed, never in the clear")
        // A restart with the same key still gives the agent its secret.
        let restarted = try await fixture.restarted()
        let text = try await restarted.test { api throws -> String in
            try await api.get("/v1/nodes/\(node.id)/assignments", token: node.token).text
        }
        #expect(text.contains(Self.value), "\(text.prefix(300))")
    }

    @Test func aProjectsSecretStoreIsForItsAdminsToWriteAndItsJobsToUse() async throws {
        let fixture = try await Fixture.make()
        try await fixture.test { api in
            let owner = try await api.member("olga", of: "vision", role: "admin")
            let alice = try await api.member("alice", of: "vision", role: "member")
            let bob = try await api.member("bob", of: "speech", role: "admin")
            let put = #"{"value":"\#(Self.value)"}"#
            #expect(try await api.call(.put, "/v1/projects/vision/secrets/hf-token", token: alice, body: put).status == .forbidden)
            #expect(try await api.call(.put, "/v1/projects/vision/secrets/hf-token", token: bob, body: put).status == .notFound)
            #expect(try await api.call(.put, "/v1/projects/vision/secrets/bad%20name", token: owner, body: put).status == .unprocessableContent)
            let stored = try await api.call(.put, "/v1/projects/vision/secrets/hf-token", token: owner, body: put)
            #expect(stored.status == .ok, "\(stored.text)")
            #expect(stored.json["updatedBy"]?.string == "olga" && !stored.text.contains(Self.value))
            let listed = try await api.get("/v1/projects/vision/secrets", token: alice)
            #expect(listed.json["items"]?.array.compactMap { $0["name"]?.string } == ["hf-token"])
            #expect(!listed.text.contains(Self.value))
            #expect(try await api.get("/v1/projects/vision/secrets", token: bob).status == .notFound)

            // A member uses it by name; an unknown name is refused.
            let job = try await api.post("/v1/jobs", token: alice, body: #"{"project":"vision","command":["x"],"secretRefs":{"HF_TOKEN":"hf-token"}}"#)
            #expect(job.status == .created, "\(job.text)")
            #expect(job.json["secrets"]?.array.compactMap(\.string) == ["HF_TOKEN"])
            #expect(try await api.post("/v1/jobs", token: alice, body: #"{"project":"vision","command":["x"],"secretRefs":{"A":"nope"}}"#).status == .unprocessableContent)
            #expect(try await api.post("/v1/jobs", token: alice, body: #"{"project":"vision","command":["x"],"env":{"A":"1"},"secrets":{"A":"2"}}"#).status == .unprocessableContent)
            let node = try await api.register("n1", gpus: 1)
            try await fixture.schedule()
            #expect(try await api.get("/v1/nodes/\(node.id)/assignments", token: node.token).json["allocations"]?[0]?["env"]?["HF_TOKEN"]?.string == Self.value)

            // Removing it leaves the submitted job its copy.
            #expect(try await api.call(.delete, "/v1/projects/vision/secrets/hf-token", token: owner).status == .noContent)
            #expect(try await api.call(.delete, "/v1/projects/vision/secrets/hf-token", token: owner).status == .notFound)
            #expect(try await api.get("/v1/projects/vision/secrets", token: alice).json["items"]?.array.count == 0)
            #expect(try await api.get("/v1/nodes/\(node.id)/assignments", token: node.token).json["allocations"]?[0]?["env"]?["HF_TOKEN"]?.string == Self.value)
        }
        #expect(!Self.database(fixture).contains(Self.value))
    }

    @Test func aSealedValueOpensOnlyForWhatItWasSealedFor() throws {
        let box = SecretBox.random()
        let sealed = try box.seal("v", for: "job:1:A")
        #expect(try box.open(sealed, for: "job:1:A") == "v")
        #expect(throws: SecretError.self) { try box.open(sealed, for: "job:2:A") }
        #expect(throws: SecretError.self) { try SecretBox.random().open(sealed, for: "job:1:A") }
        #expect(box.fingerprint("v") == box.fingerprint("v") && box.fingerprint("v") != SecretBox.random().fingerprint("v"))
    }

    @Test func theKeyFileIsCreatedOwnerOnlyAndReadBack() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("fastgpu-key-\(UInt64.random(in: 0...UInt64.max))").path
        let first = try SecretBox.loadOrCreate(at: path)
        #expect(try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int == 0o600)
        let again = try SecretBox.loadOrCreate(at: path)
        #expect(try again.open(try first.seal("v", for: "c"), for: "c") == "v")
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: path))
        #expect(throws: SecretError.self) { try SecretBox.loadOrCreate(at: path) }
    }
}
