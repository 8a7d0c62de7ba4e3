public import Foundation
import FastGPUStore
import GRDB

/// What a backup holds, read from the backup itself.
public struct SQLiteBackupSummary: Sendable, Equatable {
    /// The last migration the database has (`v11: when a package began`).
    public var schema: String
    public var projects: Int
    public var jobs: Int
    public var bytes: Int64
}

/// Backups of the embedded store with SQLite's online backup API: a consistent copy taken while a
/// server keeps writing (the copy restarts its pages when a write lands mid-way, and ends on one
/// committed state), checked before it is trusted, and restored only into a data directory no
/// server holds.
extension SQLiteClusterStore {
    public static let databaseFileName = "fastgpu.db"
    public static let lockFileName = "server.lock"

    /// Copies the database at `source` into a new file `destination` (0600; refused when it exists).
    public static func backup(databaseAt source: String, to destination: String) throws -> SQLiteBackupSummary {
        let files = FileManager.default
        guard files.fileExists(atPath: source) else { throw StoreError("there is no database at \(source)") }
        guard !files.fileExists(atPath: destination) else { throw StoreError("\(destination) exists; give a new file") }
        // A plain connection: no migrations (a newer CLI must not upgrade a running server's
        // file), no writes; it waits for the server's writer instead of failing at once.
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        let from: DatabaseQueue
        do { from = try DatabaseQueue(path: source, configuration: configuration) } catch { throw StoreError("cannot open \(source): \(error)") }
        try copy(from, to: destination)
        return try inspect(destination)
    }

    /// Restores `backup` as the database of `directory`. Refused while a server holds the
    /// directory, when the backup fails its checks, and — unless `replacing` — when the
    /// directory has a database (which is then kept beside as `fastgpu.db.replaced-TIME`).
    public static func restore(backup: String, intoDirectory directory: String, replacing: Bool, now: Date = Date()) throws -> SQLiteBackupSummary {
        let summary = try inspect(backup)
        let files = FileManager.default
        do { try files.createDirectory(atPath: directory, withIntermediateDirectories: true) } catch { throw StoreError("cannot create \(directory): \(error.localizedDescription)") }
        let lock = try DirectoryLock(directory: directory)
        defer { lock.release() }
        let target = directory + "/" + databaseFileName
        let partial = target + ".restoring"
        try? files.removeItem(atPath: partial)
        var configuration = Configuration()
        configuration.readonly = true
        let from: DatabaseQueue
        do { from = try DatabaseQueue(path: backup, configuration: configuration) } catch { throw StoreError("cannot open \(backup): \(error)") }
        try copy(from, to: partial)
        // The old file's write-ahead log belongs to the old file: left there, SQLite would replay
        // it into the restored one. It goes aside with its file, or away when it is a stray.
        let aside = target + ".replaced-\(Int64(now.timeIntervalSince1970))"
        if files.fileExists(atPath: target) {
            guard replacing else {
                try? files.removeItem(atPath: partial)
                throw StoreError("\(target) exists; pass --replace to keep it aside and restore over it")
            }
            do {
                for suffix in ["", "-wal", "-shm"] where files.fileExists(atPath: target + suffix) { try files.moveItem(atPath: target + suffix, toPath: aside + suffix) }
            } catch {
                throw StoreError("cannot move \(target) aside: \(error.localizedDescription)")
            }
        }
        for suffix in ["-wal", "-shm"] { try? files.removeItem(atPath: target + suffix) }
        do { try files.moveItem(atPath: partial, toPath: target) } catch { throw StoreError("cannot move the restored database into place: \(error.localizedDescription)") }
        return summary
    }

    /// Opens a backup read-only and checks it: SQLite's integrity check, a FastGPU schema, and no
    /// migration this build does not know (a backup from a newer FastGPU).
    public static func inspect(_ path: String) throws -> SQLiteBackupSummary {
        guard FileManager.default.fileExists(atPath: path) else { throw StoreError("there is no file at \(path)") }
        var configuration = Configuration()
        configuration.readonly = true
        do {
            let queue = try DatabaseQueue(path: path, configuration: configuration)
            return try queue.read { db in
                let integrity = try String.fetchAll(db, sql: "PRAGMA integrity_check")
                guard integrity == ["ok"] else { throw StoreError("\(path) is damaged: \(integrity.prefix(3).joined(separator: "; "))") }
                guard try db.tableExists("grdb_migrations"), try db.tableExists("meta"), try db.tableExists("job") else {
                    throw StoreError("\(path) is not a FastGPU database")
                }
                let applied = try String.fetchAll(db, sql: "SELECT identifier FROM grdb_migrations")
                let known = migrator.migrations
                if let unknown = applied.first(where: { !known.contains($0) }) {
                    throw StoreError("\(path) comes from a newer FastGPU (its migration '\(unknown)' is unknown here)")
                }
                let schema = known.last(where: { applied.contains($0) }) ?? "none"
                let projects = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM project") ?? 0
                let jobs = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM job") ?? 0
                let size = (try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber
                return SQLiteBackupSummary(schema: schema, projects: projects, jobs: jobs, bytes: size?.int64Value ?? 0)
            }
        } catch let error as StoreError {
            throw error
        } catch {
            throw StoreError("\(path) cannot be read as a FastGPU database: \(error)")
        }
    }

    /// The online backup into a new file, written under a temporary name and renamed when whole.
    private static func copy(_ from: DatabaseQueue, to destination: String) throws {
        let files = FileManager.default
        let partial = destination + ".partial"
        try? files.removeItem(atPath: partial)
        guard files.createFile(atPath: partial, contents: nil, attributes: [.posixPermissions: 0o600]) else {
            throw StoreError("cannot create \(partial)")
        }
        do {
            let to = try DatabaseQueue(path: partial)
            try from.backup(to: to)
            try to.close()
            try files.moveItem(atPath: partial, toPath: destination)
        } catch {
            try? files.removeItem(atPath: partial)
            throw StoreError("the backup failed: \(error)")
        }
    }
}

/// An exclusive lock on a data directory (`server.lock`, flock): a server holds it for its life,
/// so a second server on the same directory, or a restore under a running one, is refused.
/// The kernel releases it when the process ends, however it ends.
public final class DirectoryLock: Sendable {
    private let descriptor: Int32

    public init(directory: String) throws {
        let path = directory + "/" + SQLiteClusterStore.lockFileName
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw StoreError("cannot open \(path): \(String(cString: strerror(errno)))") }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            close(fd)
            throw StoreError("another FastGPU server uses \(directory) (it holds \(path)); stop it first")
        }
        descriptor = fd
    }

    public func release() {
        flock(descriptor, LOCK_UN)
        close(descriptor)
    }
}
