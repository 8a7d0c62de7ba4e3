import FastGPUModel
import FastGPUStore
import FastGPUStoreSQLite
import FastGPUTestSupport
import Foundation
import GRDB
import Testing

@Suite("SQLite backups")
struct BackupTests {
    /// One job and the state index that counts it, in one transaction: a consistent copy has as
    /// many jobs as its index says.
    static func submit(_ i: UInt64, to store: SQLiteClusterStore) async throws {
        try await store.commit(StoreBatch([.submitJob(ClusterStoreConformance.job(i), idempotency: nil),
                                           .setMeta(StoreMeta(stateIndex: i, nextAllocationID: 1))]))
    }

    @Test func aBackupTakenWhileTheServerWritesIsOneCommittedStateAndRestoresWhole() async throws {
        let directory = SQLiteClusterStoreTests.directory()
        let store = try SQLiteClusterStore(path: directory + "/fastgpu.db")
        try await store.commit(StoreBatch([.saveProject(ClusterStoreConformance.project(1, "default"))]))
        for i in 1...50 { try await Self.submit(UInt64(i), to: store) }
        // Writes go on while the backup copies the pages.
        let writer = Task {
            for i in 51...400 { try await Self.submit(UInt64(i), to: store) }
        }
        let backup = directory + "/backup.db"
        let summary = try SQLiteClusterStore.backup(databaseAt: directory + "/fastgpu.db", to: backup)
        try await writer.value
        #expect(summary.jobs >= 50 && summary.projects == 1 && summary.schema.hasPrefix("v11"))
        #expect((try FileManager.default.attributesOfItem(atPath: backup)[.posixPermissions] as? Int) == 0o600)

        let restored = SQLiteClusterStoreTests.directory()
        #expect(try SQLiteClusterStore.restore(backup: backup, intoDirectory: restored, replacing: false) == summary)
        let loaded = try await SQLiteClusterStore(path: restored + "/fastgpu.db").load()
        #expect(loaded.jobs.count == summary.jobs)
        #expect(loaded.meta?.stateIndex == UInt64(summary.jobs), "the copy is one committed state: its index counts its jobs")
        #expect(loaded.jobs.map(\.id) == (1...summary.jobs).map { JobID(UInt64($0)) })
        // The source, written to the end, is untouched by the copy.
        #expect(try await store.load().jobs.count == 400)
    }

    @Test func badBackupsAndBusyOrOccupiedDirectoriesAreRefusedAndLoseNothing() async throws {
        let directory = SQLiteClusterStoreTests.directory()
        let store = try SQLiteClusterStore(path: directory + "/fastgpu.db")
        try await store.commit(StoreBatch([.saveProject(ClusterStoreConformance.project(1, "default"))]))
        try await Self.submit(1, to: store)
        let backup = directory + "/backup.db"
        _ = try SQLiteClusterStore.backup(databaseAt: directory + "/fastgpu.db", to: backup)
        #expect { _ = try SQLiteClusterStore.backup(databaseAt: directory + "/fastgpu.db", to: backup) } throws: { "\($0)".contains("exists; give a new file") }
        #expect { _ = try SQLiteClusterStore.backup(databaseAt: directory + "/none.db", to: directory + "/b2.db") } throws: { "\($0)".contains("there is no database") }

        let target = SQLiteClusterStoreTests.directory()
        let garbage = directory + "/garbage.db"
        FileManager.default.createFile(atPath: garbage, contents: Data(repeating: 7, count: 8192))
        #expect { _ = try SQLiteClusterStore.restore(backup: garbage, intoDirectory: target, replacing: false) } throws: { "\($0)".contains("cannot be read as a FastGPU database") }
        // A backup from a newer FastGPU: a migration this build does not know.
        let newer = directory + "/newer.db"
        try FileManager.default.copyItem(atPath: backup, toPath: newer)
        try await DatabaseQueue(path: newer).write { try $0.execute(sql: "INSERT INTO grdb_migrations (identifier) VALUES ('v99: from the future')") }
        #expect { _ = try SQLiteClusterStore.restore(backup: newer, intoDirectory: target, replacing: false) } throws: { "\($0)".contains("newer FastGPU") }
        #expect(!FileManager.default.fileExists(atPath: target + "/fastgpu.db"))

        // A directory a server holds is not restored into.
        let lock = try DirectoryLock(directory: target)
        #expect { _ = try SQLiteClusterStore.restore(backup: backup, intoDirectory: target, replacing: true) } throws: { "\($0)".contains("another FastGPU server uses") }
        #expect { _ = try DirectoryLock(directory: target) } throws: { "\($0)".contains("stop it first") }
        lock.release()

        // An existing database is replaced only when asked, and kept aside.
        _ = try SQLiteClusterStore.restore(backup: backup, intoDirectory: target, replacing: false)
        #expect { _ = try SQLiteClusterStore.restore(backup: backup, intoDirectory: target, replacing: false) } throws: { "\($0)".contains("pass --replace") }
        _ = try SQLiteClusterStore.restore(backup: backup, intoDirectory: target, replacing: true, now: Date(timeIntervalSince1970: 1_800_000_000))
        #expect(FileManager.default.fileExists(atPath: target + "/fastgpu.db.replaced-1800000000"))
        #expect(try await SQLiteClusterStore(path: target + "/fastgpu.db").load().jobs.count == 1)
    }
}
