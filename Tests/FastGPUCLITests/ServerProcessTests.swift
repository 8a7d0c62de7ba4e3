import Foundation
import Testing

/// The real `fastgpu server` process: what it prints, and that a job it acknowledged survives
/// the process being killed with SIGKILL (no chance to flush anything).
@Suite struct ServerProcessTests {
    final class Server {
        let process = Process()
        let output = Pipe()
        let errors = Pipe()
        var port = 0

        /// `until`: the line to wait for (a server on PostgreSQL says when it leads).
        init(dataDir: String, arguments: [String] = [], until: String = "server listening on") throws {
            process.executableURL = CLITests.binary
            process.arguments = ["server", "--data-dir", dataDir, "--port", "0", "--log-level", "notice"] + arguments
            process.standardOutput = output
            process.standardError = errors
            try process.run()
            // Blocks until the server says where it listens; no sleeping.
            // (The gateway says where it listens on a line of its own, before or after.)
            var seen = ""
            while seen.split(separator: "\n", omittingEmptySubsequences: false).dropLast().first(where: { $0.contains(until) }) == nil {
                let data = output.fileHandleForReading.availableData
                if data.isEmpty { break }
                seen += String(decoding: data, as: UTF8.self)
            }
            guard let line = seen.split(separator: "\n").first(where: { $0.contains("server listening on") }),
                  let range = line.range(of: "http://127.0.0.1:") else { throw CLIError("server did not start: \(seen)") }
            port = Int(line[range.upperBound...].prefix { $0.isNumber }) ?? 0
        }

        func kill(_ signal: Int32) -> Int32 {
            Foundation.kill(process.processIdentifier, signal)
            process.waitUntilExit()
            return process.terminationStatus
        }
    }

    struct CLIError: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }

    /// curl, for a client that is not this codebase.
    static func curl(_ arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        // JSON bodies say so: the API answers 415 to the form type curl -d would send.
        process.arguments = ["curl", "-s", "-H", "Content-Type: application/json"] + arguments
        let out = Pipe()
        process.standardOutput = out
        try process.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return String(decoding: data, as: UTF8.self)
    }

    @Test(.timeLimit(.minutes(1))) func acknowledgedJobsSurviveSIGKILL() throws {
        let dataDir = FileManager.default.temporaryDirectory.appendingPathComponent("fastgpu-cli-\(UInt64.random(in: 0...UInt64.max))").path
        let first = try Server(dataDir: dataDir)
        let tokenFile = dataDir + "/admin-token"
        let attributes = try FileManager.default.attributesOfItem(atPath: tokenFile)
        #expect((attributes[.posixPermissions] as? Int) == 0o600)
        let token = try String(contentsOfFile: tokenFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(token.hasPrefix("fgpu_"))
        var acknowledged: [String] = []
        for i in 0..<10 {
            let reply = try Self.curl(["-w", "\n%{http_code}", "-X", "POST", "http://127.0.0.1:\(first.port)/v1/jobs", "-H", "Authorization: Bearer \(token)",
                                       "-d", #"{"project":"default","name":"j\#(i)","command":["true"]}"#])
            #expect(reply.hasSuffix("\n201"), "\(reply)")
            acknowledged.append("\"name\":\"j\(i)\"")
        }
        #expect(first.kill(SIGKILL) != 0)
        let firstErrors = String(decoding: first.errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(firstErrors.contains(tokenFile), "the first start says where the admin token is")

        let second = try Server(dataDir: dataDir)
        let list = try Self.curl(["http://127.0.0.1:\(second.port)/v1/jobs?limit=100", "-H", "Authorization: Bearer \(token)"])
        for job in acknowledged { #expect(list.contains(job), "\(job) lost") }
        #expect(second.kill(SIGTERM) == 0, "SIGTERM is a graceful shutdown")
        let secondErrors = String(decoding: second.errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(!secondErrors.contains("created project"), "no second bootstrap")
    }

    @Test(.timeLimit(.minutes(2))) func aBackupTakenWhileTheServerRunsRestoresIntoAFreshServerThatServesTheSameJobs() throws {
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("fastgpu-backup-\(UInt64.random(in: 0...UInt64.max))").path
        let (dataDir, restoredDir, backup) = (base + "/a", base + "/b", base + "/fastgpu.backup")
        let first = try Server(dataDir: dataDir)
        let token = try String(contentsOfFile: dataDir + "/admin-token", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        for i in 0..<5 {
            let reply = try Self.curl(["-w", "\n%{http_code}", "-X", "POST", "http://127.0.0.1:\(first.port)/v1/jobs", "-H", "Authorization: Bearer \(token)",
                                       "-d", #"{"project":"default","name":"kept\#(i)","command":["true"]}"#])
            #expect(reply.hasSuffix("\n201"), "\(reply)")
        }
        let taken = try CLITests.run(["admin", "backup", backup, "--data-dir", dataDir])
        #expect(taken.status == 0, "\(taken.errors)")
        #expect(taken.output.contains("5 jobs, 1 projects") && taken.output.contains("secret key"), "\(taken.output)")
        // Not into a directory a running server holds, and no second server on it either.
        let busy = try CLITests.run(["admin", "restore", backup, "--data-dir", dataDir, "--replace"])
        #expect(busy.status != 0 && busy.errors.contains("another FastGPU server uses"), "\(busy.errors)")
        let twice = try CLITests.run(["server", "--data-dir", dataDir, "--port", "0"])
        #expect(twice.status != 0 && twice.errors.contains("stop it first"), "\(twice.errors)")

        let restored = try CLITests.run(["admin", "restore", backup, "--data-dir", restoredDir])
        #expect(restored.status == 0, "\(restored.errors)")
        #expect(restored.output.contains("no secret key"), "\(restored.output)")
        try FileManager.default.copyItem(atPath: dataDir + "/secret-key", toPath: restoredDir + "/secret-key")
        #expect(first.kill(SIGKILL) != 0)
        let second = try Server(dataDir: restoredDir)
        let list = try Self.curl(["http://127.0.0.1:\(second.port)/v1/jobs?limit=100", "-H", "Authorization: Bearer \(token)"])
        for i in 0..<5 { #expect(list.contains("\"name\":\"kept\(i)\""), "kept\(i) lost: \(list)") }
        #expect(second.kill(SIGTERM) == 0)
        let bad = try CLITests.run(["admin", "restore", base + "/none.db", "--data-dir", restoredDir])
        #expect(bad.status != 0 && bad.errors.split(separator: "\n").count == 1 && bad.errors.contains("there is no file"), "\(bad.errors)")
    }

    /// A database of its own on the test PostgreSQL (`FASTGPU_TEST_POSTGRES`), as a store URL.
    static func freshPostgresStore() throws -> String {
        guard let admin = ProcessInfo.processInfo.environment["FASTGPU_TEST_POSTGRES"] else { throw CLIError("no FASTGPU_TEST_POSTGRES") }
        let name = "fastgpu_cli_\(UInt64.random(in: 0...UInt64.max))"
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["psql", admin, "-X", "-q", "-c", "CREATE DATABASE \(name)"]
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw CLIError("cannot create a database on \(admin)") }
        return String(admin[..<admin.lastIndex(of: "/")!]) + "/" + name
    }

    @Test(.enabled(if: ProcessInfo.processInfo.environment["FASTGPU_TEST_POSTGRES"] != nil), .timeLimit(.minutes(2)))
    func twoServersOnOnePostgreSQLOneLeadsTheOtherForwardsAndTakesOverAndBackupsRestoreIntoANewDatabase() throws {
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("fastgpu-pg-\(UInt64.random(in: 0...UInt64.max))").path
        let store = try Self.freshPostgresStore()
        let leader = try Server(dataDir: base, arguments: ["--store", store], until: "leading")
        let follower = try Server(dataDir: base, arguments: ["--store", store])
        let token = try String(contentsOfFile: base + "/admin-token", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        // Either server takes a submission; the follower forwards it.
        for (i, port) in [leader.port, follower.port, follower.port].enumerated() {
            let reply = try Self.curl(["-w", "\n%{http_code}", "-X", "POST", "http://127.0.0.1:\(port)/v1/jobs", "-H", "Authorization: Bearer \(token)",
                                       "-H", "Idempotency-Key: k\(i)", "-d", #"{"project":"default","name":"pg\#(i)","command":["true"]}"#])
            #expect(reply.hasSuffix("\n201"), "\(reply)")
        }
        // The leader dies; the follower leads at once, with every acknowledged job, and the same key is the same job.
        #expect(leader.kill(SIGKILL) != 0)
        var lead = ""
        while !lead.contains("leading") {
            let data = follower.output.fileHandleForReading.availableData
            if data.isEmpty { break }
            lead += String(decoding: data, as: UTF8.self)
        }
        #expect(lead.contains("leading (epoch 2)"), "\(lead)")
        let again = try Self.curl(["-X", "POST", "http://127.0.0.1:\(follower.port)/v1/jobs", "-H", "Authorization: Bearer \(token)",
                                   "-H", "Idempotency-Key: k1", "-d", #"{"project":"default","name":"pg1","command":["true"]}"#])
        let list = try Self.curl(["http://127.0.0.1:\(follower.port)/v1/jobs?limit=100", "-H", "Authorization: Bearer \(token)"])
        for i in 0..<3 { #expect(list.contains("\"name\":\"pg\(i)\""), "pg\(i) lost: \(list)") }
        #expect(again.contains("\"id\":2,"), "\(again)")

        // pg_dump while it runs; pg_restore into a new database; a server there serves the same jobs.
        let backup = base + "/fastgpu.pgdump"
        let taken = try CLITests.run(["admin", "backup", backup, "--store", store])
        #expect(taken.status == 0 && taken.output.contains("pg_dump"), "\(taken.errors)")
        let target = try Self.freshPostgresStore()
        let restored = try CLITests.run(["admin", "restore", backup, "--store", target])
        #expect(restored.status == 0 && restored.output.contains("3 jobs"), "\(restored.output) \(restored.errors)")
        let occupied = try CLITests.run(["admin", "restore", backup, "--store", target])
        #expect(occupied.status != 0 && occupied.errors.contains("not empty"), "\(occupied.errors)")
        #expect(follower.kill(SIGTERM) == 0)
        let third = try Server(dataDir: base, arguments: ["--store", target], until: "leading")
        let served = try Self.curl(["http://127.0.0.1:\(third.port)/v1/jobs?limit=100", "-H", "Authorization: Bearer \(token)"])
        for i in 0..<3 { #expect(served.contains("\"name\":\"pg\(i)\""), "pg\(i) not restored: \(served)") }
        #expect(third.kill(SIGTERM) == 0)

        let password = try CLITests.run(["server", "--store", "postgres://u:secret@127.0.0.1/x"])
        #expect(password.status != 0 && password.errors.contains("put no password in the store URL") && !password.errors.contains("secret@"), "\(password.errors)")
    }

    @Test func anUnusableDataDirectoryIsOneLine() throws {
        let run = try CLITests.run(["server", "--data-dir", "/proc/fastgpu-nope", "--port", "0"])
        #expect(run.status != 0)
        #expect(run.errors.split(separator: "\n").count <= 2, "\(run.errors)")
        #expect(run.errors.contains("cannot create the data directory /proc/fastgpu-nope"))
    }
}
