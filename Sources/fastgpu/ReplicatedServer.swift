import AsyncHTTPClient
import FastGPUAPI
import FastGPUClient
import FastGPUControlPlane
import FastGPUStorePostgres
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import Logging
import NIOCore
import NIOHTTP1
import NIOSSL
import ServiceLifecycle
import Synchronization

/// `fastgpu server --store postgres://…`: one of several control planes on one PostgreSQL.
///
/// Every replica listens at once. One leads — it holds the leader lease (`LeaderLease`), keeps
/// the cluster in memory, schedules, judges liveness, scales services and answers the API —
/// and the others follow: they forward every request to the leader and try for the lease every
/// 200 ms. A follower that wins loads the state from the database (everything the old leader
/// acknowledged is there; nothing it had in flight can still commit: its store is fenced by
/// epoch) and starts answering itself. A leader that cannot renew its lease within the lease's
/// life exits (status 75) before anyone else may take over; a supervisor starts it again, as a
/// follower.
enum ReplicatedServer {
    struct Settings {
        var store: PostgresStoreURL
        var password: String?
        var directory: String
        var secretKeyFile: String
        var host: String
        var port: Int
        var advertiseURL: String?
        var leaseTTL: Duration
        var configuration: ControlPlaneConfiguration
        var limits: RequestLimits
        var tls: TLSFiles?
        var tlsCertificateFile: String?
        var oidc: OIDCSettings?
        var metricsToken: String?
    }

    static func run(_ settings: Settings, logger: Logger) async throws {
        do {
            try FileManager.default.createDirectory(atPath: settings.directory, withIntermediateDirectories: true)
        } catch {
            throw CommandFailure("cannot create the data directory \(settings.directory): \(error.localizedDescription)")
        }
        let store: PostgresClusterStore
        do {
            store = try await PostgresClusterStore(url: settings.store, password: settings.password,
                                                   lockTimeout: max(.seconds(1), settings.leaseTTL - .seconds(1)), logger: logger)
        } catch {
            throw CommandFailure("cannot use the store \(settings.store): \(error)")
        }
        // Every replica seals and opens secrets with the same key: copy this file to each.
        let secretBox: SecretBox
        do { secretBox = try SecretBox.loadOrCreate(at: settings.secretKeyFile) } catch { throw CommandFailure("\(error)") }
        let holder = "\(ProcessInfo.processInfo.hostName):\(getpid()):\(UInt32.random(in: 0...UInt32.max))"
        let lease: LeaderLease
        do {
            lease = try LeaderLease(url: settings.store, password: settings.password, holder: holder, ttl: settings.leaseTTL, logger: logger)
        } catch {
            throw CommandFailure("cannot use the store \(settings.store): \(error)")
        }
        let forwarder = LeaderForwarder(store: store, holder: holder, peerCertificates: settings.tlsCertificateFile, logger: logger)
        let role = RoleResponder(forwarder: forwarder)
        let advertised = AdvertisedURL()
        let listener = try APIListener(host: settings.host, port: settings.port, limits: settings.limits, tls: settings.tls, logger: logger)
        let scheme = listener.scheme
        let app = Application(
            responder: role, server: listener.server, configuration: listener.configuration,
            onServerRunning: { channel in
                let url = listener.url(of: channel)
                advertised.set(settings.advertiseURL ?? url)
                FileHandle.standardOutput.write(Data("fastgpu server listening on \(url) (store \(settings.store), following until it leads)\n".utf8))
            },
            logger: logger)
        let leadership = Leadership(store: store, lease: lease, role: role, advertised: advertised, logger: logger) {
            let assembly = try await ServerAssembly.build(store: store, secretBox: secretBox, configuration: settings.configuration,
                                                          limits: settings.limits, logger: logger, localStorage: nil, scheme: scheme, oidc: settings.oidc,
                                                          metricsToken: settings.metricsToken)
            if let token = assembly.bootstrapToken, writeAdminToken(token, directory: settings.directory, logger: logger) == nil {
                logger.critical("cannot write the first admin token to \(settings.directory)/admin-token")
            }
            return assembly
        }
        let group = ServiceGroup(configuration: .init(services: [.init(service: app), .init(service: leadership)],
                                                      gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        do {
            try await group.run()
        } catch {
            try? await forwarder.http.shutdown()
            store.shutdown()
            throw error
        }
        try? await forwarder.http.shutdown()
        store.shutdown()
    }
}

/// This process's own URL, as the lease row tells followers; known once the listener runs.
final class AdvertisedURL: Sendable {
    private let state = Mutex<(url: String?, waiting: [(id: UInt64, continuation: CheckedContinuation<String, any Error>)])>((nil, []))

    func set(_ url: String) {
        let waiting = state.withLock { state -> [(id: UInt64, continuation: CheckedContinuation<String, any Error>)] in
            state.url = url
            defer { state.waiting = [] }
            return state.waiting
        }
        for waiter in waiting { waiter.continuation.resume(returning: url) }
    }

    /// The URL once known; throws `CancellationError` when the waiting task is cancelled (a
    /// listener that never started, or a stop before it did).
    func value() async throws -> String {
        let id = UInt64.random(in: 0...UInt64.max)
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<String, any Error>) in
                let known = state.withLock { state -> String? in
                    if let url = state.url { return url }
                    state.waiting.append((id, continuation))
                    return nil
                }
                if let known { continuation.resume(returning: known) }
                // Cancelled before the waiter was recorded: `onCancel` found nothing to resume.
                if Task.isCancelled { cancelWaiter(id) }
            }
        } onCancel: {
            cancelWaiter(id)
        }
    }

    private func cancelWaiter(_ id: UInt64) {
        let waiter = state.withLock { state -> CheckedContinuation<String, any Error>? in
            guard let index = state.waiting.firstIndex(where: { $0.id == id }) else { return nil }
            return state.waiting.remove(at: index).continuation
        }
        waiter?.resume(throwing: CancellationError())
    }
}

/// Answers as the leader once this process leads, and forwards to the leader until then.
final class RoleResponder: HTTPResponder, Sendable {
    typealias Context = APIRequestContext
    private let leading = Mutex<RouterResponder<APIRequestContext>?>(nil)
    let forwarder: LeaderForwarder

    init(forwarder: LeaderForwarder) { self.forwarder = forwarder }

    func lead(_ responder: RouterResponder<APIRequestContext>) { leading.withLock { $0 = responder } }

    func follow() { leading.withLock { $0 = nil } }

    func respond(to request: Request, context: APIRequestContext) async throws -> Response {
        if let responder = leading.withLock({ $0 }) { return try await responder.respond(to: request, context: context) }
        return try await forwarder.respond(to: request, context: context)
    }
}

/// A follower's API: every request goes to the leader as it came (method, path, headers, body)
/// and its answer comes back as it is, streamed (logs that follow, blocking queries). When no
/// leader holds the lease, or the leader cannot be reached, the request was not applied: 503
/// with `Retry-After: 1`. When the leader fails while it has the request, its outcome is not
/// known: 502 (a write with an `Idempotency-Key` may be sent again safely).
final class LeaderForwarder: Sendable {
    let store: PostgresClusterStore
    let holder: String
    let logger: Logger
    /// The leader last looked up, and when.
    private let cached = Mutex<(leader: LeaderLease.Leader, at: ContinuousClock.Instant)?>(nil)
    static let maxBodyBytes = 64 << 20

    let http: HTTPClient

    /// `peerCertificates`: this server's own `--tls-cert` file, trusted besides the system's
    /// roots, so that replicas sharing a certificate from a private CA reach each other.
    init(store: PostgresClusterStore, holder: String, peerCertificates: String?, logger: Logger) {
        self.store = store
        self.holder = holder
        self.logger = logger
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool.retryConnectionEstablishment = false
        // Agents' blocking queries each hold a connection to the leader for their whole wait.
        configuration.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = 4096
        configuration.redirectConfiguration = .disallow
        configuration.decompression = .disabled
        if let peerCertificates {
            var tls = TLSConfiguration.makeClientConfiguration()
            tls.additionalTrustRoots = [.file(peerCertificates)]
            configuration.tlsConfiguration = tls
        }
        http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }

    static let hopByHop: Set<String> = ["connection", "keep-alive", "transfer-encoding", "te", "upgrade", "host", "content-length",
                                        "proxy-connection", "trailer"]

    func leader() async -> LeaderLease.Leader? {
        if let hit = cached.withLock({ $0 }), ContinuousClock.now - hit.at < .seconds(1) { return hit.leader }
        let found = try? await store.leader()
        cached.withLock { $0 = found.map { ($0, ContinuousClock.now) } }
        return found
    }

    /// Set on every forwarded request: a follower never forwards one again (two followers that
    /// each think the other leads, or one that advertises an address that reaches itself).
    static let forwardedBy = HTTPField.Name("FastGPU-Forwarded-By")!

    func respond(to request: Request, context: APIRequestContext) async throws -> Response {
        if request.uri.path == "/healthz" { return Response(status: .ok, headers: [.contentType: "text/plain"], body: ResponseBody(byteBuffer: ByteBuffer(string: "ok\n"))) }
        guard request.headers[Self.forwardedBy] == nil else {
            cached.withLock { $0 = nil }
            return Self.problem(.serviceUnavailable, "No leader here", "this control plane does not lead (any more); retry in a second", retryAfter: 1)
        }
        guard let leader = await leader(), leader.holder != holder else {
            return Self.problem(.serviceUnavailable, "No leader", "the control planes are choosing a leader; retry in a second", retryAfter: 1)
        }
        let body: ByteBuffer
        do {
            body = try await request.body.collect(upTo: Self.maxBodyBytes)
        } catch {
            return Self.problem(.contentTooLarge, "Request too large", "a request body may be at most \(Self.maxBodyBytes >> 20) MiB")
        }
        var out = HTTPClientRequest(url: leader.url + request.uri.description)
        out.method = NIOHTTP1.HTTPMethod(rawValue: request.method.rawValue)
        for field in request.headers where !Self.hopByHop.contains(field.name.canonicalName) {
            out.headers.add(name: field.name.canonicalName, value: field.value)
        }
        out.headers.add(name: Self.forwardedBy.canonicalName, value: holder)
        if body.readableBytes > 0 || [.post, .put, .patch].contains(request.method) { out.body = .bytes(body) }
        let response: HTTPClientResponse
        do {
            response = try await http.execute(out, timeout: .minutes(30))
        } catch {
            cached.withLock { $0 = nil }
            let text = String(describing: error)
            if text.contains("refused") || text.contains("connectTimeout") {
                return Self.problem(.serviceUnavailable, "Leader unreachable", "the leader at \(leader.url) is not answering; a new one is being chosen; retry", retryAfter: 1)
            }
            logger.warning("forwarding to the leader failed", metadata: ["leader": "\(leader.url)", "error": "\(text.prefix(200))"])
            return Self.problem(.badGateway, "Leader failed", "the leader failed while it had this request, so whether it was applied is unknown; a write sent again with the same Idempotency-Key is applied once")
        }
        var headers = HTTPFields()
        for (name, value) in response.headers where !Self.hopByHop.contains(name.lowercased()) {
            if let fieldName = HTTPField.Name(name) { headers.append(HTTPField(name: fieldName, value: value)) }
        }
        return Response(status: HTTPResponse.Status(code: Int(response.status.code), reasonPhrase: response.status.reasonPhrase),
                        headers: headers, body: ResponseBody(asyncSequence: response.body))
    }

    static func problem(_ status: HTTPResponse.Status, _ title: String, _ detail: String, retryAfter: Int? = nil) -> Response {
        let object: [String: Any] = ["type": "about:blank", "title": title, "status": status.code, "detail": detail]
        let json = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data()
        var headers: HTTPFields = [.contentType: "application/problem+json"]
        if let retryAfter { headers[.retryAfter] = "\(retryAfter)" }
        return Response(status: status, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: json)))
    }
}

/// When the last renewal that succeeded was sent: the lease holds until `ttl` after it.
final class RenewalTime: Sendable {
    private let instant = Mutex(ContinuousClock.now)
    func set(_ value: ContinuousClock.Instant) { instant.withLock { $0 = value } }
    func get() -> ContinuousClock.Instant { instant.withLock { $0 } }
}

/// Waits for the lease, then leads: loads the state, answers the API, runs scheduling,
/// liveness and the service reconciler, and renews the lease until it stops or loses it.
struct Leadership: Service {
    let store: PostgresClusterStore
    let lease: LeaderLease
    let role: RoleResponder
    let advertised: AdvertisedURL
    let logger: Logger
    let build: @Sendable () async throws -> ServerAssembly

    init(store: PostgresClusterStore, lease: LeaderLease, role: RoleResponder, advertised: AdvertisedURL, logger: Logger,
         build: @escaping @Sendable () async throws -> ServerAssembly) {
        self.store = store
        self.lease = lease
        self.role = role
        self.advertised = advertised
        self.logger = logger
        self.build = build
    }

    func run() async throws {
        let url: String
        do { url = try await cancelWhenGracefulShutdown { try await advertised.value() } } catch { return }
        let renewedAt = RenewalTime()
        let taken: Int64?
        do {
        taken = try await cancelWhenGracefulShutdown { [lease, logger] in
            var warned = false
            while true {
                let sent = ContinuousClock.now
                do {
                    if let epoch = try await lease.tryAcquire(url: url) {
                        renewedAt.set(sent)
                        return epoch
                    }
                } catch {
                    if !warned { logger.warning("cannot reach the leader lease; retrying", metadata: ["error": "\(String(describing: error).prefix(200))"]) }
                    warned = true
                }
                try await Task.sleep(for: .milliseconds(200))
            }
        }
        } catch is CancellationError {
            return  // stopped while following
        }
        guard let epoch = taken else { return }
        store.fence(holder: lease.holder, epoch: epoch)
        let ttl = lease.ttl
        do {
            try await cancelWhenGracefulShutdown {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    // From the moment the lease is taken — loading a large state must not let it run out.
                    // Renews often; stops this process when a renewal says the lease is gone or fails.
                    group.addTask {
                        while true {
                            try await Task.sleep(for: ttl / 6)
                            let sent = ContinuousClock.now
                            let renewed: Bool
                            do { renewed = try await lease.renew(epoch: epoch) } catch {
                                Self.stop("cannot renew the leader lease (\(String(describing: error).prefix(200)))", logger: logger)
                            }
                            guard renewed else { Self.stop("another control plane holds the leader lease", logger: logger) }
                            renewedAt.set(sent)
                        }
                    }
                    // Stops this process before the database could give the lease to another, and
                    // at once when the lease's own connection is gone (the lease is free from then on).
                    group.addTask {
                        while true {
                            try await Task.sleep(for: .milliseconds(50))
                            let since = ContinuousClock.now - renewedAt.get()
                            if since > ttl - .milliseconds(250) { Self.stop("no renewal of the leader lease for \(since.wholeMilliseconds) ms", logger: logger) }
                            if lease.connectionLost { Self.stop("the leader lease's connection to the database is gone", logger: logger) }
                        }
                    }
                    let started = ContinuousClock.now
                    let assembly: ServerAssembly
                    do {
                        assembly = try await build()
                    } catch {
                        Self.stop("cannot load the state as the new leader: \(error)", logger: logger)
                    }
                    role.lead(assembly.api.makeRouter().router.buildResponder())
                    logger.notice("leading", metadata: ["epoch": "\(epoch)", "url": "\(url)", "loaded-ms": "\((ContinuousClock.now - started).wholeMilliseconds)"])
                    FileHandle.standardOutput.write(Data("fastgpu server leading (epoch \(epoch)) at \(url)\n".utf8))
                    // A leader whose store refuses writes (a failed or fenced commit) serves no one: hand over.
                    group.addTask {
                        while true {
                            try await Task.sleep(for: .seconds(1))
                            if await assembly.controlPlane.stats().storeFailed { Self.stop("the store refused a commit", logger: logger) }
                        }
                    }
                    group.addTask { try await assembly.scheduling.run() }
                    group.addTask { try await assembly.liveness.run() }
                    group.addTask { try await assembly.serviceReconciler.run() }
                    try await group.next()
                    group.cancelAll()
                }
            }
        } catch is CancellationError {}
        // A graceful stop hands the lease over at once; requests still arriving go to the successor.
        role.follow()
        await lease.resign(epoch: epoch)
        logger.notice("resigned the leader lease", metadata: ["epoch": "\(epoch)"])
    }

    /// Leading without the lease would let two control planes act at once: stop now, without
    /// the graceful path (a supervisor starts this process again, as a follower).
    static func stop(_ reason: String, logger: Logger) -> Never {
        logger.critical("stepping down: \(reason); exiting so that only the new leader acts")
        FileHandle.standardError.write(Data("fastgpu server: stepping down: \(reason)\n".utf8))
        exit(75)
    }
}
