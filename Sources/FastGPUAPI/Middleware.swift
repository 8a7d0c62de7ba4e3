public import FastGPUControlPlane
import FastGPUModel
import FastGPUStore
import Foundation
public import Hummingbird
import Logging
import NIOCore
public import Prometheus
import Synchronization
import FastGPUWire

struct MethodNotAllowed: Error {
    var allowed: [String]
}

/// The registered routes by method, for answering 405 instead of 404 to a wrong method.
final class RouteIndex: Sendable {
    private let routes = Mutex<[(method: String, parts: [Substring])]>([])

    func add(method: String, path: String) { routes.withLock { $0.append((method, path.split(separator: "/"))) } }

    func methods(forPath path: String) -> [String] {
        let parts = path.split(separator: "/")
        return routes.withLock { routes in
            let matching = routes.filter { route in
                route.parts.count == parts.count && zip(route.parts, parts).allSatisfy { $0.hasPrefix("{") || $0 == $1 }
            }
            // A literal segment wins over a parameter: /v1/nodes/register is not /v1/nodes/{id}.
            func literals(_ route: (method: String, parts: [Substring])) -> Int { route.parts.filter { !$0.hasPrefix("{") }.count }
            let best = matching.map(literals).max() ?? 0
            return Array(Set(matching.filter { literals($0) == best }.map(\.method))).sorted()
        }
    }
}

/// An error with the status and words the caller sees.
struct APIProblem: Error {
    var status: HTTPResponse.Status
    var title: String
    var detail: String
    /// The request field at fault, named in the problem body.
    var field: String? = nil
}

/// Every error becomes application/problem+json with the request's id; nothing internal (a
/// stack, a SQL message, a type name) reaches the caller — unexpected errors go to the log and
/// answer a plain 500. Also times each request by route for `/metrics`.
struct ProblemMiddleware: RouterMiddleware {
    typealias Context = APIRequestContext
    let metrics: APIMetrics
    let routes: RouteIndex
    private static let counter = Atomic<UInt64>(0)

    func handle(_ request: Request, context: APIRequestContext, next: (Request, APIRequestContext) async throws -> Response) async throws -> Response {
        var context = context
        let requestID = request.headers[HTTPFields.requestID].flatMap { InputText.problem($0, field: "", maxBytes: 128) == nil ? $0 : nil }
            ?? String(Self.counter.wrappingAdd(1, ordering: .relaxed).newValue, radix: 36)
        context.requestID = requestID
        let started = ContinuousClock.now
        var response: Response
        do {
            response = try await next(request, context)
        } catch let error as HTTPError where error.status == .notFound {
            // No route for this method: 405 with the methods the path does answer, else 404.
            let allowed = routes.methods(forPath: request.uri.path)
            let failure: any Error = allowed.isEmpty ? error : MethodNotAllowed(allowed: allowed)
            response = Self.problem(for: failure, requestID: requestID, logger: context.logger)
        } catch {
            response = Self.problem(for: error, requestID: requestID, logger: context.logger)
        }
        response.headers[HTTPFields.requestID] = requestID
        metrics.observe(route: context.endpointPath ?? "unmatched", method: request.method.rawValue, status: response.status.code, duration: ContinuousClock.now - started)
        return response
    }

    static func problem(for error: any Error, requestID: String, logger: Logger) -> Response {
        let (status, title, detail, headers) = classify(error, requestID: requestID, logger: logger)
        // A detail may quote what the caller sent: never more than a line's worth of it.
        let shown = detail.utf8.count <= 512 ? detail : String(decoding: detail.utf8.prefix(500), as: UTF8.self) + "… (cut)"
        let problem = ProblemWire(type: "about:blank", title: title, status: Int(status.code), detail: shown, requestId: requestID,
                                  field: (error as? APIProblem)?.field)
        let data = (try? JSONEncoder().encode(problem)) ?? Data()
        var fields = headers
        fields[.contentType] = "application/problem+json"
        return Response(status: status, headers: fields, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    /// The status, words and headers an error is answered with.
    static func classify(_ error: any Error, requestID: String, logger: Logger?) -> (HTTPResponse.Status, String, String, HTTPFields) {
        let status: HTTPResponse.Status
        let title: String
        let detail: String
        var headers = HTTPFields()
        switch error {
        case let problem as APIProblem:
            (status, title, detail) = (problem.status, problem.title, problem.detail)
        case let error as ControlPlaneError:
            switch error {
            case .notFound(let m): (status, title, detail) = (.notFound, "Not found", m)
            case .forbidden(let m): (status, title, detail) = (.forbidden, "Forbidden", m)
            case .invalid(let m): (status, title, detail) = (.unprocessableContent, "Unprocessable request", m)
            case .conflict(let m): (status, title, detail) = (.conflict, "Conflict", m)
            case .unavailable(let m): (status, title, detail) = (.serviceUnavailable, "Unavailable", m)
            case .budgetExhausted(let m): (status, title, detail) = (HTTPResponse.Status(code: 402, reasonPhrase: "Payment Required"), "Budget exhausted", m)
            case .tooMany(let m):
                (status, title, detail) = (.tooManyRequests, "Too many requests", m)
                headers[.retryAfter] = "5"
            }
        case let error as WireError:
            (status, title, detail) = (.badRequest, "Bad request", error.description)
        case is AuthenticationFailure:
            (status, title, detail) = (.unauthorized, "Unauthorized", "a valid token is required: Authorization: Bearer fgpu_…")
            headers[.wwwAuthenticate] = "Bearer"
            logger?.info("authentication failed", metadata: ["reason": "\(error)"])
        case let error as HTTPError:
            status = error.status
            title = error.status.reasonPhrase
            detail = error.status == .notFound ? "no such route" : (error.status == .methodNotAllowed ? "method not allowed on this route" : error.status.reasonPhrase)
        case let error as RateLimited:
            (status, title, detail) = (.tooManyRequests, "Too many requests", "this caller sent more requests than its rate allows; retry after \(error.retryAfterSeconds) s")
            headers[.retryAfter] = String(error.retryAfterSeconds)
        case let error as MethodNotAllowed:
            (status, title, detail) = (.methodNotAllowed, "Method not allowed", "this route answers \(error.allowed.joined(separator: ", "))")
            headers[.allow] = error.allowed.joined(separator: ", ")
        default:
            (status, title, detail) = (.internalServerError, "Internal error", "the server failed; the request id is in the server's log")
            logger?.error("request failed", metadata: ["error": "\(error)", "request": "\(requestID)"])
        }
        return (status, title, detail, headers)
    }
}

/// Appends an audit record for every mutating request (POST, PUT, PATCH, DELETE) and every
/// request refused for its credential (401), with the status it was answered. It runs inside
/// authentication (it knows who) and outside the routes (it sees their errors); requests the
/// rate limit refused are not recorded, so a flood cannot fill the log.
struct AuditMiddleware: RouterMiddleware {
    typealias Context = APIRequestContext
    let audit: AuditLog
    let clock: any WallClock

    func handle(_ request: Request, context: APIRequestContext, next: (Request, APIRequestContext) async throws -> Response) async throws -> Response {
        let mutating = request.method != .get && request.method != .head && request.method != .options
        do {
            let response = try await next(request, context)
            if mutating { await record(request, context, status: Int(response.status.code)) }
            return response
        } catch {
            let status = Int(ProblemMiddleware.classify(error, requestID: context.requestID, logger: nil).0.code)
            if mutating || status == 401 { await record(request, context, status: status) }
            throw error
        }
    }

    private func record(_ request: Request, _ context: APIRequestContext, status: Int) async {
        let path = request.uri.path
        let target = path.utf8.count <= 256 ? path : String(decoding: path.utf8.prefix(256), as: UTF8.self) + "…"
        let failure: String? = context.principal == nil ? "\(context.authenticationFailure ?? .missing)" : nil
        await audit.record(AuditRecord(time: clock.now(), subject: context.principal?.subject ?? "", tokenID: context.principal?.tokenID,
                                       action: "\(request.method.rawValue) \(context.endpointPath ?? "unmatched")", target: target,
                                       remoteAddress: context.remoteAddress, status: status, failure: status == 401 ? failure : nil,
                                       requestID: context.requestID))
    }
}

/// Reads `Authorization: Bearer …` and puts its principal, or why it was refused, in the
/// context. Routes that need a caller ask for it (and answer 401 with a bad token); the public
/// ones (health, metrics, the document) ignore the header.
struct AuthenticationMiddleware: RouterMiddleware {
    typealias Context = APIRequestContext
    let tokens: TokenTable
    let clock: any WallClock

    func handle(_ request: Request, context: APIRequestContext, next: (Request, APIRequestContext) async throws -> Response) async throws -> Response {
        guard let header = request.headers[.authorization] else {
            // The web dashboard's pages (and only they) take the session cookie: the API never
            // does, so no other site can make a browser call it with the user's rights.
            guard Dashboard.isPage(request.uri.path), let session = Dashboard.sessionCookie(request.headers) else {
                return try await next(request, context)
            }
            var context = context
            switch tokens.authenticate(session, now: clock.now()) {
            case .success(let principal): context.principal = principal
            case .failure(let failure): context.authenticationFailure = failure
            }
            return try await next(request, context)
        }
        var context = context
        if header.hasPrefix("Bearer ") {
            switch tokens.authenticate(String(header.dropFirst(7)), now: clock.now()) {
            case .success(let principal): context.principal = principal
            case .failure(let failure): context.authenticationFailure = failure
            }
        } else {
            context.authenticationFailure = .malformed
        }
        return try await next(request, context)
    }
}

/// The Prometheus registry of the control plane and the API.
public final class APIMetrics: SchedulingObserver, Sendable {
    public let registry: PrometheusCollectorRegistry
    private let placements: Counter
    private let passes: Counter
    private let decisionLatency: DurationHistogram
    private let commitLatency: DurationHistogram
    private let routes = Mutex<[String: DurationHistogram]>([:])
    private static let buckets: [Duration] = [.microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2.5), .milliseconds(5),
                                              .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250), .seconds(1), .seconds(5)]

    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.registry = registry
        placements = registry.makeCounter(name: "fastgpu_placements_total", help: "Placements committed by the scheduler.")
        passes = registry.makeCounter(name: "fastgpu_scheduling_passes_total", help: "Scheduling passes run.")
        decisionLatency = registry.makeDurationHistogram(name: "fastgpu_scheduling_decision_seconds", buckets: Self.buckets,
                                                         help: "Time of one scheduling pass's decision (scheduler and start estimates).")
        commitLatency = registry.makeDurationHistogram(name: "fastgpu_scheduling_commit_seconds", buckets: Self.buckets,
                                                       help: "Time to verify and durably commit one pass's plan.")
    }

    public func passFinished(placements: Int, pending: Int, decisionNanoseconds: Int64, commitNanoseconds: Int64) {
        self.placements.increment(by: Int64(placements))
        passes.increment()
        decisionLatency.recordNanoseconds(decisionNanoseconds)
        commitLatency.recordNanoseconds(commitNanoseconds)
    }

    func observe(route: String, method: String, status: Int, duration: Duration) {
        let key = "\(method) \(route)"
        let histogram = routes.withLock { table in
            if let existing = table[key] { return existing }
            let made = registry.makeDurationHistogram(name: "fastgpu_api_request_seconds", labels: [("method", method), ("route", route)], buckets: Self.buckets)
            table[key] = made
            return made
        }
        histogram.record(duration)
    }

    /// The registry's counters and histograms (scheduling passes, API requests), then the
    /// cluster's state as it is now (`ClusterMetrics`): series of things that are gone (a node,
    /// a job's label on a GPU) disappear instead of staying at their last value.
    func render(_ stats: ControlPlaneStats) -> String {
        registry.emitToString() + ClusterMetrics.text(stats)
    }
}
