import FastGPUAPI
import FastGPUControlPlane
import FastGPUModel
import FastGPUStoreSQLite
import Foundation
import Testing

/// `Fixtures/schema-v4.db` was written by `fastgpu server` of the commit before events were typed
/// (2ad993e, migrations v1–v4): one agent with 2 simulated H100s, job 1 `hello` succeeded with two
/// log lines, job 2 `long` running when the agent was killed, job 3 `waiting` pending, job 4
/// cancelled; a project secret `HF_TOKEN` and a member `alice`. Its secret key, admin token and
/// node credential lie beside it.
@Suite("Store: a database of the previous schema opens, migrates and serves")
struct MigrationTests {
    static func fixture(_ name: String) throws -> URL {
        try #require(Bundle.module.url(forResource: "Fixtures/\(name)", withExtension: nil))
    }

    static func text(_ name: String) throws -> String {
        try String(contentsOf: try fixture(name), encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// A copy of the fixture, opened by today's control plane.
    static func open() async throws -> Fixture {
        let path = Fixture.temporaryDatabase()
        try FileManager.default.copyItem(at: try fixture("schema-v4.db"), to: URL(fileURLWithPath: path))
        let directory = (path as NSString).deletingLastPathComponent
        try FileManager.default.copyItem(at: try fixture("schema-v4.secret-key"), to: URL(fileURLWithPath: directory + "/secret-key"))
        let secretBox = try SecretBox.loadOrCreate(at: directory + "/secret-key")
        let clock = ManualClock(.seconds(1_796_214_300))
        let assembly = try await ServerAssembly.build(store: try SQLiteClusterStore(path: path), secretBox: secretBox, clock: clock)
        #expect(assembly.bootstrapToken == nil, "a database with tokens is not bootstrapped again")
        return Fixture(path: path, clock: clock, controlPlane: assembly.controlPlane, scheduling: assembly.scheduling,
                       admin: try text("schema-v4.admin-token"), secretBox: secretBox)
    }

    @Test func jobsEventsLogsAndSecretsOfTheOldSchemaAreServed() async throws {
        let fixture = try await Self.open()
        try await fixture.test { api in
            let states = try await api.get("/v1/jobs?limit=10", token: fixture.admin).json["items"]?.array.compactMap { $0["state"]?.string }
            #expect(states == ["succeeded", "running", "pending", "cancelled"])
            let hello = try await api.get("/v1/jobs/1", token: fixture.admin).json
            #expect(hello["name"]?.string == "hello")
            #expect(hello["finishedAt"]?.string != nil, "the finish time comes from the old column")
            let long = try await api.get("/v1/jobs/2", token: fixture.admin).json
            #expect(long["allocations"]?[0]?["report"]?.string == "running", "the agent's last word survives the migration")

            // Events written as sentences read back with their kinds and words.
            let events = try await api.get("/v1/jobs/1/events", token: fixture.admin).json["items"]?.array ?? []
            #expect(events.compactMap { $0["kind"]?.string } == ["submitted", "placed", "started", "exited"])
            #expect(events.last?["message"]?.string == "alloc-1 exited with code 0")

            // Log cursors handed out before the migration still work.
            let logs = try await api.get("/v1/jobs/1/logs", token: fixture.admin).text.split(separator: "\n").compactMap { JSONValue.parse(String($0)) }
            #expect(logs.compactMap { $0["text"]?.string } == ["hello from the previous schema\n", "warn\n"])
            let first = logs.first?["position"]?.int ?? 0
            let rest = try await api.get("/v1/jobs/1/logs?after=\(first)", token: fixture.admin).text
            #expect(rest.split(separator: "\n").compactMap { JSONValue.parse(String($0))?["text"]?.string } == ["warn\n"])

            #expect(try await api.get("/v1/projects/default/secrets", token: fixture.admin).json["items"]?.array.compactMap { $0["name"]?.string } == ["HF_TOKEN"])

            // New writes land beside the old rows: a typed event with its actor, a log line after the old ones.
            #expect(try await api.post("/v1/jobs/3/cancel", token: fixture.admin).status == .ok)
            let cancelled = try await api.get("/v1/jobs/3/events", token: fixture.admin).json["items"]?.array ?? []
            #expect(cancelled.compactMap { $0["kind"]?.string } == ["submitted", "cancelled"])
            #expect(cancelled.last?["actor"]?.string == "admin")
            let node = try Self.text("schema-v4.node-token")
            let allocation = long["allocations"]?[0]?["id"]?.int ?? 0
            let upload = #"{"chunks":[{"sequence":0,"stream":"stdout","text":"after the migration\n"}]}"#
            #expect(try await api.post("/v1/nodes/1/allocations/\(allocation)/logs", token: node, body: upload).status == .noContent)
            let longLogs = try await api.get("/v1/jobs/2/logs", token: fixture.admin).text.split(separator: "\n").compactMap { JSONValue.parse(String($0)) }
            #expect(longLogs.compactMap { $0["text"]?.string } == ["after the migration\n"])
            #expect((longLogs.first?["position"]?.int ?? 0) > (logs.last?["position"]?.int ?? .max), "positions only grow")
        }
    }
}
