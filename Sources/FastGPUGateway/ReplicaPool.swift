import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// The gateway's own HTTP/1.1 client for replicas: keep-alive connections per replica, one
/// request at a time on each, a request written in one flush and a small answer handed back whole
/// by a single promise. It replaces a general-purpose client on the hot path, whose redirect,
/// tracing, URL parsing and per-request state machines cost more than the proxying itself.
///
/// Answers with a `Content-Length` up to `wholeAnswerBytes` come back whole; others (chunked, token
/// streams, large files) come back as a stream read from the socket only as fast as the caller
/// consumes it. A connection idle longer than `idleSeconds` is closed: servers close theirs too
/// (uvicorn after 5 s, gunicorn after 2 s) and a request sent on a connection the replica is
/// closing is the one failure a proxy cannot retry safely.
final class ReplicaPool: Sendable {
    struct Key: Hashable, Sendable {
        var host: String
        var port: Int
    }

    struct Connection: Sendable {
        let channel: any Channel
        let handler: NIOLoopBound<ReplicaConnectionHandler>
    }

    private struct Idle {
        var connection: Connection
        var since: NIODeadline
    }

    private let idle = Mutex<[Key: [Idle]]>([:])
    private let group: any EventLoopGroup
    static let wholeAnswerBytes = 256 << 10
    static let idleSeconds: Int64 = 4
    static let maxIdlePerReplica = 512

    init(group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) {
        self.group = group
    }

    /// Sends one request whose body is held whole and answers with the replica's answer. Throws
    /// `ReplicaPoolError.connectFailed` when no connection could be made (the request reached no
    /// replica), `.timedOut` past the deadline, `.closed` when the replica closed the connection
    /// before answering.
    func send(_ head: HTTPRequestHead, body: ByteBuffer?, host: String, port: Int, timeout: TimeAmount) async throws -> ReplicaAnswer {
        let key = Key(host: host, port: port)
        if let reused = takeIdle(key) {
            do {
                return try await exchange(on: reused, key: key, head: head, body: body, timeout: timeout)
            } catch ReplicaPoolError.closed(let wrote) where !wrote || Self.idempotent(head.method) {
                // The replica closed a kept-alive connection as the request went out: nothing (or
                // only a request that may be repeated) was sent, so a fresh connection takes it.
            }
        }
        let connection = try await connect(key)
        return try await exchange(on: connection, key: key, head: head, body: body, timeout: timeout)
    }

    static func idempotent(_ method: HTTPMethod) -> Bool {
        switch method {
        case .GET, .HEAD, .PUT, .DELETE, .OPTIONS, .TRACE: true
        default: false
        }
    }

    private func exchange(on connection: Connection, key: Key, head: HTTPRequestHead, body: ByteBuffer?, timeout: TimeAmount) async throws -> ReplicaAnswer {
        let loop = connection.channel.eventLoop
        let promise = loop.makePromise(of: ReplicaAnswer.self)
        let handler = connection.handler
        loop.execute {
            handler.value.start(head: head, body: body, timeout: timeout, promise: promise) { [weak self] reusable in
                guard let self else { connection.channel.close(promise: nil); return }
                if reusable { self.putIdle(key, connection) } else { connection.channel.close(promise: nil) }
            }
        }
        return try await promise.futureResult.get()
    }

    private func takeIdle(_ key: Key) -> Connection? {
        let now = NIODeadline.now()
        let (found, stale) = idle.withLock { idle -> (Connection?, [Connection]) in
            var stale: [Connection] = []
            while var list = idle[key], let last = list.popLast() {
                idle[key] = list.isEmpty ? nil : list
                if now - last.since > .seconds(Self.idleSeconds) || !last.connection.channel.isActive {
                    stale.append(last.connection)
                    // The older ones below it are staler still.
                    stale += list.map(\.connection)
                    idle[key] = nil
                    break
                }
                return (last.connection, stale)
            }
            return (nil, stale)
        }
        for connection in stale { connection.channel.close(promise: nil) }
        return found
    }

    private func putIdle(_ key: Key, _ connection: Connection) {
        let now = NIODeadline.now()
        let (kept, stale) = idle.withLock { idle -> (Bool, [Connection]) in
            var list = idle[key] ?? []
            idle[key] = nil
            // Connections are taken from the top; the oldest, at the bottom, are pruned here once
            // they passed the idle limit or were closed, so a past burst does not hold the list full.
            let fresh = list.firstIndex { now - $0.since <= .seconds(Self.idleSeconds) && $0.connection.channel.isActive } ?? list.endIndex
            let stale = list[..<fresh].map(\.connection)
            list.removeFirst(fresh)
            let kept = list.count < Self.maxIdlePerReplica
            if kept { list.append(Idle(connection: connection, since: now)) }
            idle[key] = list.isEmpty ? nil : list
            return (kept, stale)
        }
        for old in stale { old.channel.close(promise: nil) }
        if !kept { connection.channel.close(promise: nil) }
    }

    private func connect(_ key: Key) async throws -> Connection {
        do {
            return try await ClientBootstrap(group: group)
                .connectTimeout(.seconds(2))
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .channelOption(.autoRead, value: false)
                .connect(host: key.host, port: key.port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHTTPClientHandlers()
                        let handler = ReplicaConnectionHandler()
                        try channel.pipeline.syncOperations.addHandler(handler)
                        return Connection(channel: channel, handler: NIOLoopBound(handler, eventLoop: channel.eventLoop))
                    }
                }
        } catch {
            throw ReplicaPoolError.connectFailed(String(describing: error))
        }
    }

    /// Closes every idle connection (the gateway is stopping).
    func shutdown() {
        let all = idle.withLock { idle -> [Connection] in
            defer { idle = [:] }
            return idle.values.flatMap { $0.map(\.connection) }
        }
        for connection in all { connection.channel.close(promise: nil) }
    }
}

enum ReplicaPoolError: Error, Equatable, CustomStringConvertible {
    /// No connection: the request reached no replica and may go to another.
    case connectFailed(String)
    /// The replica closed the connection before its answer ended; `wrote`: the request had been sent.
    case closed(wrote: Bool)
    case timedOut
    /// The answer did not parse as HTTP/1.1.
    case malformed(String)

    var description: String {
        switch self {
        case .connectFailed(let why): "cannot connect to the replica: \(why)"
        case .closed(let wrote): wrote ? "the replica closed the connection before answering" : "the replica closed the connection"
        case .timedOut: "the replica did not answer in time"
        case .malformed(let why): "the replica's answer is not valid HTTP: \(why)"
        }
    }
}

/// A replica's answer: the head, and the body whole or as a stream.
struct ReplicaAnswer: Sendable {
    typealias Stream = NIOThrowingAsyncSequenceProducer<ByteBuffer, any Error, NIOAsyncSequenceProducerBackPressureStrategies.HighLowWatermark, ReplicaStreamDelegate>
    enum Body: Sendable {
        case whole(ByteBuffer)
        case stream(Stream)
    }
    var head: HTTPResponseHead
    var body: Body
}

/// Reads resume when the consumer of a streamed answer wants more; a consumer gone closes the
/// connection (the rest of the answer has nowhere to go).
struct ReplicaStreamDelegate: NIOAsyncSequenceProducerDelegate {
    let handler: NIOLoopBound<ReplicaConnectionHandler>
    func produceMore() {
        let handler = self.handler
        handler.eventLoop.execute { handler.value.consumerWantsMore() }
    }

    func didTerminate() {
        let handler = self.handler
        handler.eventLoop.execute { handler.value.consumerGone() }
    }
}

/// One connection's exchange, on its event loop: write the request, read the answer (reads are
/// asked for explicitly, so a slow consumer of a stream slows the socket, not the memory).
final class ReplicaConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundOut = HTTPClientRequestPart

    private enum State {
        case idle
        case waitingHead(EventLoopPromise<ReplicaAnswer>)
        case collecting(HTTPResponseHead, ByteBuffer, EventLoopPromise<ReplicaAnswer>)
        case streaming(ReplicaAnswer.Stream.Source)
        case closed
    }

    private var state = State.idle
    private var context: ChannelHandlerContext?
    private var wrote = false
    private var keepAlive = true
    private var paused = false
    private var timeout: Scheduled<Void>?
    private var done: ((Bool) -> Void)?

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    func start(head: HTTPRequestHead, body: ByteBuffer?, timeout: TimeAmount, promise: EventLoopPromise<ReplicaAnswer>, done: @escaping (Bool) -> Void) {
        guard let context, case .idle = state, context.channel.isActive else {
            promise.fail(ReplicaPoolError.closed(wrote: false))
            return
        }
        state = .waitingHead(promise)
        self.done = done
        wrote = false
        paused = false
        self.timeout = context.eventLoop.assumeIsolated().scheduleTask(in: timeout) { [weak self] in self?.fail(ReplicaPoolError.timedOut) }
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        if let body, body.readableBytes > 0 { context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil) }
        let written = context.eventLoop.makePromise(of: Void.self)
        written.futureResult.assumeIsolated().whenSuccess { [weak self] in self?.wrote = true }
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: written)
        context.read()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            guard case .waitingHead(let promise) = state else {
                // An answer nobody asked for: the connection is out of step and cannot be reused.
                fail(ReplicaPoolError.malformed("an answer arrived with no request waiting"))
                return
            }
            wrote = true
            keepAlive = head.isKeepAlive
            let length = head.headers.first(name: "content-length").flatMap(Int.init)
            if let length, length <= ReplicaPool.wholeAnswerBytes {
                state = .collecting(head, context.channel.allocator.buffer(capacity: length), promise)
            } else {
                // A stream outlives the request timeout: it ends when the replica ends it.
                timeout?.cancel()
                timeout = nil
                let produced = ReplicaAnswer.Stream.makeSequence(
                    backPressureStrategy: .init(lowWatermark: 2, highWatermark: 8), finishOnDeinit: false,
                    delegate: ReplicaStreamDelegate(handler: NIOLoopBound(self, eventLoop: context.eventLoop)))
                state = .streaming(produced.source)
                promise.succeed(ReplicaAnswer(head: head, body: .stream(produced.sequence)))
            }
        case .body(var part):
            switch state {
            case .collecting(let head, var body, let promise):
                state = .idle
                body.writeBuffer(&part)
                state = .collecting(head, body, promise)
            case .streaming(let source):
                if source.yield(part) == .stopProducing { paused = true }
            default: break
            }
        case .end:
            timeout?.cancel()
            timeout = nil
            switch state {
            case .collecting(let head, let body, let promise):
                state = .idle
                finishExchange()
                promise.succeed(ReplicaAnswer(head: head, body: .whole(body)))
            case .streaming(let source):
                state = .idle
                finishExchange()
                source.finish()
            default: break
            }
            if case .idle = state { context.read() }
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        switch state {
        // An idle connection keeps a read pending too: that is how it learns at once that the
        // replica closed it (or died), before a request is sent on it.
        case .idle, .waitingHead, .collecting: context.read()
        case .streaming: if !paused { context.read() }
        case .closed: break
        }
    }

    func consumerWantsMore() {
        guard case .streaming = state, paused else { return }
        paused = false
        context?.read()
    }

    func consumerGone() {
        guard case .streaming = state else { return }
        fail(ReplicaPoolError.closed(wrote: true))
    }

    func channelInactive(context: ChannelHandlerContext) {
        fail(ReplicaPoolError.closed(wrote: wrote))
        state = .closed
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        fail(error is HTTPParserError ? ReplicaPoolError.malformed(String(describing: error)) : error)
    }

    /// The exchange ended whole: the connection goes back to the pool if both sides keep it alive.
    private func finishExchange() {
        let done = self.done
        self.done = nil
        done?(keepAlive)
    }

    /// The exchange failed: the waiter learns why and the connection closes (never reused).
    private func fail(_ error: any Error) {
        timeout?.cancel()
        timeout = nil
        let previous = state
        state = .closed
        switch previous {
        case .waitingHead(let promise), .collecting(_, _, let promise): promise.fail(error)
        case .streaming(let source): source.finish(error)
        case .idle, .closed: break
        }
        done = nil
        context?.close(promise: nil)
    }
}
