import FastGPUModel
import FastGPUStore
import FastGPUStorePostgres
import Foundation
import Logging
import PostgresNIO
import Testing

/// The same conformance suite on PostgreSQL: a fresh database per test on the server named by
/// `FASTGPU_TEST_POSTGRES` (`scripts/postgres-test-server.sh` starts one on loopback).
let testPostgresURL = ProcessInfo.processInfo.environment["FASTGPU_TEST_POSTGRES"]

@Suite("PostgreSQL store", .enabled(if: testPostgresURL != nil))
struct PostgresStoreTests {
    static let url = testPostgresURL

    static func configuration(database: String) throws -> PostgresClient.Configuration {
        guard let url = url.flatMap(URLComponents.init(string:)), let host = url.host else { throw StoreError("FASTGPU_TEST_POSTGRES is not a URL") }
        return PostgresClient.Configuration(host: host, port: url.port ?? 5432, username: url.user ?? "postgres", password: url.password,
                                            database: database, tls: .disable)
    }

    /// A new, empty database for one test.
    static func freshDatabase() async throws -> String {
        let name = "fastgpu_test_\(UInt64.random(in: 0...UInt64.max))"
        let admin = PostgresClient(configuration: try configuration(database: "postgres"))
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await admin.run() }
            try await admin.query(PostgresQuery(unsafeSQL: "CREATE DATABASE \(name)"))
            group.cancelAll()
        }
        return name
    }

    let conformance = ClusterStoreConformance {
        let database = try await Self.freshDatabase()
        let configuration = try Self.configuration(database: database)
        return (try await PostgresClusterStore(configuration: configuration), { try await PostgresClusterStore(configuration: configuration) })
    }

    @Test func everything() async throws { try await conformance.everything() }
    @Test func upsertsReplaceAndRemovalsRemove() async throws { try await conformance.upsertsReplaceAndRemovalsRemove() }
    @Test func aBatchIsAllOrNothing() async throws { try await conformance.aBatchIsAllOrNothing() }
    @Test func logsPageInOrderAndIgnoreRepeats() async throws { try await conformance.logsPageInOrderAndIgnoreRepeats() }
    @Test func eventsPageBySequence() async throws { try await conformance.eventsPageBySequence() }
    @Test func auditRecordsAppendAndPageBySequenceAndSubject() async throws { try await conformance.auditRecordsAppendAndPageBySequenceAndSubject() }
}
