import FastGPUAPI
import FastGPUControlPlane
import FastGPUModel
import FastGPUStorage
import FastGPUStore
import FastGPUStorePostgres
import FastGPUStoreSQLite
import Foundation
import PostgresNIO
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Testing

/// A control plane on a temp-file SQLite database with a hand-moved clock, its router, and the
/// bootstrap admin token. Scheduling passes run when a test calls `schedule()`, so every test
/// decides exactly when the scheduler looks.
struct Fixture {
    let path: String
    let clock: ManualClock
    let controlPlane: ControlPlane
    let scheduling: SchedulingService
    let admin: String
    /// The key a restarted control plane gets again, as a server reads its secret-key file.
    let secretBox: SecretBox

    static func temporaryDatabase() -> String {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("fastgpu-api-\(UInt64.random(in: 0...UInt64.max))").path
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        return directory + "/fastgpu.db"
    }

    static func make(path: String? = nil, configuration: ControlPlaneConfiguration = ControlPlaneConfiguration(), clock: ManualClock = ManualClock()) async throws -> Fixture {
        let path = path ?? temporaryDatabase()
        let secretBox = SecretBox.random()
        let assembly = try await ServerAssembly.build(store: try await openStore(path: path), secretBox: secretBox, clock: clock, configuration: configuration,
                                                      localStorage: localStorage(beside: path))
        return Fixture(path: path, clock: clock, controlPlane: assembly.controlPlane, scheduling: assembly.scheduling, admin: assembly.bootstrapToken ?? "",
                       secretBox: secretBox)
    }

    /// The same database opened by a new control plane, as after a restart.
    func restarted() async throws -> Fixture {
        let assembly = try await ServerAssembly.build(store: try await Self.openStore(path: path), secretBox: secretBox, clock: clock,
                                                      configuration: controlPlane.configuration, localStorage: Self.localStorage(beside: path))
        return Fixture(path: path, clock: clock, controlPlane: assembly.controlPlane, scheduling: assembly.scheduling, admin: admin, secretBox: secretBox)
    }

    /// The store the suite runs on: SQLite at `path`, or with `FASTGPU_TEST_STORE=postgres` a
    /// PostgreSQL database of its own on the server `FASTGPU_TEST_POSTGRES` names (one per
    /// path, so a restart opens the same one).
    static func openStore(path: String) async throws -> any ClusterStore {
        let environment = ProcessInfo.processInfo.environment
        guard environment["FASTGPU_TEST_STORE"] == "postgres" else { return try SQLiteClusterStore(path: path) }
        guard let url = environment["FASTGPU_TEST_POSTGRES"].flatMap(URLComponents.init(string:)), let host = url.host else {
            throw StoreError("FASTGPU_TEST_STORE=postgres needs FASTGPU_TEST_POSTGRES=postgres://USER@HOST:PORT/DB")
        }
        func configuration(_ database: String) -> PostgresClient.Configuration {
            PostgresClient.Configuration(host: host, port: url.port ?? 5432, username: url.user ?? "postgres", password: url.password, database: database, tls: .disable)
        }
        let name = postgresDatabase(path: path)
        let admin = PostgresClient(configuration: configuration("postgres"))
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await admin.run() }
            var exists = false
            for try await _ in try await admin.query("SELECT 1 FROM pg_database WHERE datname = \(name)") { exists = true }
            if !exists { try await admin.query(PostgresQuery(unsafeSQL: "CREATE DATABASE \(name)")) }
            group.cancelAll()
        }
        return try await PostgresClusterStore(configuration: configuration(name))
    }

    func openStore() async throws -> any ClusterStore { try await Self.openStore(path: path) }

    static var usesPostgres: Bool { ProcessInfo.processInfo.environment["FASTGPU_TEST_STORE"] == "postgres" }

    /// The database of the fixture whose SQLite file would be `path` (its directory's random digits).
    static func postgresDatabase(path: String) -> String {
        "fastgpu_" + String(path.unicodeScalars.filter { CharacterSet.decimalDigits.contains($0) }.map(Character.init).suffix(40))
    }

    /// Everything the store holds, as bytes an attacker with the disk would see: the SQLite file
    /// and its log, or a `pg_dump` of the PostgreSQL database.
    func storedText() throws -> String {
        guard Self.usesPostgres else {
            return try String(contentsOfFile: path, encoding: .isoLatin1) + ((try? String(contentsOfFile: path + "-wal", encoding: .isoLatin1)) ?? "")
        }
        guard let url = ProcessInfo.processInfo.environment["FASTGPU_TEST_POSTGRES"].flatMap(URLComponents.init(string:)) else { return "" }
        let dump = Process()
        dump.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        dump.arguments = ["pg_dump", "-h", url.host ?? "127.0.0.1", "-p", "\(url.port ?? 5432)", "-U", url.user ?? "postgres", Self.postgresDatabase(path: path)]
        let out = Pipe()
        dump.standardOutput = out
        try dump.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        dump.waitUntilExit()
        return String(decoding: data, as: UTF8.self)
    }

    /// The `local` storage backend's objects, beside the database as a server keeps them.
    static func localStorage(beside path: String) -> LocalObjectStore {
        LocalObjectStore(root: (path as NSString).deletingLastPathComponent + "/objects")
    }

    var localStorage: LocalObjectStore { Self.localStorage(beside: path) }

    @discardableResult
    func schedule() async throws -> Int { try await scheduling.pass() }

    func routes() -> RouteTable { APIServer(controlPlane: controlPlane, metrics: APIMetrics(), clock: clock).makeRouter().routes }

    /// Drives the router in memory. Request limits are off unless a test passes its own (the
    /// hand-moved clock never refills a bucket by itself).
    @discardableResult
    func test<T: Sendable>(limits: RequestLimits = .unlimited, server: APIServer? = nil, _ body: @Sendable (API) async throws -> T) async throws -> T {
        let (router, _) = (server ?? APIServer(controlPlane: controlPlane, metrics: APIMetrics(), limits: limits, clock: clock)).makeRouter()
        let app = Application(router: router)
        return try await app.test(.router) { client in try await body(API(client: client, fixture: self)) }
    }
}

struct Reply {
    var status: HTTPResponse.Status
    var headers: HTTPFields
    var text: String
    var json: JSONValue { JSONValue.parse(text) ?? .null }
    /// The `detail` of a problem+json answer.
    var detail: String { json["detail"]?.string ?? "" }
}

/// A test's view of the API: calls that check every reply against `openapi.yaml`.
struct API {
    let client: any TestClientProtocol
    let fixture: Fixture

    @discardableResult
    func call(_ method: HTTPRequest.Method, _ uri: String, token: String?, body: String? = nil, headers extra: [String: String] = [:],
              sourceLocation: SourceLocation = #_sourceLocation) async throws -> Reply {
        var headers = HTTPFields()
        if let token { headers[.authorization] = "Bearer \(token)" }
        if body != nil { headers[.contentType] = "application/json" }
        for (name, value) in extra { headers[HTTPField.Name(name)!] = value }
        let response = try await client.execute(uri: uri, method: method, headers: headers, body: body.map { ByteBuffer(string: $0) })
        let text = String(buffer: response.body)
        // The web dashboard's pages (`/ui`) are HTML for people, not the API's contract.
        let isPage = uri.hasPrefix("/ui/") || uri == "/ui"
        let problems = isPage ? [] : Contract.shared.check(method: method.rawValue.lowercased(), path: uri, status: Int(response.status.code),
                                                           contentType: response.headers[.contentType], body: text, requestBody: body)
        for problem in problems { Issue.record("contract: \(problem)", sourceLocation: sourceLocation) }
        if response.status.code >= 400 && !isPage {
            #expect(response.headers[.contentType] == "application/problem+json", sourceLocation: sourceLocation)
            #expect(JSONValue.parse(text)?["requestId"]?.string?.isEmpty == false, sourceLocation: sourceLocation)
        }
        return Reply(status: response.status, headers: response.headers, text: text)
    }

    func get(_ uri: String, token: String?, sourceLocation: SourceLocation = #_sourceLocation) async throws -> Reply {
        try await call(.get, uri, token: token, sourceLocation: sourceLocation)
    }

    func post(_ uri: String, token: String?, body: String = "{}", headers: [String: String] = [:], sourceLocation: SourceLocation = #_sourceLocation) async throws -> Reply {
        try await call(.post, uri, token: token, body: body, headers: headers, sourceLocation: sourceLocation)
    }

    /// Submits a job and returns its id.
    func submit(_ token: String, project: String = "default", gpus: Int = 1, extra: String = "", key: String? = nil,
                sourceLocation: SourceLocation = #_sourceLocation) async throws -> UInt64 {
        let reply = try await post("/v1/jobs", token: token, body: #"{"project":"\#(project)","command":["python","train.py"],"resources":{"gpus":\#(gpus)}\#(extra)}"#,
                                   headers: key.map { ["Idempotency-Key": $0] } ?? [:], sourceLocation: sourceLocation)
        #expect(reply.status == .created || reply.status == .ok, "\(reply.text)", sourceLocation: sourceLocation)
        return UInt64(reply.json["id"]?.int ?? 0)
    }

    /// Creates a project (as the admin) and a user token for a member with the given role in it.
    func member(_ subject: String, of project: String, role: String) async throws -> String {
        let exists = try await get("/v1/projects/\(project)", token: fixture.admin)
        if exists.status == .notFound {
            let created = try await post("/v1/projects", token: fixture.admin, body: #"{"name":"\#(project)"}"#)
            #expect(created.status == .created, "\(created.text)")
        }
        let added = try await call(.put, "/v1/projects/\(project)/members/\(subject)", token: fixture.admin, body: #"{"role":"\#(role)"}"#)
        #expect(added.status == .ok, "\(added.text)")
        let token = try await post("/v1/tokens", token: fixture.admin, body: #"{"name":"\#(subject)","subject":"\#(subject)"}"#)
        #expect(token.status == .created, "\(token.text)")
        return token.json["token"]?.string ?? ""
    }

    /// Registers a node with `gpus` H100s through a join token; returns its id and credential.
    func register(_ name: String, gpus: Int = 8) async throws -> (id: UInt64, token: String) {
        let join = try await post("/v1/tokens", token: fixture.admin, body: #"{"name":"join \#(name)","kind":"join"}"#)
        let gpuList = (0..<gpus).map { _ in #"{"model":"H100-80GB","memoryMiB":81559}"# }.joined(separator: ",")
        let reply = try await post("/v1/nodes/register", token: join.json["token"]?.string,
                                   body: #"{"name":"\#(name)","cpuMillis":128000,"memoryMiB":1048576,"gpus":[\#(gpuList)]}"#)
        #expect(reply.status == .created, "\(reply.text)")
        return (UInt64(reply.json["node"]?["id"]?.int ?? 0), reply.json["token"]?.string ?? "")
    }
}
