package import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import NIOTLS
import Synchronization

// How a client reaches its servers: the process's HTTP clients, the reachability check, and
// sending a request with a move to the next control plane when one fails. The endpoints are in
// FastGPUClient.swift.
extension FastGPUClient {
    /// An HTTP client that trusts the certificate authorities in `caFile` (PEM) for a server
    /// with a private CA (`fastgpu server --tls-cert`), or the shared one (the system's roots)
    /// when nil. One per file for the life of the process: an HTTPClient must never be
    /// released without a shutdown.
    package static func http(caFile: String?) throws -> HTTPClient {
        guard let caFile else { return failingFast }
        return try trustingClients.withLock { clients in
            if let client = clients[caFile] { return client }
            guard FileManager.default.isReadableFile(atPath: caFile) else { throw ClientError.badReply("cannot read the CA file \(caFile)") }
            var tls = TLSConfiguration.makeClientConfiguration()
            tls.trustRoots = .file(caFile)
            var configuration = HTTPClient.Configuration(tlsConfiguration: tls)
            configuration.connectionPool.retryConnectionEstablishment = false
            let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
            clients[caFile] = client
            return client
        }
    }

    private static let trustingClients = Mutex<[String: HTTPClient]>([:])

    /// The process's HTTP client: a refused connection fails the request at once (AsyncHTTPClient
    /// would retry it until the request's deadline), so a client moves on to the next server
    /// of its list, or its caller's retry loop runs, without waiting out a dead server.
    package static let failingFast: HTTPClient = {
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool.retryConnectionEstablishment = false
        configuration.redirectConfiguration = .disallow
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }()

    /// Fails at once when nothing listens at the server's address. (AsyncHTTPClient retries a
    /// refused connection until the request's deadline, which would keep a person waiting 30 s
    /// for "connection refused".)
    package func checkReachable(timeout: Duration = .seconds(5)) async throws {
        // With several servers, the first that answers becomes the one in use.
        var failure: (any Error)?
        for _ in servers.urls {
            let current = servers.current
            do {
                try await checkReachable(current.url, timeout: timeout)
                return
            } catch {
                failure = failure ?? error
                servers.moveOn(from: current.index)
            }
        }
        if let failure { throw failure }
    }

    private func checkReachable(_ server: String, timeout: Duration) async throws {
        guard let url = URL(string: server), let host = url.host else { throw ClientError.badReply("'\(server)' is not a server URL") }
        let port = url.port ?? (url.scheme == "https" ? 443 : 80)
        do {
            var tlsContext: NIOSSLContext?
            if url.scheme == "https" {
                // AsyncHTTPClient retries a refused handshake until its deadline (30 s): a
                // certificate the client does not trust is better said at once.
                var tls = TLSConfiguration.makeClientConfiguration()
                if let caFile { tls.trustRoots = .file(caFile) }
                tlsContext = try NIOSSLContext(configuration: tls)
            }
            let context = tlsContext
            // Made after everything that may throw: a promise must be completed on every path.
            let loop = MultiThreadedEventLoopGroup.singleton.next()
            let handshake = loop.makePromise(of: Void.self)
            let hostname = host.contains(":") || host.split(separator: ".").allSatisfy({ Int($0) != nil }) ? nil : host
            let connecting = ClientBootstrap(group: loop)
                .connectTimeout(.milliseconds(timeout.wholeMilliseconds))
                .channelInitializer { channel in
                    guard let context else { return channel.eventLoop.makeSucceededVoidFuture() }
                    return channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(try NIOSSLClientHandler(context: context, serverHostname: hostname))
                        try channel.pipeline.syncOperations.addHandler(HandshakeWatcher(done: handshake))
                    }
                }
                .connect(host: host, port: port)
            let channel: any Channel
            do {
                channel = try await connecting.get()
            } catch {
                handshake.fail(error)
                throw error
            }
            if context == nil { handshake.succeed() }
            defer { channel.close(promise: nil) }
            try await handshake.futureResult.get()
        } catch {
            throw ClientError.unreachable(server: server, reason: Self.short(error))
        }
    }

    /// Sends `request` to `path` on the server in use. With several servers, a request that
    /// never reached one (refused, or no connection within the deadline) goes to the next, and
    /// so does one that may have reached it when sending it twice does no harm (a read, or a
    /// write with an `Idempotency-Key`). A 503 with `Retry-After` (a control plane between
    /// leaders, or one that stopped accepting writes) is asked again after that wait, for up
    /// to 30 s: the request was not applied.
    func execute(_ template: HTTPClientRequest, path: String, timeout: TimeAmount) async throws -> HTTPClientResponse {
        let resendable = [.GET, .HEAD].contains(template.method) || template.headers.contains(name: "Idempotency-Key")
        var movedOn = 0
        var waited: Duration = .zero
        while true {
            let current = servers.current
            var request = template
            request.url = current.url + path
            let response: HTTPClientResponse
            do {
                response = try await http.execute(request, timeout: timeout)
            } catch is CancellationError {
                throw CancellationError()
            } catch {
                let reason = Self.short(error)
                let neverSent = reason == "connection refused"
                if servers.urls.count > 1, movedOn < 2 * servers.urls.count, neverSent || resendable {
                    servers.moveOn(from: current.index)
                    movedOn += 1
                    if movedOn >= servers.urls.count { try await Task.sleep(for: .milliseconds(200)) }
                    continue
                }
                throw ClientError.unreachable(server: current.url, reason: reason)
            }
            if response.status == .serviceUnavailable, let after = response.headers.first(name: "Retry-After").flatMap(Int.init),
               (0...5).contains(after), waited < .seconds(30) {
                _ = try? await response.body.collect(upTo: 1 << 20)
                let pause: Duration = after == 0 ? .milliseconds(200) : .seconds(after)
                try await Task.sleep(for: pause)
                waited += pause
                if servers.urls.count > 1 { servers.moveOn(from: current.index) }
                continue
            }
            return response
        }
    }

    static func short(_ error: any Error) -> String {
        let text = String(describing: error)
        if text.contains("connectionRefused") || text.contains("Connection refused") || text.contains("refused") { return "connection refused" }
        if text.contains("connectTimeout") || text.contains("deadlineExceeded") { return "timed out" }
        return text.count > 160 ? String(text.prefix(160)) + "…" : text
    }
}

/// Completes its promise when the TLS handshake completes, fails it when the connection fails
/// or closes first.
private final class HandshakeWatcher: ChannelInboundHandler {
    typealias InboundIn = NIOAny
    let done: EventLoopPromise<Void>

    init(done: EventLoopPromise<Void>) { self.done = done }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .handshakeCompleted? = event as? TLSUserEvent { done.succeed() }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        done.fail(error)
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        done.fail(ChannelError.eof)
        context.fireChannelInactive()
    }
}
