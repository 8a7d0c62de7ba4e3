public import FastGPUControlPlane
import FastGPUModel
import FastGPUStore
public import FastGPUStorage
import Foundation
public import Hummingbird
import Logging
import NIOCore
import Synchronization
public import Prometheus
import HTTPTypes
import FastGPUWire

extension HTTPFields {
    static let idempotencyKey = HTTPField.Name("Idempotency-Key")!
    static let requestID = HTTPField.Name("X-Request-Id")!
}

enum APIHeader {
    /// The index of a blocking query's answer: pass it back as `index` to wait for the next change.
    static let index = HTTPField.Name("X-FastGPU-Index")!
}

/// The request context of every v1 route: who is calling and the request's id.
public struct APIRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public var principal: Principal?
    var authenticationFailure: AuthenticationFailure?
    public var requestID: String = ""
    /// The peer's IP address: the key of rate limits before authentication.
    public var remoteAddress: String

    public init(source: Source) {
        coreContext = .init(source: source)
        remoteAddress = source.channel.remoteAddress?.ipAddress ?? "unknown"
    }

    func requirePrincipal() throws -> Principal {
        guard let principal else { throw authenticationFailure ?? .missing }
        return principal
    }
}

/// The routes of the API as registered: the contract test compares them with `openapi.yaml`.
public struct RouteTable: Sendable {
    public struct Route: Hashable, Sendable {
        public var method: String
        public var path: String
    }

    public private(set) var routes: [Route] = []

    mutating func add(_ method: HTTPRequest.Method, _ path: String) {
        routes.append(Route(method: method.rawValue.lowercased(), path: path))
    }
}

/// Builds the router of the v1 API over a control plane.
public struct APIServer: Sendable {
    public let controlPlane: ControlPlane
    public let metrics: APIMetrics
    public let limits: RequestLimits
    /// The long polls open now; shared by every router built from this server.
    public let longPolls: LongPollGate
    let clock: any WallClock
    /// The embedded gateway's metrics, appended to `/metrics`.
    let gatewayMetrics: (@Sendable () -> String)?
    /// The `local` storage backend's objects, served at `/s3` (nil: this server serves none).
    let localStorage: LocalObjectStore?
    /// `http` or `https`: how callers reach this server (presigned URLs of the local backend).
    let scheme: String
    /// The port of this process's gateway once it listens (service replies carry its URL).
    let gatewayAddress: GatewayAddress?
    /// Single sign-on's identity provider (nil: API tokens only).
    let oidc: OIDCProvider?
    /// The bearer `/metrics` asks for (nil: none; it names projects and jobs, so an operator may want one).
    let metricsToken: String?

    public init(controlPlane: ControlPlane, metrics: APIMetrics, limits: RequestLimits = RequestLimits(), clock: any WallClock = SystemWallClock(),
                gatewayMetrics: (@Sendable () -> String)? = nil, localStorage: LocalObjectStore? = nil, scheme: String = "http",
                gatewayAddress: GatewayAddress? = nil, oidc: OIDCProvider? = nil, metricsToken: String? = nil) {
        self.gatewayAddress = gatewayAddress
        self.oidc = oidc
        self.metricsToken = metricsToken
        self.gatewayMetrics = gatewayMetrics
        self.localStorage = localStorage
        self.scheme = scheme
        self.controlPlane = controlPlane
        self.metrics = metrics
        self.limits = limits
        self.clock = clock
        longPolls = LongPollGate(limits: limits)
    }

    /// The OpenAPI document this server implements.
    public static var openAPIDocument: String {
        guard let url = Bundle.module.url(forResource: "openapi", withExtension: "yaml"),
              let text = try? String(contentsOf: url, encoding: .utf8) else { return "" }
        return text
    }

    public func makeRouter() -> (router: Router<APIRequestContext>, routes: RouteTable) {
        let router = Router(context: APIRequestContext.self)
        let index = RouteIndex()
        router.add(middleware: ProblemMiddleware(metrics: metrics, routes: index))
        router.add(middleware: AuthenticationMiddleware(tokens: controlPlane.tokens, clock: clock))
        let buckets = RequestBuckets()
        router.add(middleware: RateLimitMiddleware(limits: limits, buckets: buckets, clock: clock))
        router.add(middleware: AuditMiddleware(audit: controlPlane.audit, clock: clock))
        let route = RouteBuilder(router: router, index: index)
        let cp = controlPlane
        let document = Self.openAPIDocument
        let metrics = self.metrics

        // Health, readiness, metrics, contract: no token needed.
        route(.get, "/healthz") { _, _ in text("ok\n") }
        route(.get, "/readyz") { _, _ in
            let stats = await cp.stats()
            if stats.storeFailed { throw APIProblem(status: .serviceUnavailable, title: "Not ready", detail: "the store failed; restart the server") }
            return text("ready\n")
        }
        let metricsToken = self.metricsToken
        route(.get, "/metrics") { request, _ in
            if let metricsToken {
                // Compared in constant time: the answer must not tell how much of a guess was right.
                let given = Array((request.headers[.authorization] ?? "").utf8), expected = Array("Bearer \(metricsToken)".utf8)
                let difference = given.count == expected.count ? zip(given, expected).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) } : 1
                guard difference == 0 else {
                    throw APIProblem(status: .unauthorized, title: "Unauthorized", detail: "/metrics needs the server's metrics token: Authorization: Bearer …")
                }
            }
            let stats = await cp.stats()
            var response = text(metrics.render(stats) + (gatewayMetrics?() ?? ""))
            response.headers[.contentType] = "text/plain; version=0.0.4"
            return response
        }
        route(.get, "/openapi.yaml") { _, _ in
            var response = text(document)
            response.headers[.contentType] = "application/yaml"
            return response
        }

        jobRoutes(route, buckets: buckets)
        stepRoutes(route)
        nodeRoutes(route)
        projectRoutes(route)
        billingRoutes(route)
        tokenRoutes(route)
        serviceRoutes(route)
        gatewayRoutes(route)
        storageRoutes(route)
        outputRoutes(route)
        dashboardRoutes(route)
        if let localStorage { localStorageRoutes(router, store: localStorage) }
        return (router, route.table)
    }
}

/// Adds routes to a router while it is built, and keeps the list (for the contract and the
/// authorization matrix, which must cover every route). Used only during `makeRouter()`.
final class RouteBuilder {
    let router: Router<APIRequestContext>
    let index: RouteIndex
    private(set) var table = RouteTable()

    init(router: Router<APIRequestContext>, index: RouteIndex) {
        self.router = router
        self.index = index
    }

    func callAsFunction(_ method: HTTPRequest.Method, _ path: String, _ handler: @escaping @Sendable (Request, APIRequestContext) async throws -> Response) {
        table.add(method, path)
        index.add(method: method.rawValue, path: path)
        router.on(RouterPath(path), method: method, use: handler)
    }

    /// A web dashboard page: routed and measured like an endpoint, but not part of the API's contract.
    func page(_ method: HTTPRequest.Method, _ path: String, _ handler: @escaping @Sendable (Request, APIRequestContext) async throws -> Response) {
        index.add(method: method.rawValue, path: path)
        router.on(RouterPath(path), method: method, use: handler)
    }
}

// MARK: - Helpers

/// A path parameter, percent-decoded (`/members/jos%C3%A9` is josé).
func pathParameter(_ context: APIRequestContext, _ name: String) throws -> String {
    let raw = try context.parameters.require(name)
    return raw.removingPercentEncoding ?? raw
}

/// `application/json`, with parameters (`; charset=utf-8`) or as a `+json` type.
func isJSON(contentType: String) -> Bool {
    let type = contentType.split(separator: ";", maxSplits: 1).first.map { $0.trimmingCharacters(in: .whitespaces).lowercased() } ?? ""
    return type == "application/json" || (type.hasPrefix("application/") && type.hasSuffix("+json"))
}

/// A query parameter's value; an empty one (`?after=`) counts as absent.
func nonEmpty(_ value: Substring?) -> String? {
    guard let value, !value.isEmpty else { return nil }
    return String(value)
}

func text(_ string: String) -> Response {
    var headers = HTTPFields()
    headers[.contentType] = "text/plain; charset=utf-8"
    return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: string)))
}

func json<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok) throws -> Response {
    let data = try JSONEncoder().encode(value)
    var headers = HTTPFields()
    headers[.contentType] = "application/json"
    return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data)))
}

/// The JSON body of a request, at most 1 MiB. A body that says it is something else than JSON
/// (a form, text) is refused with 415; one that says nothing is read as JSON.
func body(of request: inout Request) async throws -> [UInt8] {
    if let type = request.headers[.contentType], !isJSON(contentType: type) {
        throw APIProblem(status: .unsupportedMediaType, title: "Unsupported media type", detail: "the body must be JSON: Content-Type: application/json")
    }
    do {
        let buffer = try await request.collectBody(upTo: 1 << 20)
        return buffer.getBytes(at: buffer.readerIndex, length: buffer.readableBytes) ?? []
    } catch {
        throw APIProblem(status: .contentTooLarge, title: "Body too large", detail: "a request body may be at most 1 MiB")
    }
}

func decode<T: Decodable>(_ type: T.Type, from bytes: [UInt8]) throws -> T {
    guard !bytes.isEmpty else { throw APIProblem(status: .badRequest, title: "Bad request", detail: "a JSON body is required") }
    do {
        return try JSONDecoder().decode(type, from: Data(bytes))
    } catch let error as WireError {
        throw error
    } catch let error as DecodingError {
        throw WireError(description: describe(error))
    }
}

func describe(_ error: DecodingError) -> String {
    func path(_ context: DecodingError.Context) -> String {
        let parts = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }
        return parts.isEmpty ? "body" : "field '\(parts.joined(separator: ".").replacingOccurrences(of: ".[", with: "["))'"
    }
    switch error {
    case .keyNotFound(let key, let context):
        return "\(path(DecodingError.Context(codingPath: context.codingPath + [key], debugDescription: ""))) is required"
    case .typeMismatch(let type, let context): return "\(path(context)): expected \(wireTypeName(type))"
    case .valueNotFound(let type, let context): return "\(path(context)): expected \(wireTypeName(type)), found null"
    case .dataCorrupted(let context): return context.codingPath.isEmpty ? "the body is not valid JSON" : "\(path(context)): invalid value"
    @unknown default: return "the body does not match the schema"
    }
}

private func wireTypeName(_ type: Any.Type) -> String {
    switch type {
    case is String.Type: "a string"
    case is Bool.Type: "a boolean"
    case is Int.Type, is Int64.Type, is Int32.Type, is UInt64.Type: "an integer"
    default: type is any Collection.Type ? "an array" : "an object"
    }
}

func jobID(_ context: APIRequestContext) throws -> JobID {
    let text = try context.parameters.require("id")
    guard let id = JobID(parsing: text) else { throw APIProblem(status: .notFound, title: "Not found", detail: "\(quoted(text)) is not a job id") }
    return id
}

func nodeID(_ context: APIRequestContext) throws -> NodeID {
    let text = try context.parameters.require("id")
    guard let id = NodeID(parsing: text) else { throw APIProblem(status: .notFound, title: "Not found", detail: "\(quoted(text)) is not a node id") }
    return id
}

func allocationID(_ context: APIRequestContext) throws -> AllocationID {
    let text = try context.parameters.require("allocation")
    guard let id = AllocationID(parsing: text) else { throw APIProblem(status: .notFound, title: "Not found", detail: "\(quoted(text)) is not an allocation id") }
    return id
}

/// `30s`, `500ms`, `2m`; at most 5 minutes (a longer wait is cut to 5 minutes, as Nomad does).
/// At most 9 digits: a number that large is no wait anyone means, and nothing is multiplied
/// that could overflow.
func parseWait(_ text: String) throws -> Duration {
    let units: [(String, Int64)] = [("ms", 1), ("s", 1000), ("m", 60_000)]
    for (suffix, scale) in units where text.hasSuffix(suffix) {
        if suffix == "s" && text.hasSuffix("ms") { continue }
        let digits = text.dropLast(suffix.count)
        if (1...9).contains(digits.utf8.count), digits.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let value = Int64(digits) {
            return .milliseconds(min(value, 300_000 / scale) * scale)
        }
    }
    throw APIProblem(status: .badRequest, title: "Bad request", detail: "wait must look like 30s, 500ms or 2m (at most 9 digits)")
}

/// An identifier from a path, quoted for an error message: long ones are cut, so a 404 never
/// echoes a megabyte back.
func quoted(_ text: String) -> String {
    text.utf8.count <= 40 ? "'\(text)'" : "'\(String(decoding: text.utf8.prefix(32), as: UTF8.self))…' (\(text.utf8.count) bytes)"
}

/// Where this process's gateway listens, learnt once it does (its port may be chosen by the kernel).
public final class GatewayAddress: Sendable {
    private let port = Mutex<Int?>(nil)

    public init(port: Int? = nil) { self.port.withLock { $0 = port } }

    public func listening(on port: Int) { self.port.withLock { $0 = port } }

    /// `http://HOST:PORT` with the host the caller used to reach the API (`authority`).
    func url(reachedAt authority: String?) -> String? {
        guard let port = port.withLock({ $0 }), let authority, !authority.isEmpty else { return nil }
        var host = authority
        if host.hasPrefix("[") {
            host = String(host[...(host.firstIndex(of: "]") ?? host.index(before: host.endIndex))])
        } else if let colon = host.lastIndex(of: ":") {
            host = String(host[..<colon])
        }
        guard !host.isEmpty, host.allSatisfy({ $0.isLetter || $0.isNumber || ".-:[]".contains($0) }) else { return nil }
        return "http://\(host):\(port)"
    }
}
