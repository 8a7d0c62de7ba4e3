import ArgumentParser
import FastGPUStoreSQLite
import Foundation

struct AdminCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "admin",
        abstract: "Operate a server's data directory: back up and restore its database.",
        discussion: """
            Run on the server's machine. A backup is taken while the server runs (SQLite's online \
            backup API: one consistent state); a restore needs the server stopped.
              fastgpu admin backup /backups/fastgpu-2026-12-03.db
              fastgpu admin restore /backups/fastgpu-2026-12-03.db --data-dir /srv/fastgpu --replace
            The secret key (DATA-DIR/secret-key) is not in a backup: keep a copy of it apart from \
            the backups, and put it back beside a restored database, or project secrets cannot be read.
            """,
        subcommands: [Backup.self, Restore.self])

    struct Backup: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "backup", abstract: "Copy the database into a new file, while the server runs.")
        @Argument(help: "The backup file to create (refused when it exists).") var file: String
        @Option(help: "The server's data directory (default: ~/.fastgpu).") var dataDir: String?

        func run() async throws {
            let directory = dataDir ?? (CLIConfig.home + "/.fastgpu")
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

        func run() async throws {
            let directory = dataDir ?? (CLIConfig.home + "/.fastgpu")
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
