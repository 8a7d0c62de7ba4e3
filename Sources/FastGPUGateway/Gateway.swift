import AsyncHTTPClient
public import Hummingbird
import HTTPTypes
public import Logging
import NIOCore
import NIOHTTP1
public import ServiceLifecycle
import Foundation
import Synchronization

/// The gateway: routes `/{service}/...` to the service's ready replicas (power of two choices on
/// requests in flight, a per-replica cap), streams bodies both ways, holds requests while a service
/// has no replica that can take them (waking it from zero) and answers 503 with `Retry-After` only
/// when the hold queue is full or a request waited past its timeout. It retries on another replica
/// only a request that never reached one (the connection failed) and whose body it still holds.
public struct Gateway: Sendable {
    public let directory: any ReplicaDirectory
    public let name: String
    let table: GatewayTable
    let client: ProxyClient
    let pool = ReplicaPool()
    var http: HTTPClient { client.get() }
    let logger: Logger
    /// Bodies up to this size are read before forwarding, so a refused connection can be retried
    /// elsewhere; larger ones stream straight through and are never retried.
    static let retryableBodyBytes = 1 << 20

    public init(directory: any ReplicaDirectory, name: String, maxHeldPerService: Int = 1000, logger: Logger = Logger(label: "fastgpu.gateway")) {
        self.directory = directory
        self.name = name
        self.table = GatewayTable(maxHeldPerService: maxHeldPerService)
        self.client = ProxyClient()
        self.logger = logger
    }

    /// The services that keep the routes fresh and report load; run them beside the HTTP server.
    public var services: [any Service] { [RouteSync(gateway: self), LoadReporter(gateway: self), ProxyClientLifetime(client: client, pool: pool)] }

    public var responder: GatewayResponder { GatewayResponder(gateway: self) }

    public func shutdown() async {
        pool.shutdown()
        await client.shutdown()
    }

    // MARK: Routing one request

    /// The gateway's metrics (requests, cold-start waits, latency, in flight, held) in Prometheus' format.
    public func prometheusText() -> String { table.prometheusText(gateway: name) }

    func handle(_ request: Request) async throws -> Response {
        let arrived = ContinuousClock.now
        let path = request.uri.path
        let trimmed = path.drop { $0 == "/" }
        guard let slash = trimmed.firstIndex(of: "/") ?? Optional(trimmed.endIndex), !trimmed.isEmpty else {
            return Self.problem(.notFound, "no service in the path: call /{service}/...")
        }
        let name = String(trimmed[..<slash])
        if name == "_gateway" { return Response(status: .ok, body: .init(byteBuffer: ByteBuffer(string: "ok\n"))) }
        var rest = String(trimmed[slash...])
        if rest.isEmpty { rest = "/" }
        if let query = request.uri.query, !query.isEmpty { rest += "?" + query }
        guard let service = await knownService(name) else { return Self.problem(.notFound, "service \(name) not found") }
        if !service.isPublic {
            let header = request.headers[.authorization]
            let token = header.flatMap { $0.hasPrefix("Bearer ") ? String($0.dropFirst(7)) : nil }
            switch await directory.authorize(token: token, project: service.project) {
            case .allowed: break
            case .unauthenticated:
                var response = Self.problem(.unauthorized, "a valid token is required: Authorization: Bearer fgpu_…")
                response.headers[.wwwAuthenticate] = "Bearer"
                return response
            case .notVisible: return Self.problem(.notFound, "service \(name) not found")
            }
        }
        // A body small enough is held, so a refused connection can go to another replica.
        let request = request
        var buffered: ByteBuffer?
        if let length = request.headers[.contentLength].flatMap(Int.init), length <= Self.retryableBodyBytes {
            buffered = try await request.body.collect(upTo: Self.retryableBodyBytes)
        } else if request.headers[.contentLength] == nil && request.headers[.transferEncoding] == nil {
            buffered = ByteBuffer()
        }
        var tried: Set<UInt64> = []
        while true {
            let asked = ContinuousClock.now
            guard let replica = await replica(for: service, counting: tried.isEmpty) else {
                var response = Self.problem(.serviceUnavailable, "service \(name) has no replica that could take the request in time; retry")
                response.headers[.retryAfter] = "1"
                return response
            }
            do {
                let held = ContinuousClock.now - asked
                return try await forward(request, body: buffered, to: replica, path: rest, service: service, arrived: arrived,
                                         heldMilliseconds: held.components.seconds * 1000 + held.components.attoseconds / 1_000_000_000_000_000)
            } catch where buffered != nil && Self.neverReached(error) && !tried.contains(replica.allocation) {
                tried.insert(replica.allocation)
                // Refused: nothing listens there (the replica died). A connect that timed out may be
                // a replica whose accept queue is full: it stays in rotation.
                if Self.refused(error) { table.markUnreachable(replica) }
                table.release(name, replica)
                logger.info("replica \(replica.host):\(replica.port) of \(name) could not be reached; trying another", metadata: ["error": "\(error)"])
                continue
            } catch let error where Self.timedOut(error) {
                table.release(name, replica)
                return Self.problem(.gatewayTimeout, "service \(name) did not answer within its request timeout")
            } catch {
                table.release(name, replica)
                logger.info("request to \(name) failed", metadata: ["error": "\(error)"])
                return Self.problem(.badGateway, "the replica of \(name) failed the request")
            }
        }
    }

    /// The service's route; a name the gateway does not know yet (created a moment ago, before the
    /// long poll answered) makes it read the routes once more, at most every 200 ms.
    func knownService(_ name: String) async -> GatewayService? {
        if let service = table.service(name) { return service }
        guard table.mayRefresh() else { return nil }
        if let routes = try? await directory.routes(after: 0, wait: .zero) { table.update(routes) }
        return table.service(name)
    }

    /// A replica now, or after waiting in the hold queue (the first held request wakes a service
    /// at zero). Nil: the queue is full or the wait passed the request timeout.
    func replica(for service: GatewayService, counting: Bool = true) async -> GatewayService.Replica? {
        if let replica = table.pick(service.name, counting: counting) { return replica }
        let id = table.nextHeldID()
        let directory = self.directory
        let table = self.table
        let name = self.name
        // The first held request of a service tells the control plane now, not at the next report;
        // the ones behind it wait for the same wake.
        let first = table.heldCount(service.name) == 0
        let timeout = Task {
            if first { try? await directory.report(table.load(gateway: name)) }
            try await Task.sleep(for: service.requestTimeout)
            table.giveUp(service.name, id: id)
        }
        defer { timeout.cancel() }
        return await withCheckedContinuation { continuation in
            _ = table.hold(service.name, continuation, id: id, counting: counting)
        }
    }

    static func timedOut(_ error: any Error) -> Bool {
        if let error = error as? HTTPClientError { return error == .deadlineExceeded || error == .readTimeout }
        return error as? ReplicaPoolError == .timedOut
    }

    static func refused(_ error: any Error) -> Bool {
        let text = String(describing: error)
        return text.contains("Connection refused") || text.contains("connectionRefused")
    }

    /// Whether the request cannot have reached the replica: the connection was never made.
    static func neverReached(_ error: any Error) -> Bool {
        if case .connectFailed = error as? ReplicaPoolError { return true }
        if let error = error as? HTTPClientError, error == .connectTimeout { return true }
        let text = String(describing: error)
        return text.contains("NIOConnectionError") || text.contains("connectTimeout") || text.contains("Connection refused") || text.contains("connectionRefused")
    }

    func forward(_ request: Request, body buffered: ByteBuffer?, to replica: GatewayService.Replica, path: String, service: GatewayService,
                 arrived: ContinuousClock.Instant, heldMilliseconds: Int64) async throws -> Response {
        let table = self.table
        let serviceName = service.name
        @Sendable func observe() {
            let elapsed = ContinuousClock.now - arrived
            table.observe(serviceName, seconds: Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
        }
        guard let buffered else {
            return try await forwardStreaming(request, to: replica, path: path, service: service, heldMilliseconds: heldMilliseconds, observe: observe)
        }
        var head = HTTPRequestHead(version: .http1_1, method: HTTPMethod(rawValue: request.method.rawValue), uri: path)
        for field in request.headers where !Self.hopByHop.contains(field.name) {
            // The caller's FastGPU token is for the platform, not for the model server.
            if field.name == .authorization && field.value.hasPrefix("Bearer fgpu_") { continue }
            head.headers.add(name: field.name.rawName, value: field.value)
        }
        head.headers.add(name: "Host", value: "\(replica.host):\(replica.port)")
        head.headers.add(name: "X-Forwarded-Prefix", value: "/\(service.name)")
        if buffered.readableBytes > 0 || request.method == .post || request.method == .put || request.method == .patch {
            head.headers.add(name: "Content-Length", value: String(buffered.readableBytes))
        }
        // A failure here is released (and maybe retried elsewhere) by the caller.
        let answer = try await pool.send(head, body: buffered, host: replica.host, port: replica.port,
                                         timeout: .nanoseconds(service.requestTimeout.nanosecondsClamped))
        let headers = Self.fields(answer.head.headers, heldMilliseconds: heldMilliseconds)
        let status = HTTPResponse.Status(code: Int(answer.head.status.code))
        switch answer.body {
        case .whole(let bytes):
            table.release(serviceName, replica)
            observe()
            return Response(status: status, headers: headers, body: ResponseBody(byteBuffer: bytes))
        case .stream(let stream):
            let length = answer.head.headers.first(name: "content-length").flatMap(Int.init)
            return Response(status: status, headers: headers, body: ResponseBody(contentLength: length) { writer in
                // The replica counts as busy until its answer has been passed on whole.
                defer { table.release(serviceName, replica) }
                for try await chunk in stream { try await writer.write(chunk) }
                try await writer.finish(nil)
                observe()
            })
        }
    }

    /// A request whose body streams through (over `retryableBodyBytes`, or chunked): sent with the
    /// general-purpose client, which streams the body as it arrives, and never retried.
    func forwardStreaming(_ request: Request, to replica: GatewayService.Replica, path: String, service: GatewayService,
                          heldMilliseconds: Int64, observe: @escaping @Sendable () -> Void) async throws -> Response {
        var outbound = HTTPClientRequest(url: "http://\(replica.host):\(replica.port)\(path)")
        outbound.method = HTTPMethod(rawValue: request.method.rawValue)
        for field in request.headers where !Self.hopByHop.contains(field.name) {
            if field.name == .authorization && field.value.hasPrefix("Bearer fgpu_") { continue }
            outbound.headers.add(name: field.name.rawName, value: field.value)
        }
        outbound.headers.add(name: "X-Forwarded-Prefix", value: "/\(service.name)")
        let length = request.headers[.contentLength].flatMap(Int64.init)
        outbound.body = .stream(request.body, length: length.map { .known($0) } ?? .unknown)
        let table = self.table
        let serviceName = service.name
        let response = try await http.execute(outbound, deadline: .now() + .nanoseconds(service.requestTimeout.nanosecondsClamped))
        let headers = Self.fields(response.headers, heldMilliseconds: heldMilliseconds)
        let body = response.body
        return Response(status: HTTPResponse.Status(code: Int(response.status.code)), headers: headers,
                        body: ResponseBody(contentLength: response.headers.first(name: "content-length").flatMap(Int.init)) { writer in
                            defer { table.release(serviceName, replica) }
                            for try await chunk in body { try await writer.write(chunk) }
                            try await writer.finish(nil)
                            observe()
                        })
    }

    /// The replica's answer headers as passed on: hop-by-hop ones dropped, and how long the request
    /// waited in the gateway for a replica (a cold start, or every replica at its cap).
    static func fields(_ replicaHeaders: HTTPHeaders, heldMilliseconds: Int64) -> HTTPFields {
        var headers = HTTPFields()
        for header in replicaHeaders {
            guard let name = HTTPField.Name(header.name), !Self.hopByHop.contains(name) else { continue }
            headers.append(HTTPField(name: name, value: header.value))
        }
        headers[Self.heldHeader] = String(heldMilliseconds)
        return headers
    }

    static let heldHeader = HTTPField.Name("X-FastGPU-Held-Ms")!

    static let hopByHop: Set<HTTPField.Name> = [.connection, .transferEncoding, .te, .trailer, .upgrade, .proxyAuthorization, .proxyAuthenticate,
                                                 HTTPField.Name("Keep-Alive")!, HTTPField.Name("Host")!, .contentLength]

    static func problem(_ status: HTTPResponse.Status, _ detail: String) -> Response {
        let escaped = detail.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
        let body = #"{"type":"about:blank","title":"\#(status.reasonPhrase)","status":\#(status.code),"detail":"\#(escaped)"}"#
        var headers = HTTPFields()
        headers[.contentType] = "application/problem+json"
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(string: body)))
    }
}

/// The gateway as a Hummingbird responder: no router, one handler (its only job is to proxy).
public struct GatewayResponder: HTTPResponder {
    public typealias Context = BasicRequestContext
    let gateway: Gateway
    public func respond(to request: Request, context: BasicRequestContext) async throws -> Response {
        try await gateway.handle(request)
    }
}

/// Keeps the routes fresh: a long poll on the directory, again as soon as it answers.
struct RouteSync: Service {
    let gateway: Gateway
    func run() async throws {
        try? await cancelWhenGracefulShutdown { try await poll() }
    }

    func poll() async throws {
        var failures = 0
        var first = true
        while !Task.isCancelled {
            do {
                // The first read answers at once: the routes as they are, whatever their version.
                let routes = try await gateway.directory.routes(after: gateway.table.version, wait: first ? .zero : .seconds(30))
                first = false
                gateway.table.update(routes)
                failures = 0
            } catch is CancellationError {
                return
            } catch {
                failures += 1
                gateway.logger.warning("cannot read routes", metadata: ["error": "\(error)"])
                try? await Task.sleep(for: .milliseconds(min(5000, 100 << min(failures, 6))))
            }
        }
    }
}

/// Reports load every second: the autoscaler's input.
struct LoadReporter: Service {
    let gateway: Gateway
    func run() async throws {
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            do { try await Task.sleep(for: .seconds(1)) } catch { return }
            do {
                try await gateway.directory.report(gateway.table.load(gateway: gateway.name))
            } catch {
                gateway.logger.debug("cannot report load", metadata: ["error": "\(error)"])
            }
        }
    }
}

extension Duration {
    var nanosecondsClamped: Int64 {
        let (seconds, attoseconds) = components
        return seconds > 9_000_000_000 ? .max : seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}

/// The HTTP client the gateway forwards with, made on first use (a gateway that never runs
/// holds none) and shut down when the gateway stops.
final class ProxyClient: Sendable {
    private let client = Mutex<HTTPClient?>(nil)

    func get() -> HTTPClient {
        client.withLock { current in
            if let current { return current }
            var configuration = HTTPClient.Configuration()
            configuration.redirectConfiguration = .disallow
            configuration.decompression = .disabled
            // Replicas are many requests to few hosts: the pool must not queue them behind 8 connections.
            configuration.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: 1024)
            configuration.timeout = .init(connect: .seconds(2))
            let made = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
            current = made
            return made
        }
    }

    func shutdown() async {
        let made = client.withLock { current -> HTTPClient? in defer { current = nil }; return current }
        try? await made?.shutdown()
    }
}

/// Shuts the proxy client down after the gateway's server has stopped.
struct ProxyClientLifetime: Service {
    let client: ProxyClient
    let pool: ReplicaPool
    func run() async throws {
        try? await gracefulShutdown()
        pool.shutdown()
        await client.shutdown()
    }
}
