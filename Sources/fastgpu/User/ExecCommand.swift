import ArgumentParser
import FastGPUClient
import FastGPUWire
import Foundation

/// `fastgpu exec JOB -- COMMAND`: a command in a running job's allocation (a step), as `srun`
/// inside `salloc` or `kubectl exec`: on the job's GPUs, in its work directory, as its user.
/// Prints the step's output as it comes and exits with its exit code.
struct ExecCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "exec",
        abstract: "Run a command in a running job's allocation (its GPUs, work directory and user), printing its output.",
        discussion: """
            Hold GPUs with a job that sleeps, then run steps on them:
              fastgpu run --gpus 24GB:2 --max-runtime 2h --detach -- sleep 7200
              fastgpu exec 12 -- nvidia-smi -L
              fastgpu exec 12 -- python train.py --epochs 1
            Exit code: the command's; 1 when the allocation ended first.
            """)

    @OptionGroup var connection: ClientOptions
    @Option(name: .customLong("env"), parsing: .singleValue, help: ArgumentHelp("NAME=VALUE for the command (repeatable).", valueName: "env"))
    var env: [String] = []
    @Argument(help: "The job's id.") var job: String
    @Argument(parsing: .postTerminator, help: "The command, after --.") var command: [String] = []

    func run() async throws {
        guard !command.isEmpty else { throw CommandFailure("no command: fastgpu exec JOB -- COMMAND") }
        var environment: [String: String] = [:]
        for entry in env {
            guard let equals = entry.firstIndex(of: "="), entry[..<equals].range(of: #"^[A-Za-z_][A-Za-z0-9_]*$"#, options: .regularExpression) != nil else {
                throw CommandFailure("--env takes NAME=VALUE, not '\(entry.prefix(64))'")
            }
            environment[String(entry[..<equals])] = String(entry[entry.index(after: equals)...])
        }
        let id = try parseJobID(job)
        let client = try await connection.client()
        var step = try await client.startStep(job: id, StepSubmissionBody(command: command, env: environment.isEmpty ? nil : environment))
        var shown: (out: Int64, err: Int64) = (0, 0)
        while true {
            // What is new: the totals say how much; the kept text ends with it.
            let out = Array(step.stdout.utf8), err = Array(step.stderr.utf8)
            let newOut = Int(min(Int64(out.count), step.stdoutBytes - shown.out)), newErr = Int(min(Int64(err.count), step.stderrBytes - shown.err))
            if newOut > 0 { FileHandle.standardOutput.write(Data(out.suffix(newOut))) }
            if newErr > 0 { FileHandle.standardError.write(Data(err.suffix(newErr))) }
            shown = (step.stdoutBytes, step.stderrBytes)
            switch step.state {
            case "succeeded", "failed":
                throw ExitCode(step.exitCode ?? 1)
            case "lost":
                Output.error("fastgpu: job \(id)'s allocation ended before the command did\n")
                throw ExitCode(1)
            default:
                step = try await client.step(job: id, step: step.id, after: step.version, wait: .seconds(20))
            }
        }
    }
}
