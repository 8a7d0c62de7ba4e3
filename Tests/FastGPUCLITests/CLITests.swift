import Foundation
import Testing

/// Runs the real `fastgpu` binary built beside the tests: exit codes and what a person sees.
@Suite struct CLITests {
    struct Run {
        var status: Int32
        var output: String
        var errors: String
    }

    static var binary: URL {
        // The test bundle and the products share one build directory.
        let directory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        return directory.appendingPathComponent("fastgpu")
    }

    static var fixtures: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("FastGPUSimulatorTests/Fixtures")
    }

    /// `fastgpu ARGS`, with this process' environment or the one given.
    static func run(_ arguments: [String], environment: [String: String]? = nil) throws -> Run {
        let process = Process()
        // Under timeout(1): a command that hangs fails its test instead of hanging the suite.
        process.executableURL = URL(fileURLWithPath: "/usr/bin/timeout")
        process.arguments = ["120", binary.path] + arguments
        if let environment { process.environment = environment }
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let output = out.fileHandleForReading.readDataToEndOfFile()
        let errors = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Run(status: process.terminationStatus, output: String(decoding: output, as: UTF8.self), errors: String(decoding: errors, as: UTF8.self))
    }

    @Test func versionAndHelp() throws {
        #expect(FileManager.default.isExecutableFile(atPath: Self.binary.path), "fastgpu not built at \(Self.binary.path)")
        let version = try Self.run(["version"])
        #expect(version.status == 0 && version.output == "fastgpu 0.1.0\n")
        let help = try Self.run(["--help"])
        #expect(help.status == 0)
        for group in ["plan", "sim", "up", "server", "agent", "run", "jobs", "queue", "nodes", "projects", "tokens"] {
            #expect(help.output.contains("\n  \(group) "), "--help lacks \(group)")
        }
    }

    @Test func planPrintsAPlan() throws {
        let run = try Self.run(["plan", "--nodes", "4", "--jobs", "40", "--show", "2"])
        #expect(run.status == 0)
        #expect(run.output.contains("placed ") && run.output.contains("pending "))
    }

    @Test func simComparesPoliciesOnARealTraceExcerpt() throws {
        let trace = Self.fixtures.appendingPathComponent("mixed-first10.csv").path
        let run = try Self.run(["sim", "compare", "--trace", trace, "--format", "slurm", "--nodes", "2", "--policies", "fifo,fastgpu"])
        #expect(run.status == 0, "\(run.errors)")
        #expect(run.output.contains("fifo ") && run.output.contains("fastgpu ") && run.output.contains("avg JCT"))
    }

    @Test func simWritesEveryJobsOutcomeAsCSV() throws {
        let trace = Self.fixtures.appendingPathComponent("mixed-first10.csv").path
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("fastgpu-cli-outcomes-\(getpid()).csv")
        defer { try? FileManager.default.removeItem(at: file) }
        let run = try Self.run(["sim", "compare", "--trace", trace, "--format", "slurm", "--nodes", "2", "--policies", "fifo,fastgpu:claim=0",
                                "--outcomes", file.path])
        #expect(run.status == 0, "\(run.errors)")
        let lines = try String(contentsOf: file, encoding: .utf8).split(separator: "\n")
        #expect(lines.first == "policy,job,project,gpus,submit_s,start_s,finish_s,duration_s,preemptions")
        // Ten jobs under each of the two policies, every one finished after it started.
        #expect(lines.count == 1 + 2 * 10)
        for line in lines.dropFirst() {
            let fields = line.split(separator: ",", omittingEmptySubsequences: false)
            #expect(fields.count == 9, "\(line)")
            let submit = Double(fields[4]), start = Double(fields[5]), finish = Double(fields[6]), duration = Double(fields[7])
            #expect(submit != nil && start != nil && finish != nil && duration != nil, "\(line)")
            if let submit, let start, let finish, let duration { #expect(submit <= start && start + duration <= finish, "\(line)") }
        }
        #expect(lines.filter { $0.hasPrefix("fastgpu:claim=0,") }.count == 10)
    }

    struct Bad: Sendable, CustomTestStringConvertible {
        var arguments: [String]
        var says: String
        var testDescription: String { arguments.joined(separator: " ") }
    }

    @Test(arguments: [
        Bad(arguments: ["plan", "--policy", "nope"], says: "unknown --policy 'nope'"),
        Bad(arguments: ["plan", "--nodes", "0"], says: "--nodes must be between 1 and 100000"),
        Bad(arguments: ["sim", "run", "--trace", "/nonexistent.csv", "--nodes", "1"], says: "/nonexistent.csv: cannot read the file"),
        Bad(arguments: ["sim", "run", "--trace", "x.csv"], says: "give the cluster one way"),
        Bad(arguments: ["sim", "compare", "--trace", "x.csv", "--nodes", "1", "--policies", "fifo,bogus"], says: "unknown policy 'bogus'"),
        Bad(arguments: ["sim", "run", "--trace", "x.csv", "--pools", "a=0"], says: "--pools takes project=nodes pairs"),
        Bad(arguments: ["nosuchcommand"], says: "Unexpected argument 'nosuchcommand'"),
    ])
    func badInputIsOneClearLineAndANonZeroExit(_ bad: Bad) throws {
        let run = try Self.run(bad.arguments)
        #expect(run.status != 0)
        let errorLines = run.errors.split(separator: "\n").filter { $0.hasPrefix("Error:") }
        #expect(errorLines.count == 1, "\(run.errors)")
        #expect(errorLines.first?.contains(bad.says) == true, "\(run.errors)")
        #expect(!run.errors.contains("Fatal error") && !run.errors.contains("Stack dump"))
    }

    @Test func aBadTraceRowNamesItsLine() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("fastgpu-cli-bad-\(getpid()).csv")
        try "submit_s,gpus,duration_s\n0,1,10\n5,x,3\n".write(to: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: file) }
        let run = try Self.run(["sim", "run", "--trace", file.path, "--nodes", "1"])
        #expect(run.status != 0)
        #expect(run.errors.contains("\(file.path):3: gpus 'x' is not a whole number"))
    }
}
