import FastGPUModel
import FastGPUStore
import FastGPUStorePostgres
import Foundation
import Logging
import PostgresNIO
import Testing

/// The leader lease and the fence on commits, on a real PostgreSQL (`FASTGPU_TEST_POSTGRES`).
/// Time passing is the lease row's `expires_at` moved into the past, not a sleep.
@Suite("Leader lease", .enabled(if: testPostgresURL != nil))
struct LeaderLeaseTests {
    struct Replica {
        var store: PostgresClusterStore
        var lease: LeaderLease
    }

    static func replica(_ name: String, database: String) async throws -> Replica {
        let url = try PostgresStoreURL(testStoreURL(database: database))
        let store = try await PostgresClusterStore(url: url, password: nil)
        let lease = try LeaderLease(url: url, password: nil, holder: name, ttl: .seconds(30))
        return Replica(store: store, lease: lease)
    }

    static func testStoreURL(database: String) throws -> String {
        guard let url = testPostgresURL.flatMap(URLComponents.init(string:)), let host = url.host else { throw StoreError("FASTGPU_TEST_POSTGRES is not a URL") }
        return "postgres://\(url.user ?? "postgres")@\(host):\(url.port ?? 5432)/\(database)"
    }

    static func submit(_ id: UInt64, _ replica: Replica) async throws {
        try await replica.store.commit(StoreBatch([.submitJob(ClusterStoreConformance.job(id), idempotency: nil),
                                                   .appendEvent(EventRecord(time: ClusterStoreConformance.t0, event: .nodeReplaced(NodeID(id))))]))
    }

    /// Two control planes on a fresh database that holds the project `default`.
    static func twoReplicas() async throws -> (database: String, a: Replica, b: Replica) {
        let database = try await PostgresStoreTests.freshDatabase()
        let a = try await replica("a", database: database)
        let b = try await replica("b", database: database)
        try await a.store.commit(StoreBatch([.saveProject(ClusterStoreConformance.project(1, "default"))]))
        return (database, a, b)
    }

    /// Runs `sql` on `database` and returns the first column of the first row, if any.
    @discardableResult
    static func sql(_ sql: String, on database: String) async throws -> Int64? {
        let client = PostgresClient(configuration: try PostgresStoreTests.configuration(database: database))
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await client.run() }
            var first: Int64?
            for try await value in try await client.query(PostgresQuery(unsafeSQL: sql)).decode(Int64.self) { first = first ?? value }
            group.cancelAll()
            return first
        }
    }

    static func expire(_ database: String) async throws {
        try await sql("UPDATE leader_lease SET expires_at = clock_timestamp() - interval '1 second' RETURNING epoch", on: database)
    }

    /// The database ends a closed connection's backend a moment after the close: ask until it has.
    static func acquireOnceFree(_ replica: Replica) async throws -> Int64? {
        for _ in 0..<5000 {
            if let epoch = try await replica.lease.tryAcquire(url: "http://\(replica.lease.holder)") { return epoch }
            await Task.yield()
        }
        return nil
    }

    @Test func oneLeaderAtATimeAndAGoneLeaderIsReplacedAtOnce() async throws {
        let (database, a, b) = try await Self.twoReplicas()
        defer { a.store.shutdown(); b.store.shutdown() }

        let first = try #require(try await a.lease.tryAcquire(url: "http://a"))
        #expect(try await b.lease.tryAcquire(url: "http://b") == nil)
        #expect(try await b.store.leader() == LeaderLease.Leader(holder: "a", url: "http://a", epoch: first))
        a.store.fence(holder: "a", epoch: first)
        try await Self.submit(1, a)
        #expect(try await a.lease.renew(epoch: first))

        // The leader's process is gone: its lease's backend closes, and the lease is free at once.
        await a.lease.close()
        let second = try #require(try await Self.acquireOnceFree(b))
        #expect(second == first + 1)
        b.store.fence(holder: "b", epoch: second)
        try await Self.submit(2, b)

        // Whatever the old leader still had in flight is refused, and leaves nothing behind.
        await #expect(throws: StoreError.self) { try await Self.submit(3, a) }
        #expect(try await a.lease.renew(epoch: first) == false)
        let jobs = try await b.store.load().jobs.map(\.id.rawValue)
        #expect(jobs == [1, 2])
        // Its event neither: only the two commits that held the lease wrote one, each with its epoch.
        #expect(try await Self.sql("SELECT count(*) FROM event", on: database) == 2)
        #expect(try await Self.sql("SELECT count(*) FROM event WHERE epoch = \(first)", on: database) == 1)
        await b.lease.close()
    }

    @Test func aLeaseThatRanOutIsTakenAndFencesItsFormerHolder() async throws {
        let (database, a, b) = try await Self.twoReplicas()
        defer { a.store.shutdown(); b.store.shutdown() }
        let first = try #require(try await a.lease.tryAcquire(url: "http://a"))
        a.store.fence(holder: "a", epoch: first)
        try await Self.submit(1, a)

        // Cut off (its connection still open at the database), a leader's lease runs out:
        // from then on it commits nothing, even before anyone takes over.
        try await Self.expire(database)
        await #expect(throws: StoreError.self) { try await Self.submit(2, a) }
        #expect(try await b.store.leader() == nil)
        let second = try #require(try await b.lease.tryAcquire(url: "http://b"))
        #expect(second == first + 1)
        #expect(try await a.lease.renew(epoch: first) == false)
        b.store.fence(holder: "b", epoch: second)
        try await Self.submit(3, b)
        #expect(try await b.store.load().jobs.map(\.id.rawValue) == [1, 3])

        // A graceful stop hands the lease over without waiting for it to run out.
        await b.lease.resign(epoch: second)
        #expect(try await a.lease.tryAcquire(url: "http://a") == second + 1)
        await a.lease.close()
        await b.lease.close()
    }
}

@Suite("PostgreSQL store URL")
struct PostgresStoreURLTests {
    @Test func aURLNamesUserHostPortAndDatabase() throws {
        let url = try PostgresStoreURL("postgres://fastgpu@db.example:6543/cluster?sslmode=require")
        #expect(url.user == "fastgpu" && url.host == "db.example" && url.port == 6543 && url.database == "cluster" && url.requireTLS)
        #expect(try PostgresStoreURL("postgresql://u@h/d").port == 5432)
    }

    @Test func passwordsInTheURLAndIncompleteURLsAreRefusedClearly() {
        for bad in ["postgres://u:secret@h/d", "postgres://h/d", "postgres://u@h/", "mysql://u@h/d", "postgres://u@h/d?sslmode=prefer", "postgres://u@h:0/d",
                    "postgres://u@h/-dfile", "postgres://u@h/host%3Devil", "postgres://-u@h/d", "postgres://u@h/d%0Ax"] {
            #expect(throws: StoreError.self, "\(bad)") { try PostgresStoreURL(bad) }
        }
        do {
            _ = try PostgresStoreURL("postgres://u:hunter2@h/d")
        } catch {
            #expect(!"\(error)".contains("hunter2"))
        }
    }

    @Test func thePasswordComesFromAFileOrTheEnvironment() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("pw-\(UUID().uuidString)").path
        try "s3cret\r\nignored\n".write(toFile: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: file) }
        #expect(try PostgresStoreURL.password(file: file, environment: ["FASTGPU_STORE_PASSWORD": "other"]) == "s3cret")
        #expect(try PostgresStoreURL.password(file: nil, environment: ["FASTGPU_STORE_PASSWORD": "env"]) == "env")
        #expect(try PostgresStoreURL.password(file: nil, environment: ["PGPASSWORD": "pg"]) == "pg")
        #expect(try PostgresStoreURL.password(file: nil, environment: [:]) == nil)
        #expect(throws: StoreError.self) { try PostgresStoreURL.password(file: file + ".missing", environment: [:]) }
        // Not a regular file (a FIFO or a device would hang or never end): refused, not read.
        #expect(throws: StoreError.self) { try PostgresStoreURL.password(file: "/dev/zero", environment: [:]) }
    }
}
