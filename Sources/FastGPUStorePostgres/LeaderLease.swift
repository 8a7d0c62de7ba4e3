public import FastGPUStore
import Foundation
public import Logging
import NIOPosix
public import PostgresNIO
import Synchronization

/// Which control plane leads: one row, `leader_lease`, taken with a fencing epoch.
///
/// The lease lasts `ttl` from the database's clock and is renewed well before; it is free when
/// it ran out *or* when the connection that took it is gone (`pg_stat_activity` no longer lists
/// its backend). So a leader killed with -9 is replaced as soon as PostgreSQL sees its socket
/// close, and a leader cut off from the database (its backend still open at the far end of a
/// dead link) once its lease runs out.
///
/// A leader stops acting the moment a renewal fails, its lease's connection closes, or `ttl`
/// passes on its own monotonic clock since the last renewal it sent. When the lease runs out it
/// has stopped before anyone else can start; when its connection is gone (the database dropped
/// it: a keepalive that went unanswered, `pg_terminate_backend`) a successor may start while the
/// old leader notices, within 50 ms of its own side closing — and a link that died silently is
/// seen by both sides' keepalives after a few seconds. Either way every commit of a leader's store checks its epoch in the same transaction
/// (`PostgresClusterStore.fence`), so nothing it still had in flight commits after a
/// successor's takeover: the takeover locks the row against those checks, and they see the new
/// epoch once it commits.
public final class LeaderLease: Sendable {
    public struct Leader: Sendable, Equatable {
        public var holder: String
        public var url: String
        public var epoch: Int64

        public init(holder: String, url: String, epoch: Int64) {
            self.holder = holder
            self.url = url
            self.epoch = epoch
        }
    }

    public let holder: String
    public let ttl: Duration
    let configuration: PostgresConnection.Configuration
    let logger: Logger
    private let connection = Mutex<PostgresConnection?>(nil)

    /// `holder` names this process uniquely (host, process id and a random part).
    public init(url: PostgresStoreURL, password: String?, holder: String, ttl: Duration, logger: Logger = Logger(label: "fastgpu.lease")) throws {
        configuration = try url.connectionConfiguration(password: password)
        self.holder = holder
        self.ttl = ttl
        self.logger = logger
    }

    deinit {
        if let open = connection.withLock({ $0 }) { open.close().whenComplete { _ in withExtendedLifetime(open) {} } }
    }

    var ttlSeconds: Double { Double(ttl.components.seconds) + Double(ttl.components.attoseconds) / 1e18 }

    /// The lease's own connection: the backend that holds the lease is this one.
    private func connected() async throws -> PostgresConnection {
        if let existing = connection.withLock({ $0 }), !existing.isClosed { return existing }
        let fresh = try await PostgresConnection.connect(configuration: configuration, id: 1, logger: logger)
        do {
            // A database that hears nothing from this side for a few seconds drops the backend, which frees the lease.
            try await fresh.query("SET tcp_keepalives_idle = 2", logger: logger)
            try await fresh.query("SET tcp_keepalives_interval = 1", logger: logger)
            try await fresh.query("SET tcp_keepalives_count = 2", logger: logger)
            // No lease statement may run longer than the lease lasts.
            let limit = max(1000, Int(ttlSeconds * 1000) - 1000)
            try await fresh.query(PostgresQuery(unsafeSQL: "SET statement_timeout = \(limit)"), logger: logger)
        } catch {
            try? await fresh.close()
            throw error
        }
        let previous = connection.withLock { current -> PostgresConnection? in
            defer { current = fresh }
            return current
        }
        if let previous { try? await previous.close() }
        return fresh
    }

    /// True when the connection the lease was taken on has closed: from then on the lease is
    /// free for others (its backend is gone), so a leader must stop at once.
    public var connectionLost: Bool { connection.withLock { $0?.isClosed ?? true } }

    /// Drops the lease's connection (its backend ends; a lease it held is free at once).
    public func close() async {
        let current = connection.withLock { current -> PostgresConnection? in
            defer { current = nil }
            return current
        }
        if let current { try? await current.close() }
    }

    private func failed<T>(_ body: (PostgresConnection) async throws -> T) async throws -> T {
        let c = try await connected()
        do {
            return try await body(c)
        } catch {
            await close()
            throw error
        }
    }

    /// Takes the lease when it is free; the new epoch, or nil when another holds it.
    public func tryAcquire(url: String) async throws -> Int64? {
        let ttl = ttlSeconds
        return try await failed { c in
            try await c.withTransaction(logger: logger) { c in
                // A commit stuck in a dead leader's open transaction does not stall the takeover for long.
                try await c.query("SET LOCAL lock_timeout = '2s'", logger: logger)
                // FOR UPDATE waits for every commit still checking the old epoch (they hold FOR KEY SHARE).
                let rows = try await c.query("""
                    SELECT epoch FROM leader_lease l WHERE id = 1
                      AND (expires_at < clock_timestamp() OR NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = l.backend_pid))
                    FOR UPDATE
                    """, logger: logger)
                var free = false
                for try await _ in rows.decode(Int64.self) { free = true }
                guard free else { return nil }
                var epoch: Int64?
                for try await value in try await c.query("""
                    UPDATE leader_lease SET holder = \(holder), url = \(url), epoch = epoch + 1, backend_pid = pg_backend_pid(),
                        expires_at = clock_timestamp() + make_interval(secs => \(ttl)), taken_at = clock_timestamp()
                    WHERE id = 1 RETURNING epoch
                    """, logger: logger).decode(Int64.self) { epoch = value }
                return epoch
            }
        }
    }

    /// Extends the lease from the database's now; false when it is no longer this holder's.
    public func renew(epoch: Int64) async throws -> Bool {
        let ttl = ttlSeconds
        return try await failed { c in
            var renewed = false
            for try await _ in try await c.query("""
                UPDATE leader_lease SET expires_at = clock_timestamp() + make_interval(secs => \(ttl))
                WHERE id = 1 AND holder = \(holder) AND epoch = \(epoch) AND backend_pid = pg_backend_pid() RETURNING epoch
                """, logger: logger).decode(Int64.self) { renewed = true }
            return renewed
        }
    }

    /// Gives the lease up now (a graceful stop): a follower takes over at its next try.
    public func resign(epoch: Int64) async {
        _ = try? await failed { c in
            try await c.query("""
                UPDATE leader_lease SET expires_at = '-infinity' WHERE id = 1 AND holder = \(holder) AND epoch = \(epoch)
                """, logger: logger)
        }
        await close()
    }
}

extension PostgresClusterStore {
    /// From now on every commit checks, in its own transaction, that `holder` still holds the
    /// lease with `epoch` and that it has not run out; a commit that finds otherwise is
    /// refused (`StoreError`) and changes nothing. Events it appends carry the epoch.
    public func fence(holder: String, epoch: Int64) {
        fencing.withLock { $0 = Fence(holder: holder, epoch: epoch) }
    }

    struct Fence: Sendable {
        var holder: String
        var epoch: Int64
    }

    func checkFence(_ fence: Fence, on c: PostgresConnection) async throws {
        var held = false
        for try await _ in try await c.query("""
            SELECT epoch FROM leader_lease WHERE id = 1 AND holder = \(fence.holder) AND epoch = \(fence.epoch) AND expires_at > clock_timestamp()
            FOR KEY SHARE
            """, logger: logger).decode(Int64.self) { held = true }
        guard held else { throw StoreError("fenced: this control plane no longer holds the leader lease (epoch \(fence.epoch)); nothing was committed") }
    }
}

extension PostgresClusterStore {
    /// The holder of a live lease, if any (read through the pool: followers ask it per request burst).
    public func leader() async throws -> LeaderLease.Leader? {
        var leader: LeaderLease.Leader?
        for try await (holder, url, epoch) in try await client.query("""
            SELECT holder, url, epoch FROM leader_lease l WHERE id = 1 AND expires_at > clock_timestamp()
              AND EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = l.backend_pid)
            """, logger: logger).decode((String, String, Int64).self) {
            leader = LeaderLease.Leader(holder: holder, url: url, epoch: epoch)
        }
        return leader
    }

    /// Opens the store at `url` (the password from a file or the environment).
    public convenience init(url: PostgresStoreURL, password: String?, lockTimeout: Duration = .seconds(5),
                            logger: Logger = Logger(label: "fastgpu.store.postgres")) async throws {
        try await self.init(configuration: url.clientConfiguration(password: password, lockTimeout: lockTimeout), logger: logger)
    }
}
