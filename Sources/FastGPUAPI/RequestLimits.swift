public import FastGPUControlPlane
import FastGPUModel
import Foundation
public import Hummingbird
import HTTPTypes
import NIOCore
import Synchronization

/// What one caller may spend of the server, so that no caller — authenticated or not — can
/// make it unreachable for the others.
///
/// - Requests: a token bucket per token (per remote address before authentication), refilled
///   at `requestsPerSecond`; a list page costs more the more it may return. Beyond it: 429
///   with `Retry-After`. Cluster admins are exempt, as Kubernetes' `system:masters` are: they
///   run the cluster and its benchmarks, and can change these limits anyway.
/// - Long polls (a blocking job query, assignments, followed logs): at most `longPollsPerToken`
///   per token and `longPolls` in all at once; beyond either: 429.
/// - Connections: at most `maxConnections` open (the server stops accepting until one closes,
///   so descriptors never run out), at most `maxConnectionsPerAddress` from one address
///   (closed at once beyond it), and one that stays idle `idleTimeout` is closed.
public struct RequestLimits: Sendable {
    public var requestsPerSecond = 50
    public var burst = 100
    /// For node credentials: an agent heartbeats, polls, reports and ships logs.
    public var nodeRequestsPerSecond = 200
    /// For requests without a valid token, per remote address.
    public var anonymousRequestsPerSecond = 20
    public var longPollsPerToken = 64
    public var longPolls = 4096
    public var maxConnections = 8192
    public var maxConnectionsPerAddress = 512
    public var idleTimeout: Duration = .seconds(30)

    public init() {}

    /// No request limits (connections are still capped): for tests that drive the router hard.
    public static var unlimited: RequestLimits {
        var limits = RequestLimits()
        limits.requestsPerSecond = 0
        limits.nodeRequestsPerSecond = 0
        limits.anonymousRequestsPerSecond = 0
        return limits
    }

    /// At most as many connections as the process may open descriptors, less room for the
    /// store, the log and the agents' own files.
    public func connectionCap(descriptorLimit: Int) -> Int { max(16, min(maxConnections, descriptorLimit - 256)) }
}

/// Token buckets by caller. Amounts are in thousandths of a request, times in milliseconds,
/// on the injected clock: a test moves the clock instead of waiting.
final class RequestBuckets: Sendable {
    struct Bucket {
        var milliTokens: Int64
        var at: Int64
    }

    private let buckets = Mutex<[String: Bucket]>([:])

    /// Takes `cost` requests from `key`'s bucket; nil when taken, else the seconds until they are there.
    func take(_ cost: Int, key: String, perSecond: Int, burst: Int, now: Timestamp) -> Int? {
        guard perSecond > 0 else { return nil }
        let needed = Int64(cost) * 1000
        return withBucket(key, perSecond: perSecond, capacity: Int64(max(burst, cost)) * 1000, now: now) { bucket in
            if bucket.milliTokens >= needed {
                bucket.milliTokens -= needed
                return nil
            }
            let perSecondMilli = Int64(perSecond) * 1000
            return Int((needed - bucket.milliTokens + perSecondMilli - 1) / perSecondMilli)
        }
    }

    /// Charges `cost` more to `key` once a reply's size is known, down to a debt of one burst:
    /// the next requests wait until it is paid back.
    func debit(_ cost: Int, key: String, perSecond: Int, burst: Int, now: Timestamp) {
        guard perSecond > 0, cost > 0 else { return }
        let capacity = Int64(max(burst, 1)) * 1000
        withBucket(key, perSecond: perSecond, capacity: capacity, now: now) { bucket in
            bucket.milliTokens = max(-capacity, bucket.milliTokens - Int64(cost) * 1000)
        }
    }

    /// Refills `key`'s bucket for the time since it was last touched, then lets `body` spend it.
    @discardableResult
    private func withBucket<T>(_ key: String, perSecond: Int, capacity: Int64, now: Timestamp, _ body: (inout Bucket) -> T) -> T {
        let nowMs = now.millisecondsSinceEpoch
        return buckets.withLock { table in
            if table.count > 50_000 { table = table.filter { $0.value.milliTokens < capacity } }
            var bucket = table[key] ?? Bucket(milliTokens: capacity, at: nowMs)
            bucket.milliTokens = min(capacity, bucket.milliTokens + max(0, nowMs - bucket.at) * Int64(perSecond))
            bucket.at = nowMs
            let result = body(&bucket)
            table[key] = bucket
            return result
        }
    }
}

/// Counts open long polls per token and in all.
public final class LongPollGate: Sendable {
    private let open = Mutex<(total: Int, byToken: [UInt64: Int])>((0, [:]))
    let limits: RequestLimits

    init(limits: RequestLimits) { self.limits = limits }

    /// Holds a slot for `principal` while `body` waits; 429 when none is free.
    func hold<T>(for principal: Principal, _ body: () async throws -> T) async throws -> T {
        try acquire(principal)
        defer { release(principal) }
        return try await body()
    }

    func acquire(_ principal: Principal) throws {
        let admitted = open.withLock { state -> Bool in
            guard state.total < limits.longPolls, state.byToken[principal.tokenID, default: 0] < limits.longPollsPerToken else { return false }
            state.total += 1
            state.byToken[principal.tokenID, default: 0] += 1
            return true
        }
        guard admitted else {
            throw ControlPlaneError.tooMany("too many open long polls (at most \(limits.longPollsPerToken) per token, \(limits.longPolls) in all); retry later")
        }
    }

    func release(_ principal: Principal) {
        open.withLock { state in
            state.total -= 1
            let left = state.byToken[principal.tokenID, default: 1] - 1
            state.byToken[principal.tokenID] = left > 0 ? left : nil
        }
    }

    /// Open long polls now (for tests and /metrics).
    public var count: Int { open.withLock { $0.total } }
}

/// Charges every request to its caller's bucket; 429 with `Retry-After` when it is empty.
struct RateLimitMiddleware: RouterMiddleware {
    typealias Context = APIRequestContext
    let limits: RequestLimits
    let buckets: RequestBuckets
    let clock: any WallClock

    /// Charges a reply's size to its caller: one request more per 16 KiB of a job page (the
    /// encoding of large pages is what a flood of them costs the server). Admins are exempt.
    static func chargeReply(bytes: Int, to principal: Principal, limits: RequestLimits, buckets: RequestBuckets, clock: any WallClock) {
        guard !principal.clusterAdmin else { return }
        let perSecond = principal.kind == .node ? limits.nodeRequestsPerSecond : limits.requestsPerSecond
        buckets.debit(bytes / 16_384, key: "token:\(principal.tokenID)", perSecond: perSecond, burst: max(limits.burst, perSecond * 2), now: clock.now())
    }

    func handle(_ request: Request, context: APIRequestContext, next: (Request, APIRequestContext) async throws -> Response) async throws -> Response {
        // Health, readiness, metrics and the document are outside the API: probes must not be refused.
        // The dashboard's pages count like the API's calls (its static files do not).
        let path = request.uri.path
        guard path.hasPrefix("/v1/") || (Dashboard.isPage(path) && !path.hasPrefix("/ui/static/")) else {
            return try await next(request, context)
        }
        let key: String
        let perSecond: Int
        if let principal = context.principal {
            if principal.clusterAdmin { return try await next(request, context) }
            key = "token:\(principal.tokenID)"
            perSecond = principal.kind == .node ? limits.nodeRequestsPerSecond : limits.requestsPerSecond
        } else {
            key = "address:\(context.remoteAddress)"
            perSecond = limits.anonymousRequestsPerSecond
        }
        let burst = max(limits.burst, perSecond * 2)
        if let wait = buckets.take(Self.cost(of: request), key: key, perSecond: perSecond, burst: burst, now: clock.now()) {
            throw RateLimited(retryAfterSeconds: max(1, wait))
        }
        return try await next(request, context)
    }

    /// A page of jobs costs one request per 100 jobs it may hold, at least one.
    static func cost(of request: Request) -> Int {
        guard request.method == .get, request.uri.path == "/v1/jobs" else { return 1 }
        let limit = request.uri.queryParameters["limit"].flatMap { Int($0) } ?? 100
        return 1 + min(max(limit, 0), 10_000) / 100
    }
}

/// A caller spent its requests: 429, and when to come back.
struct RateLimited: Error {
    var retryAfterSeconds: Int
}

/// Open connections by remote address: one address (one attacker) may hold at most
/// `limit`, so that a flood of idle connections from it cannot take every slot of the server's
/// connection cap from everyone else.
public final class ConnectionsPerAddress: Sendable {
    private let open = Mutex<[String: Int]>([:])
    public let limit: Int

    public init(limit: Int) { self.limit = limit }

    /// A handler for each new connection's pipeline.
    public func handler() -> any RemovableChannelHandler { ConnectionCountingHandler(table: self) }

    func admit(_ address: String) -> Bool {
        open.withLock { table in
            guard table[address, default: 0] < limit else { return false }
            table[address, default: 0] += 1
            return true
        }
    }

    func leave(_ address: String) {
        open.withLock { table in
            let left = table[address, default: 1] - 1
            table[address] = left > 0 ? left : nil
        }
    }

    public var count: Int { open.withLock { $0.values.reduce(0, +) } }
}

/// Counts its connection in while it is open; closes it at once if its address has too many.
final class ConnectionCountingHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny
    let table: ConnectionsPerAddress
    private var address: String?

    init(table: ConnectionsPerAddress) { self.table = table }

    func handlerAdded(context: ChannelHandlerContext) {
        let peer = context.channel.remoteAddress?.ipAddress ?? "unknown"
        if table.admit(peer) {
            address = peer
        } else {
            context.close(promise: nil)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        if let address { table.leave(address) }
        address = nil
    }
}
