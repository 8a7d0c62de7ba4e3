package import AsyncHTTPClient
package import FastGPUWire
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import NIOTLS
import Synchronization

/// A client of the v1 API, shared by the `fastgpu` command-line tool and the agent. Bodies are the
/// `FastGPUWire` structs the server itself encodes and decodes, so client and server agree by
/// construction; every failure is a `ClientError` that reads as one line.
package struct FastGPUClient: Sendable {
    /// The servers' base URLs (several control planes of one cluster), and which one is in use.
    package let servers: ServerList
    /// The base URL in use now, without a trailing slash.
    package var server: String { servers.current.url }
    package var token: String?
    let http: HTTPClient
    /// The CA file the client trusts for https (nil: the system's roots); the reachability
    /// check shakes hands with it, so a certificate it does not trust fails at once.
    let caFile: String?

    /// `server` is one base URL or several, comma-separated (the control planes of one cluster).
    package init(server: String, token: String?, http: HTTPClient = FastGPUClient.failingFast, caFile: String? = nil) {
        self.init(servers: ServerList(server), token: token, http: http, caFile: caFile)
    }

    /// A client that shares `servers` (and so which one is in use) with others.
    package init(servers: ServerList, token: String?, http: HTTPClient = FastGPUClient.failingFast, caFile: String? = nil) {
        self.caFile = caFile
        self.servers = servers
        self.token = token
        self.http = http
    }

    // MARK: Jobs

    package func submit(_ body: JobSubmissionBody, idempotencyKey: String? = nil) async throws -> JobWire {
        var headers: [(String, String)] = []
        if let idempotencyKey { headers.append(("Idempotency-Key", idempotencyKey)) }
        return try await call(.POST, "/v1/jobs", body: body, headers: headers)
    }

    package func job(_ id: UInt64) async throws -> JobWire {
        try await call(.GET, "/v1/jobs/\(id)")
    }

    /// A blocking query: the job once it changed after `index`, or when `wait` ran out, with the
    /// index to pass next.
    package func job(_ id: UInt64, after index: UInt64, wait: Duration) async throws -> (job: JobWire, index: UInt64) {
        let (job, headers): (JobWire, HTTPHeaders) = try await callWithHeaders(
            .GET, "/v1/jobs/\(id)?index=\(index)&wait=\(wait.wholeMilliseconds)ms", timeout: .milliseconds(wait.wholeMilliseconds + 30_000))
        return (job, headers.first(name: "X-FastGPU-Index").flatMap(UInt64.init) ?? index)
    }

    package func jobs(project: String? = nil, states: [String] = [], limit: Int? = nil, after: String? = nil) async throws -> JobListWire {
        var query: [(String, String)] = []
        if let project { query.append(("project", project)) }
        if !states.isEmpty { query.append(("state", states.joined(separator: ","))) }
        if let limit { query.append(("limit", String(limit))) }
        if let after { query.append(("after", after)) }
        return try await call(.GET, "/v1/jobs" + Self.queryString(query))
    }

    package func cancel(_ id: UInt64) async throws -> JobWire {
        try await call(.POST, "/v1/jobs/\(id)/cancel")
    }

    package func events(of id: UInt64) async throws -> EventListWire {
        try await call(.GET, "/v1/jobs/\(id)/events")
    }

    /// The job's output lines in order, after `position`; with `follow`, until the job finished.
    package func logs(of id: UInt64, after position: Int64 = 0, follow: Bool) -> AsyncThrowingStream<LogLineWire, any Error> {
        AsyncThrowingStream { continuation in
            let task = Task {
                do {
                    var request = try makeRequest(.GET, "/v1/jobs/\(id)/logs?follow=\(follow)&after=\(position)", headers: [])
                    request.headers.add(name: "Accept", value: "application/x-ndjson")
                    let response = try await execute(request, path: "/v1/jobs/\(id)/logs?follow=\(follow)&after=\(position)", timeout: .hours(24 * 365))
                    guard response.status.code == 200 else {
                        let body = try await response.body.collect(upTo: 1 << 20)
                        throw ClientError.reply(status: Int(response.status.code), body: Array(buffer: body), server: server, path: "/v1/jobs/\(id)/logs")
                    }
                    var pending: [UInt8] = []
                    let decoder = JSONDecoder()
                    for try await buffer in response.body {
                        pending.append(contentsOf: buffer.readableBytesView)
                        while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                            let line = pending[..<newline]
                            if !line.isEmpty {
                                continuation.yield(try decoder.decode(LogLineWire.self, from: Data(line)))
                            }
                            pending.removeSubrange(...newline)
                        }
                    }
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }

    package func queue(project: String? = nil) async throws -> QueueListWire {
        try await call(.GET, "/v1/queue" + Self.queryString(project.map { [("project", $0)] } ?? []))
    }

    // MARK: Nodes

    package func nodes() async throws -> NodeListWire { try await call(.GET, "/v1/nodes") }

    package func node(_ id: UInt64) async throws -> NodeWire { try await call(.GET, "/v1/nodes/\(id)") }

    /// `cordon`, `uncordon` or `drain`.
    package func setNodeState(_ id: UInt64, action: String) async throws -> NodeWire {
        try await call(.POST, "/v1/nodes/\(id)/\(action)")
    }

    // MARK: Projects and tokens

    package func projects() async throws -> ProjectListWire { try await call(.GET, "/v1/projects") }

    package func project(_ name: String) async throws -> ProjectWire { try await call(.GET, "/v1/projects/\(Self.escape(name))") }

    package func createProject(_ body: CreateProjectBody) async throws -> ProjectWire { try await call(.POST, "/v1/projects", body: body) }

    package func secrets(project: String) async throws -> SecretListWire {
        try await call(.GET, "/v1/projects/\(Self.escape(project))/secrets")
    }

    package func setSecret(project: String, name: String, value: String) async throws -> SecretWire {
        try await call(.PUT, "/v1/projects/\(Self.escape(project))/secrets/\(Self.escape(name))", body: SecretBody(value: value))
    }

    package func removeSecret(project: String, name: String) async throws {
        let _: NoContent = try await call(.DELETE, "/v1/projects/\(Self.escape(project))/secrets/\(Self.escape(name))")
    }

    package func updateProject(_ name: String, _ body: UpdateProjectBody) async throws -> ProjectWire {
        try await call(.PATCH, "/v1/projects/\(Self.escape(name))", body: body)
    }

    package func setMember(project: String, subject: String, role: String) async throws -> ProjectWire {
        try await call(.PUT, "/v1/projects/\(Self.escape(project))/members/\(Self.escape(subject))", body: MemberBody(role: role))
    }

    package func removeMember(project: String, subject: String) async throws -> ProjectWire {
        try await call(.DELETE, "/v1/projects/\(Self.escape(project))/members/\(Self.escape(subject))")
    }

    // MARK: Storage

    package func storageBackends() async throws -> StorageBackendListWire { try await call(.GET, "/v1/storage/backends") }

    package func setStorageBackend(_ name: String, _ body: StorageBackendBody) async throws -> StorageBackendWire {
        try await call(.PUT, "/v1/storage/backends/\(Self.escape(name))", body: body)
    }

    package func removeStorageBackend(_ name: String) async throws {
        let _: NoContent = try await call(.DELETE, "/v1/storage/backends/\(Self.escape(name))")
    }

    package func presign(_ body: PresignBody) async throws -> PresignWire { try await call(.POST, "/v1/storage/presign", body: body) }

    package func tokens() async throws -> TokenListWire { try await call(.GET, "/v1/tokens") }

    package func audit(after: Int64, limit: Int, subject: String?) async throws -> AuditListWire {
        try await call(.GET, "/v1/audit?after=\(after)&limit=\(limit)" + (subject.map { "&subject=\(Self.escape($0))" } ?? ""))
    }

    package func createToken(_ body: CreateTokenBody) async throws -> TokenWire { try await call(.POST, "/v1/tokens", body: body) }

    package func revokeToken(_ id: UInt64) async throws -> TokenWire { try await call(.POST, "/v1/tokens/\(id)/revoke") }

    package func dashboardLink() async throws -> DashboardLinkWire { try await call(.POST, "/v1/ui/sessions") }

    /// The identity provider the server trusts (no token needed).
    package func oidcConfiguration() async throws -> OIDCConfigurationWire { try await call(.GET, "/v1/auth/oidc") }

    /// An ID token of that provider, exchanged for a session token (no token needed).
    package func oidcSignIn(idToken: String) async throws -> OIDCSessionWire { try await call(.POST, "/v1/auth/oidc", body: OIDCSignInBody(idToken: idToken)) }

    // MARK: The agent's side

    package func registerNode(_ body: RegisterNodeBody) async throws -> RegisteredNodeWire {
        try await call(.POST, "/v1/nodes/register", body: body)
    }

    package func heartbeat(node: UInt64, _ body: HeartbeatBody) async throws -> HeartbeatWire {
        try await call(.POST, "/v1/nodes/\(node)/heartbeat", body: body)
    }

    package func assignments(node: UInt64, after index: UInt64, stepsSeen: UInt64? = nil, wait: Duration) async throws -> AssignmentsWire {
        try await call(.GET, "/v1/nodes/\(node)/assignments?index=\(index)&wait=\(wait.wholeMilliseconds)ms" + (stepsSeen.map { "&steps=\($0)" } ?? ""),
                       timeout: .milliseconds(wait.wholeMilliseconds + 30_000))
    }

    package func startStep(job: UInt64, _ body: StepSubmissionBody) async throws -> StepWire {
        try await call(.POST, "/v1/jobs/\(job)/steps", body: body)
    }

    package func step(job: UInt64, step: UInt64, after version: UInt64, wait: Duration) async throws -> StepWire {
        try await call(.GET, "/v1/jobs/\(job)/steps/\(step)?after=\(version)&wait=\(wait.wholeMilliseconds)ms",
                       timeout: .milliseconds(wait.wholeMilliseconds + 30_000))
    }

    package func reportStep(node: UInt64, allocation: UInt64, step: UInt64, _ body: StepReportBody) async throws {
        let _: NoContent = try await call(.POST, "/v1/nodes/\(node)/allocations/\(allocation)/steps/\(step)", body: body)
    }

    // MARK: Gateways

    package func gatewayRoutes(after version: UInt64, wait: Duration) async throws -> GatewayRoutesWire {
        try await call(.GET, "/v1/gateway/routes?after=\(version)&wait=\(wait.wholeMilliseconds)ms", timeout: .milliseconds(wait.wholeMilliseconds + 30_000))
    }

    package func reportGatewayLoad(_ body: GatewayLoadBody) async throws {
        let _: NoContent = try await call(.POST, "/v1/gateway/load", body: body)
    }

    package func authorizeGatewayCall(_ body: GatewayAuthorizeBody) async throws -> GatewayDecisionWire {
        try await call(.POST, "/v1/gateway/authorize", body: body)
    }

    package func report(node: UInt64, allocation: UInt64, _ body: AllocationStatusBody) async throws {
        let _: NoContent = try await call(.POST, "/v1/nodes/\(node)/allocations/\(allocation)/status", body: body)
    }

    package func reportReadiness(node: UInt64, allocation: UInt64, _ body: ReplicaReadinessBody) async throws {
        let _: NoContent = try await call(.POST, "/v1/nodes/\(node)/allocations/\(allocation)/readiness", body: body)
    }

    // MARK: Services

    package func createService(_ body: ServiceSpecBody) async throws -> ServiceWire { try await call(.POST, "/v1/services", body: body) }

    package func reviseService(_ body: ServiceSpecBody) async throws -> ServiceWire {
        try await call(.PUT, "/v1/services/\(Self.escape(body.name))", body: body)
    }

    package func services(project: String? = nil) async throws -> ServiceListWire {
        try await call(.GET, "/v1/services" + (project.map { "?project=\(Self.escape($0))" } ?? ""))
    }

    package func service(_ name: String) async throws -> ServiceWire { try await call(.GET, "/v1/services/\(Self.escape(name))") }

    package func scaleService(_ name: String, _ body: ScaleServiceBody) async throws -> ServiceWire {
        try await call(.POST, "/v1/services/\(Self.escape(name))/scale", body: body)
    }

    package func deleteService(_ name: String) async throws -> ServiceWire { try await call(.DELETE, "/v1/services/\(Self.escape(name))") }

    package func serviceEvents(_ name: String) async throws -> ServiceEventListWire { try await call(.GET, "/v1/services/\(Self.escape(name))/events") }

    package func reportOutputs(node: UInt64, allocation: UInt64, _ body: OutputsReportBody) async throws {
        let _: NoContent = try await call(.POST, "/v1/nodes/\(node)/allocations/\(allocation)/outputs", body: body)
    }

    package func jobOutputs(_ id: UInt64) async throws -> JobOutputsWire { try await call(.GET, "/v1/jobs/\(id)/outputs") }

    package func retryOutputs(_ id: UInt64) async throws -> JobWire { try await call(.POST, "/v1/jobs/\(id)/outputs/retry") }

    package func uploadLogs(node: UInt64, allocation: UInt64, _ body: LogUploadBody) async throws {
        let _: NoContent = try await call(.POST, "/v1/nodes/\(node)/allocations/\(allocation)/logs", body: body)
    }

    // MARK: Plumbing

    private struct NoBody: Encodable {}
    struct NoContent: Decodable {}

    func call<Reply: Decodable>(_ method: HTTPMethod, _ path: String, timeout: TimeAmount = .seconds(30)) async throws -> Reply {
        try await callWithHeaders(method, path, body: Optional<NoBody>.none, headers: [], timeout: timeout).0
    }

    func call<Reply: Decodable, Body: Encodable>(_ method: HTTPMethod, _ path: String, body: Body, headers: [(String, String)] = [],
                                                        timeout: TimeAmount = .seconds(30)) async throws -> Reply {
        try await callWithHeaders(method, path, body: body, headers: headers, timeout: timeout).0
    }

    private func callWithHeaders<Reply: Decodable>(_ method: HTTPMethod, _ path: String, timeout: TimeAmount) async throws -> (Reply, HTTPHeaders) {
        try await callWithHeaders(method, path, body: Optional<NoBody>.none, headers: [], timeout: timeout)
    }

    private func callWithHeaders<Reply: Decodable, Body: Encodable>(_ method: HTTPMethod, _ path: String, body: Body?, headers: [(String, String)],
                                                                   timeout: TimeAmount) async throws -> (Reply, HTTPHeaders) {
        var request = try makeRequest(method, path, headers: headers)
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            // Sorted keys: the same body is the same bytes in every process.
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            request.body = .bytes(ByteBuffer(bytes: try encoder.encode(body)))
        }
        let response = try await execute(request, path: path, timeout: timeout)
        let buffer: ByteBuffer
        do {
            buffer = try await response.body.collect(upTo: 64 << 20)
        } catch {
            throw ClientError.unreachable(server: server, reason: Self.short(error))
        }
        let bytes = Array(buffer: buffer)
        guard (200..<300).contains(Int(response.status.code)) else {
            throw ClientError.reply(status: Int(response.status.code), body: bytes, server: server, path: path)
        }
        if Reply.self == NoContent.self { return (NoContent() as! Reply, response.headers) }
        do {
            return (try JSONDecoder().decode(Reply.self, from: Data(bytes)), response.headers)
        } catch {
            throw ClientError.badReply("\(method) \(path): the reply is not what this fastgpu understands (\(Self.short(error)))")
        }
    }

    private func makeRequest(_ method: HTTPMethod, _ path: String, headers: [(String, String)]) throws -> HTTPClientRequest {
        var request = HTTPClientRequest(url: server + path)
        request.method = method
        if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        return request
    }

    static func queryString(_ items: [(String, String)]) -> String {
        items.isEmpty ? "" : "?" + items.map { "\($0.0)=\(escape($0.1))" }.joined(separator: "&")
    }

    static func escape(_ text: String) -> String {
        var allowed = CharacterSet.urlPathAllowed
        allowed.remove(charactersIn: "/?&=+#")
        return text.addingPercentEncoding(withAllowedCharacters: allowed) ?? text
    }
}

/// Why a call failed, in one line a person can act on.
package enum ClientError: Error, CustomStringConvertible, Equatable {
    /// No HTTP answer: nothing listens, the network is down, or the reply did not finish.
    case unreachable(server: String, reason: String)
    /// The server answered with a problem (RFC 9457).
    case problem(status: Int, title: String, detail: String)
    /// The server answered something this client cannot read.
    case badReply(String)

    package var status: Int? {
        if case .problem(let status, _, _) = self { return status }
        return nil
    }

    package var description: String {
        switch self {
        case .unreachable(let server, let reason):
            "cannot reach the FastGPU server at \(server) (\(reason)); is it running? (`fastgpu up` starts a local one)"
        case .problem(401, _, let detail):
            "the server refused the token: \(detail); run `fastgpu login` with a valid token"
        case .problem(let status, let title, let detail):
            detail.isEmpty ? "\(title) (HTTP \(status))" : "\(detail) (HTTP \(status))"
        case .badReply(let text):
            text
        }
    }

    static func reply(status: Int, body: [UInt8], server: String, path: String) -> ClientError {
        struct Problem: Decodable { var title: String?; var detail: String? }
        if let problem = try? JSONDecoder().decode(Problem.self, from: Data(body)) {
            return .problem(status: status, title: problem.title ?? "HTTP \(status)", detail: problem.detail ?? "")
        }
        return .problem(status: status, title: "HTTP \(status) from \(server)\(path)", detail: "")
    }
}

extension Duration {
    package var wholeMilliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }
}
