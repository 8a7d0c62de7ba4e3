import ArgumentParser
import FastGPUStorePostgres
import FastGPUStoreSQLite
import Foundation

struct AdminCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "admin",
        abstract: "Operate a server's store: back up and restore its database (SQLite or PostgreSQL).",
        discussion: """
            Run on the server's machine. A backup is taken while the server runs (SQLite's online \
            backup API: one consistent state); a restore needs the server stopped.
              fastgpu admin backup /backups/fastgpu-2026-12-03.db
              fastgpu admin restore /backups/fastgpu-2026-12-03.db --data-dir /srv/fastgpu --replace
            With a PostgreSQL store, pg_dump takes the backup (one snapshot, while the servers run) \
            and pg_restore puts it into a new, empty database:
              fastgpu admin backup /backups/fastgpu-2026-12-03.pgdump --store postgres://fastgpu@db/fastgpu
              fastgpu admin restore /backups/fastgpu-2026-12-03.pgdump --store postgres://fastgpu@db/fastgpu_restored
            The secret key (DATA-DIR/secret-key) is not in a backup: keep a copy of it apart from \
            the backups, and put it back beside a restored database, or project secrets cannot be read.
            """,
        subcommands: [Backup.self, Restore.self])

    struct Backup: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "backup", abstract: "Copy the database into a new file, while the server runs.")
        @Argument(help: "The backup file to create (refused when it exists).") var file: String
        @Option(help: "The server's data directory (default: ~/.fastgpu).") var dataDir: String?

        @OptionGroup var postgres: PostgresOptions

        func run() async throws {
            let directory = dataDir ?? (CLIConfig.home + "/.fastgpu")
            if let store = try postgres.url() {
                let bytes = try await PostgresBackup.dump(store, password: try postgres.password(), to: file)
                print("backed up \(store) to \(file) with pg_dump (one snapshot, taken while the servers run): \(bytes) bytes")
                print("the secret key (each server's --secret-key-file) is not in it: keep a copy apart")
                return
            }
            let summary: SQLiteBackupSummary
            do {
                summary = try SQLiteClusterStore.backup(databaseAt: directory + "/" + SQLiteClusterStore.databaseFileName, to: file)
            } catch { throw CommandFailure("\(error)") }
            print("backed up \(directory)/\(SQLiteClusterStore.databaseFileName) to \(file): \(AdminCommand.describe(summary))")
            print("the secret key (\(directory)/secret-key) is not in it: keep a copy apart")
        }
    }

    struct Restore: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "restore", abstract: "Make a backup the database of a data directory (server stopped).")
        @Argument(help: "The backup file.") var file: String
        @Option(help: "The data directory to restore into (default: ~/.fastgpu).") var dataDir: String?
        @Flag(help: "Restore over an existing database, which is kept aside as fastgpu.db.replaced-TIME.") var replace = false

        @OptionGroup var postgres: PostgresOptions

        func run() async throws {
            let directory = dataDir ?? (CLIConfig.home + "/.fastgpu")
            if let store = try postgres.url() {
                guard !replace else { throw ValidationError("--replace is for SQLite; restore a PostgreSQL backup into a new, empty database") }
                let jobs = try await PostgresBackup.restore(file, into: store, password: try postgres.password())
                print("restored \(file) into \(store): \(jobs) jobs")
                return
            }
            let summary: SQLiteBackupSummary
            do {
                summary = try SQLiteClusterStore.restore(backup: file, intoDirectory: directory, replacing: replace)
            } catch { throw CommandFailure("\(error)") }
            print("restored \(file) into \(directory): \(AdminCommand.describe(summary))")
            if !FileManager.default.fileExists(atPath: directory + "/secret-key") {
                print("no secret key in \(directory): put the server's secret-key there before it starts, or project secrets cannot be read")
            }
        }
    }

    static func describe(_ summary: SQLiteBackupSummary) -> String {
        "\(summary.jobs) jobs, \(summary.projects) projects, schema '\(summary.schema)', \(summary.bytes) bytes"
    }
}

/// `--store postgres://...` of `admin backup` and `admin restore`.
struct PostgresOptions: ParsableArguments {
    @Option(help: ArgumentHelp("A PostgreSQL store: postgres://USER@HOST[:PORT]/DATABASE (default: the SQLite database of --data-dir).", valueName: "store"))
    var store: String?

    @Option(help: ArgumentHelp("File whose first line is the PostgreSQL password (else FASTGPU_STORE_PASSWORD or PGPASSWORD).", valueName: "file"))
    var storePasswordFile: String?

    func url() throws -> PostgresStoreURL? {
        guard let store, store != "sqlite" else { return nil }
        do { return try PostgresStoreURL(store) } catch { throw ValidationError("--store: \(error)") }
    }

    func password() throws -> String? {
        do { return try PostgresStoreURL.password(file: storePasswordFile, environment: ProcessInfo.processInfo.environment) } catch {
            throw CommandFailure("\(error)")
        }
    }
}

/// Backups of a PostgreSQL store with PostgreSQL's own tools: `pg_dump` (custom format: one
/// consistent snapshot while the control planes run) and `pg_restore` into an empty database.
enum PostgresBackup {
    /// Runs one of PostgreSQL's tools and returns what it printed; its first line of complaint
    /// becomes the error.
    @discardableResult
    static func tool(_ name: String, _ arguments: [String], password: String?, tls: Bool = false) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [name] + arguments
        var environment = ProcessInfo.processInfo.environment
        if let password { environment["PGPASSWORD"] = password }
        environment["PGCONNECT_TIMEOUT"] = "10"
        environment["PGSSLMODE"] = tls ? "require" : "disable"
        process.environment = environment
        let output = Pipe(), errors = Pipe()
        process.standardError = errors
        process.standardOutput = output
        do { try process.run() } catch { throw CommandFailure("cannot run \(name): \(error.localizedDescription) (install PostgreSQL's client tools)") }
        // Standard output first: it is the long one (a listing); complaints are a few lines.
        let printed = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let text = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            let line = text.split(separator: "\n").first.map(String.init) ?? "exit status \(process.terminationStatus)"
            throw CommandFailure("\(name) failed: \(line.prefix(300))")
        }
        return printed
    }

    static func connection(_ url: PostgresStoreURL) -> [String] {
        ["--host", url.host, "--port", String(url.port), "--username", url.user, "--no-password"]
    }

    static func dump(_ url: PostgresStoreURL, password: String?, to file: String) async throws -> Int {
        guard !FileManager.default.fileExists(atPath: file) else { throw CommandFailure("\(file) exists: a backup never overwrites a file") }
        let partial = file + ".partial"
        try? FileManager.default.removeItem(atPath: partial)
        try tool("pg_dump", connection(url) + ["--format=custom", "--no-owner", "--file", partial, "--", url.database], password: password, tls: url.requireTLS)
        // A dump of something that is not a FastGPU store is no backup of one.
        let contents = (try? tool("pg_restore", ["--list", "--", partial], password: nil)) ?? ""
        guard contents.contains("TABLE public job "), contents.contains("TABLE public schema_migration ") else {
            try? FileManager.default.removeItem(atPath: partial)
            throw CommandFailure("\(url) holds no FastGPU store (no job or schema_migration table); nothing was written")
        }
        chmod(partial, 0o600)
        guard rename(partial, file) == 0 else { throw CommandFailure("cannot write \(file)") }
        let size = (try? FileManager.default.attributesOfItem(atPath: file)[.size] as? Int) ?? 0
        return size
    }

    /// Restores into `url`, which must be empty (a new database), then opens it as a store
    /// (applying any newer migrations) and counts its jobs.
    static func restore(_ file: String, into url: PostgresStoreURL, password: String?) async throws -> Int {
        guard FileManager.default.isReadableFile(atPath: file) else { throw CommandFailure("there is no file \(file) to restore") }
        do {
            try tool("pg_restore", connection(url) + ["--no-owner", "--exit-on-error", "--single-transaction", "--dbname", url.database, "--", file],
                     password: password, tls: url.requireTLS)
        } catch let failure as CommandFailure where failure.description.contains("already exists") {
            throw CommandFailure("\(url) is not empty: restore into a new database (createdb), then point the servers at it; nothing was changed")
        }
        let store: PostgresClusterStore
        do { store = try await PostgresClusterStore(url: url, password: password) } catch { throw CommandFailure("\(error)") }
        defer { store.shutdown() }
        do { return try await store.load().jobs.count } catch { throw CommandFailure("the restored database does not load: \(error)") }
    }
}
