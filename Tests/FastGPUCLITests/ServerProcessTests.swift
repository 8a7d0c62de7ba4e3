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

        init(dataDir: String) throws {
            process.executableURL = CLITests.binary
            process.arguments = ["server", "--data-dir", dataDir, "--port", "0", "--log-level", "notice"]
            process.standardOutput = output
            process.standardError = errors
            try process.run()
            // Blocks until the server says where it listens; no sleeping.
            // (The gateway says where it listens on a line of its own, before or after.)
            var seen = ""
            while seen.split(separator: "\n", omittingEmptySubsequences: false).dropLast().first(where: { $0.contains("server listening on") }) == nil {
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

    @Test func anUnusableDataDirectoryIsOneLine() throws {
        let run = try CLITests.run(["server", "--data-dir", "/proc/fastgpu-nope", "--port", "0"])
        #expect(run.status != 0)
        #expect(run.errors.split(separator: "\n").count <= 2, "\(run.errors)")
        #expect(run.errors.contains("cannot create the data directory /proc/fastgpu-nope"))
    }
}
