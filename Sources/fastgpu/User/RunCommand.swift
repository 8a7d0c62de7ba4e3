import ArgumentParser
import FastGPUClient
import FastGPUModel
import FastGPUWire
import Foundation

struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Submit a job and follow it: its place in the queue, then its output; exits with its exit code.",
        discussion: """
            Examples:
              fastgpu run --gpus H100:2 -- python train.py
              fastgpu run --gpu-memory 20GB -- python serve.py      # a GPU share
              fastgpu run --nodes 2 --gpus 8 -- torchrun train.py   # a gang
              fastgpu run -f task.yaml                              # a task file

            While the job waits, a line shows its place in the queue, when it should start \
            and why it waits; once it runs, its output streams here. Ctrl-C leaves the job \
            running; --detach returns as soon as the job is accepted.
            """
    )

    @OptionGroup var connection: ClientOptions

    @Option(name: .customLong("gpus"), help: ArgumentHelp("Whole GPUs per node: MODEL:COUNT, COUNT, MODEL, or with a memory floor per GPU: 24GB:2, H100:80GB:8.", valueName: "gpus"))
    var gpus: String?

    @Option(name: .customLong("gpu-memory"), help: ArgumentHelp("A share of one GPU with this much memory (20GB); with --gpus N (N ≥ 2), the least memory each GPU has.", valueName: "size"))
    var gpuMemory: String?

    @Option(name: .customLong("mig"), help: ArgumentHelp("One MIG slice of this profile (1g.10gb).", valueName: "profile"))
    var mig: String?

    @Option(help: "Nodes (tasks) that start together as a gang, each with the resources asked.")
    var nodes: Int?

    @Option(help: ArgumentHelp("CPU cores per node (4, 0.5).", valueName: "cores"))
    var cpus: String?

    @Option(help: ArgumentHelp("Memory per node (64GB).", valueName: "size"))
    var memory: String?

    @Option(help: "low, normal or high.")
    var priority: String?

    @Flag(help: "Run on the spot tier: cheaper, and may be preempted.")
    var spot = false

    @Option(name: .customLong("max-runtime"), help: ArgumentHelp("Stop the job after this long (90m, 12h).", valueName: "duration"))
    var maxRuntime: String?

    @Option(help: "New attempts when a node is lost under the job (a non-zero exit is final).")
    var retry: Int?

    @Option(help: ArgumentHelp("Run the command in this OCI image (a container), e.g. pytorch/pytorch:2.3.0-cuda12.1-cudnn8-runtime.", valueName: "image"))
    var image: String?

    @Option(help: ArgumentHelp("none (loopback only), isolated (containers' default: outbound only) or host (the node's network, for multi-node NCCL).", valueName: "mode"))
    var network: String?

    @Option(help: "A name for the job.")
    var name: String?

    @Option(help: "The project to run in (default: the saved one, else `default`).")
    var project: String?

    @Option(name: .customLong("env"), help: ArgumentHelp("K=V, or K to pass this shell's value (repeatable).", valueName: "K=V"))
    var env: [String] = []

    @Option(name: .customLong("secret"), help: ArgumentHelp("A secret env value: K to pass this shell's value (best: it stays out of ps and history), or K=V. Encrypted on the server, never shown (repeatable).", valueName: "K"))
    var secret: [String] = []

    @Option(name: .customLong("secret-ref"), help: ArgumentHelp("K=NAME: env K from the project's secret NAME (fastgpu secrets set) (repeatable).", valueName: "K=NAME"))
    var secretRef: [String] = []

    @Option(name: .customLong("output"), help: ArgumentHelp("PATH=s3://BACKEND/PREFIX/: upload the directory PATH (in the job's working directory) there after the process exits; {job_id} becomes the job's id (repeatable).", valueName: "PATH=URI"))
    var output: [String] = []

    @Option(name: .customLong("input"), help: ArgumentHelp("PATH=s3://BACKEND/KEY: download the object (or, for s3://BACKEND/PREFIX/, every object under it) to PATH in the job's working directory before the command starts (repeatable).", valueName: "PATH=URI"))
    var input: [String] = []

    @Option(name: .customLong("outputs-when"), help: ArgumentHelp("Upload the --output directories always (the default), on success or on failure.", valueName: "when"))
    var outputsWhen: String?

    @Option(name: [.customShort("f"), .customLong("file")], help: ArgumentHelp("A task file (YAML) with the same meaning as the flags.", valueName: "task.yaml"))
    var file: String?

    @Flag(name: [.short, .long], help: "Return once the job is accepted; follow it later with `fastgpu jobs logs -f`.")
    var detach = false

    @Flag(name: .customLong("dry-run"), help: "Print what the job would cost and when it would start; submit nothing.")
    var dryRun = false

    @Option(name: .customLong("idempotency-key"), help: ArgumentHelp("Submit at most once under this key (24 h): a script that runs again gets the same job.", valueName: "key"))
    var idempotencyKey: String?

    @Argument(parsing: .postTerminator, help: "The command to run, after --.")
    var command: [String] = []

    func spec() throws -> JobSpec {
        var flags = JobSpec()
        flags.name = name
        flags.project = project
        flags.gpus = gpus
        flags.gpuMemory = gpuMemory
        flags.mig = mig
        flags.nodes = nodes
        flags.cpus = cpus
        flags.memory = memory
        flags.priority = priority
        flags.spot = spot ? true : nil
        flags.maxRuntime = maxRuntime
        flags.retry = retry
        flags.image = image
        flags.network = network
        flags.env = try JobSpec.parseEnv(env)
        flags.secrets = try JobSpec.parseEnv(secret, flag: "--secret")
        for item in secretRef {
            guard let equals = item.firstIndex(of: "="), equals != item.startIndex, item.index(after: equals) != item.endIndex else {
                throw CommandFailure("--secret-ref \(item): give ENV_NAME=secret-name")
            }
            flags.secretRefs[String(item[..<equals])] = String(item[item.index(after: equals)...])
        }
        for item in output {
            guard let equals = item.firstIndex(of: "="), equals != item.startIndex else {
                throw CommandFailure("--output \(item): give PATH=s3://BACKEND/PREFIX/")
            }
            flags.outputs.append(OutputBody(path: String(item[..<equals]), to: String(item[item.index(after: equals)...]), when: outputsWhen))
        }
        for item in input {
            guard let equals = item.firstIndex(of: "="), equals != item.startIndex else {
                throw CommandFailure("--input \(item): give PATH=s3://BACKEND/KEY")
            }
            flags.inputs.append(InputBody(from: String(item[item.index(after: equals)...]), path: String(item[..<equals])))
        }
        flags.command = command
        let base = try file.map { try TaskFile.load(path: $0) } ?? JobSpec()
        return base.overridden(by: flags)
    }

    func run() async throws {
        let body = try spec().body(defaultProject: ClientOptions.project(nil))
        let client = try await connection.client()
        if dryRun { return try await printEstimate(body, client: client) }
        // One key per invocation at least: a submission retried after a lost answer (a server
        // restart) is the same job, never a second one.
        let key = idempotencyKey ?? UUID().uuidString
        guard (1...255).contains(key.count) else { throw CommandFailure("--idempotency-key must be 1 to 255 characters") }
        let job = try await retryingWhileUnreachable(times: 10) { try await client.submit(body, idempotencyKey: key) }
        if detach {
            Output.write("\(job.id)\n")
            Output.error("job \(job.id) submitted to \(job.project) (\(job.state)); follow it with `fastgpu jobs logs -f \(job.id)`\n")
            return
        }
        Output.error("job \(job.id) submitted to \(job.project)\n")
        let interrupt = DetachOnInterrupt(job: job.id)
        defer { interrupt.cancel() }
        let finished = try await JobFollower(client: client, job: job.id).follow(from: job)
        throw ExitCode(JobFollower.exitCode(of: finished))
    }
}

extension RunCommand {
    /// `--dry-run`: the cost per hour and for the run time, whether the budget admits it, when it would start.
    func printEstimate(_ body: JobSubmissionBody, client: FastGPUClient) async throws {
        let estimate = try await client.estimate(body)
        var rows = [["cost per hour", Money.text(estimate.perHourMicros)]]
        if let seconds = estimate.runtimeSeconds, let total = estimate.forRuntimeMicros {
            rows.append(["cost for \(WireTime.span(Double(seconds)))", "at most \(Money.text(total))"])
        }
        if let admits = estimate.budgetAdmits { rows.append(["budget", admits ? "admits it" : "would refuse it (budgetExhausted)"]) }
        if let start = estimate.estimatedStart {
            let seconds = WireTime.parse(start).map { $0.timeIntervalSinceNow } ?? 0
            rows.append(["estimated start", seconds < 1 ? "now" : "in \(WireTime.span(seconds)) (\(start))"])
        } else {
            rows.append(["estimated start", "unknown (running work gave no run time)"])
        }
        if let reason = estimate.reason { rows.append(["why it would wait", reason]) }
        Output.write(Output.pairs(rows))
    }
}

/// Ctrl-C during `fastgpu run` leaves the job running and says how to get back to it.
final class DetachOnInterrupt {
    private let source: any DispatchSourceSignal

    init(job: UInt64) {
        signal(SIGINT, SIG_IGN)
        source = DispatchSource.makeSignalSource(signal: SIGINT, queue: .global())
        source.setEventHandler {
            LiveLine.clear()
            Output.error("\ndetached; job \(job) goes on: `fastgpu jobs logs -f \(job)` follows it, `fastgpu jobs cancel \(job)` stops it\n")
            exit(130)
        }
        source.resume()
    }

    func cancel() {
        source.cancel()
        signal(SIGINT, SIG_DFL)
    }
}

/// A line that rewrites itself on a terminal; on a pipe, a plain line each time it changes.
enum LiveLine {
    nonisolated(unsafe) private static var last = ""
    static let isTerminal = isatty(STDERR_FILENO) == 1

    static func show(_ text: String) {
        guard text != last else { return }
        last = text
        if isTerminal {
            var size = winsize()
            let width = ioctl(STDERR_FILENO, UInt(TIOCGWINSZ), &size) == 0 && size.ws_col > 10 ? Int(size.ws_col) - 1 : 119
            let shown = text.count > width ? String(text.prefix(width - 1)) + "…" : text
            Output.error("\r\u{1B}[2K" + shown)
        } else {
            Output.error(text + "\n")
        }
    }

    static func clear() {
        if isTerminal && !last.isEmpty { Output.error("\r\u{1B}[2K") }
        last = ""
    }
}

/// Follows one job: its queue line while pending, its output while running, its end.
struct JobFollower {
    let client: FastGPUClient
    let job: UInt64

    func follow(from start: JobWire) async throws -> JobWire {
        var current = start
        var index: UInt64 = 0
        let submitted = WireTime.parse(start.submittedAt) ?? Date()
        while current.state == "pending" {
            if let reason = current.queue?.reason, reason.kind == "never" {
                LiveLine.clear()
                _ = try? await client.cancel(job)
                throw CommandFailure("job \(job) can never start: \(ReasonText.plain(reason.message)); it was cancelled")
            }
            LiveLine.show(Self.pendingLine(current, waited: Date().timeIntervalSince(submitted)))
            (current, index) = try await retryingWhileUnreachable { try await client.job(job, after: index, wait: .seconds(2)) }
        }
        LiveLine.clear()
        if current.state == "running", let first = current.allocations.last(where: \.live) {
            let waited = (WireTime.parse(first.startedAt) ?? Date()).timeIntervalSince(submitted)
            Output.error("job \(job) running on node \(first.node)\(first.devices.isEmpty ? "" : " (" + first.devices.joined(separator: ",") + ")") after \(String(format: "%.1f", max(0, waited))) s in the queue\n")
        }
        try await streamLogs(of: current, follow: true)
        var final = try await retryingWhileUnreachable { try await client.job(job) }
        // The log stream ends with the job; a requeued job goes on, so follow it again.
        var toldUploading = false
        while final.state == "pending" || final.state == "running" || final.state == "uploading" {
            if final.state == "uploading" && !toldUploading {
                Output.error("job \(job) uploading its outputs to \((final.outputs ?? []).joined(separator: ", ")) (its GPUs are free)\n")
                toldUploading = true
            }
            (final, index) = try await retryingWhileUnreachable { try await client.job(job, after: index, wait: .seconds(30)) }
            if final.state == "running" { try await streamLogs(of: final, follow: true) }
        }
        Output.error(Self.endLine(final) + "\n")
        return final
    }

    let lastPosition = Position()
    final class Position: @unchecked Sendable { var value: Int64 = 0 }

    /// Writes each line to stdout or stderr as the job wrote it; a gang's lines carry their rank.
    func streamLogs(of job: JobWire, follow: Bool) async throws {
        var ranks = Dictionary(job.allocations.map { ($0.id, $0.taskIndex) }, uniquingKeysWith: { a, _ in a })
        let gang = job.tasks > 1
        var failures = 0
        while true {
            do {
                for try await line in client.logs(of: self.job, after: lastPosition.value, follow: follow) {
                    failures = 0
                    var text = line.text
                    if gang {
                        if ranks[line.allocation] == nil, let fresh = try? await client.job(self.job) {
                            for allocation in fresh.allocations { ranks[allocation.id] = allocation.taskIndex }
                        }
                        let prefix = "[rank \(ranks[line.allocation].map(String.init) ?? "?")] "
                        text = text.split(separator: "\n", omittingEmptySubsequences: false).enumerated()
                            .map { $0.offset > 0 && $0.element.isEmpty ? "" : prefix + $0.element }.joined(separator: "\n")
                    }
                    if line.stream == "stderr" { Output.error(text) } else { Output.write(text) }
                    lastPosition.value = line.position
                }
                return
            } catch let error as ClientError {
                guard case .unreachable = error, failures < 60 else { throw error }
                failures += 1
                try await Task.sleep(for: .seconds(1))
            }
        }
    }


    static func pendingLine(_ job: JobWire, waited: Double) -> String {
        var parts = ["job \(job.id) pending \(WireTime.span(waited))"]
        if let queue = job.queue {
            parts.append("#\(queue.position) in queue")
            if let start = WireTime.until(queue.estimatedStart) { parts.append("starts \(start == "now" ? "now" : "~" + start)") }
            if let reason = queue.reason { parts.append(ReasonText.plain(reason.message)) }
        }
        return parts.joined(separator: " · ")
    }

    static func endLine(_ job: JobWire) -> String {
        let last = job.allocations.last
        let duration = zip(WireTime.parse(last?.startedAt), WireTime.parse(job.finishedAt)).map { WireTime.span($1.timeIntervalSince($0)) }
        switch job.state {
        case "succeeded": return "job \(job.id) succeeded" + (duration.map { " after \($0)" } ?? "")
        case "failed" where job.failure == "output_upload_failed":
            return "job \(job.id) failed: its outputs could not be uploaded (output_upload_failed; `fastgpu jobs show \(job.id)` says why, `fastgpu jobs outputs retry \(job.id)` tries again)"
        case "failed":
            let code = job.allocations.last(where: { ($0.exitCode ?? 0) != 0 })?.exitCode
            return "job \(job.id) failed" + (code.map { " with exit code \($0)" } ?? "") + (duration.map { " after \($0)" } ?? "")
                + (job.attempts > 1 ? " (attempt \(job.attempts) of \(job.maxAttempts))" : "")
        case "cancelled": return "job \(job.id) was cancelled"
        default: return "job \(job.id) is \(job.state)"
        }
    }

    /// The job's exit code, as a shell would give it: 0, the workload's own code, 128+signal for
    /// a workload killed by a signal, 1 for a job that failed without one or was cancelled.
    static func exitCode(of job: JobWire) -> Int32 {
        switch job.state {
        case "succeeded": return 0
        case "failed":
            guard let code = job.allocations.last(where: { ($0.exitCode ?? 0) != 0 })?.exitCode else { return 1 }
            if code < 0 { return 128 + min(-code, 127) }
            return code > 255 ? 1 : code
        default: return 1
        }
    }
}

private func zip<A, B>(_ a: A?, _ b: B?) -> (A, B)? {
    guard let a, let b else { return nil }
    return (a, b)
}

enum ReasonText {
    /// The server's message without its `never: ` or `not now: ` lead, where the context says it.
    static func plain(_ message: String) -> String {
        for lead in ["never: ", "not now: "] where message.hasPrefix(lead) { return String(message.dropFirst(lead.count)) }
        return message
    }
}

/// Calls again, once a second, while the server is out of reach (a restart), up to `times` times.
func retryingWhileUnreachable<T>(times: Int = 60, _ call: () async throws -> T) async throws -> T {
    try await retrying(attempts: times, every: .seconds(1), when: { ($0 as? ClientError)?.isUnreachable == true }, call)
}
