import ArgumentParser
import FastGPUClient
import FastGPUModel
import FastGPUWire
import Foundation

/// A job id as people type it: `12` or `job-12`.
func parseJobID(_ text: String) throws -> UInt64 {
    let digits = text.hasPrefix("job-") ? String(text.dropFirst(4)) : text
    guard let id = UInt64(digits) else { throw CommandFailure("'\(text)' is not a job id (a number such as 12)") }
    return id
}

struct JobsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "jobs",
        abstract: "List, inspect, follow and cancel jobs.",
        subcommands: [List.self, Show.self, Logs.self, Cancel.self, Why.self, Outputs.self],
        defaultSubcommand: List.self
    )

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "ls", abstract: "Jobs, pending and running ones unless --all or --state.")

        @OptionGroup var connection: ClientOptions
        @OptionGroup var format: OutputOptions

        @Option(help: "Only this project's jobs.")
        var project: String?

        @Option(help: "Comma-separated states: pending, running, succeeded, failed, cancelled.")
        var state: String?

        @Flag(name: [.short, .long], help: "Finished jobs too.")
        var all = false

        func run() async throws {
            let client = try await connection.client()
            let states = state.map { $0.split(separator: ",").map(String.init) } ?? (all ? [] : ["pending", "running"])
            let known = ["pending", "running", "succeeded", "failed", "cancelled"]
            if let bad = states.first(where: { !known.contains($0) }) { throw CommandFailure("--state: '\(bad)' is not one of \(known.joined(separator: ", "))") }
            var items: [JobWire] = []
            var after: String?
            repeat {
                let page = try await client.jobs(project: project, states: states, limit: 1000, after: after)
                items += page.items
                after = page.next
            } while after != nil
            if format.json { return try Output.json(JobListWire(items: items, next: nil)) }
            let now = Date()
            Output.write(Output.table(["ID", "NAME", "PROJECT", "STATE", "GPUS", "NODES", "SUBMITTED", "COST", "INFO"], items.map { job in
                [String(job.id), job.name, job.project, job.state, Self.gpus(job), String(job.tasks), WireTime.age(job.submittedAt, now: now),
                 Money.text(job.costMicros ?? 0), Self.info(job)]
            }))
        }

        static func gpus(_ job: JobWire) -> String {
            let model = job.gpuModel.map { $0 + ":" } ?? ""
            if job.gpus.hasPrefix("share:") { return model + job.gpus.replacingOccurrences(of: "share:", with: "share ") }
            if job.gpus.hasPrefix("mig:") { return model + job.gpus }
            return job.gpus == "none" ? "-" : model + job.gpus
        }

        static func info(_ job: JobWire) -> String {
            switch job.state {
            case "pending":
                guard let queue = job.queue else { return "" }
                return "#\(queue.position)" + (WireTime.until(queue.estimatedStart).map { ", starts ~\($0)" + (queue.estimatedStartBasis == "learned" ? " (learned)" : "") } ?? "") + (queue.reason.map { ": \($0.code)" } ?? "")
            case "running":
                let nodes = Set(job.allocations.filter(\.live).map(\.node)).sorted()
                return "on node " + nodes.map(String.init).joined(separator: ",")
            default:
                // What the state column does not already say: the exit code, the run time.
                let line = JobFollower.endLine(job).replacingOccurrences(of: "job \(job.id) ", with: "")
                for lead in ["succeeded", "failed", "was cancelled"] where line.hasPrefix(lead) {
                    return String(line.dropFirst(lead.count)).trimmingCharacters(in: .whitespaces)
                }
                return line
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "show", abstract: "One job: its request, allocations and, while pending, its place in the queue.")

        @OptionGroup var connection: ClientOptions
        @OptionGroup var format: OutputOptions
        @Argument(help: "The job's id.") var job: String

        func run() async throws {
            let job = try await connection.client().job(try parseJobID(self.job))
            if format.json { return try Output.json(job) }
            var text = """
                Job \(job.id)  \(job.name)
                  project      \(job.project) (by \(job.submitter))
                  state        \(job.state)\(job.state == "failed" || job.state == "succeeded" ? " (exit \(JobFollower.exitCode(of: job)))" : "")
                  command      \(job.command.map(Self.quoted).joined(separator: " "))
                  resources    \(job.tasks) node(s) × GPUs \(List.gpus(job)), \(Double(job.cpuMillis) / 1000) CPU, \(job.memoryMiB) MiB\(job.gang ? ", gang" : "")
                  priority     \(job.priority)\(job.spot ? ", spot" : "")
                  attempts     \(job.attempts) of \(job.maxAttempts)
                  cost         \(Money.text(job.costMicros ?? 0))\(job.state == "running" ? " so far" : "")
                  submitted    \(job.submittedAt) (\(WireTime.age(job.submittedAt)))

                """
            if let image = job.image { text += "  image        \(image)\n" }
            if let network = job.network { text += "  network      \(network)\n" }
            if let limit = job.maxRuntimeSeconds { text += "  max runtime  \(WireTime.span(Double(limit)))\n" }
            if let finished = job.finishedAt { text += "  finished     \(finished)\n" }
            if let outputs = job.outputs { text += "  outputs      " + outputs.joined(separator: " ") + "\n" }
            if job.failure == "output_upload_failed" {
                // The agent's words, from the job's events: what the person needs to fix it.
                let events = try? await connection.client().events(of: job.id)
                let why = events?.items.last(where: { $0.kind == "output-upload-failed" })?.message ?? "see the job's events"
                text += "  failure      output_upload_failed: \(why)\n               (fastgpu jobs outputs retry \(job.id) tries again)\n"
            }
            if !job.env.isEmpty { text += "  env          " + job.env.keys.sorted().map { "\($0)=\(job.env[$0]!)" }.joined(separator: " ") + "\n" }
            if let secrets = job.secrets, !secrets.isEmpty { text += "  secrets      " + secrets.joined(separator: " ") + " (values hidden)\n" }
            if let queue = job.queue {
                text += "  queue        #\(queue.position)" + (WireTime.until(queue.estimatedStart).map { ", estimated start \($0)" + (queue.estimatedStartBasis == "learned" ? " (learned)" : "") } ?? "") + "\n"
                if let reason = queue.reason { text += "  waiting for  \(ReasonText.plain(reason.message))\n" }
            }
            Output.write(text)
            if !job.allocations.isEmpty {
                Output.write("\nAllocations:\n" + Output.table(["ID", "NODE", "RANK", "DEVICES", "EPOCH", "STATE", "STARTED", "ENDED"], job.allocations.map { a in
                    [String(a.id), String(a.node), String(a.taskIndex), a.devices.isEmpty ? "-" : a.devices.joined(separator: ","), String(a.epoch),
                     a.live ? a.report : (a.outcome ?? "ended") + (a.exitCode.map { " (\($0))" } ?? ""), a.startedAt, a.endedAt ?? "-"]
                }))
            }
        }

        static func quoted(_ word: String) -> String {
            word.allSatisfy({ $0.isLetter || $0.isNumber || "-_./=:,@%+".contains($0) }) && !word.isEmpty ? word : "'" + word.replacingOccurrences(of: "'", with: "'\\''") + "'"
        }
    }

    struct Logs: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "logs", abstract: "A job's output, in order; -f follows it until the job ends.")

        @OptionGroup var connection: ClientOptions
        @Flag(name: [.short, .long], help: "Follow the output until the job ends.") var follow = false
        @Argument(help: "The job's id.") var job: String

        func run() async throws {
            let client = try await connection.client()
            let id = try parseJobID(job)
            let job = try await client.job(id)
            let follower = JobFollower(client: client, job: id)
            if follow {
                let final = try await follower.follow(from: job)
                throw ExitCode(JobFollower.exitCode(of: final))
            }
            try await follower.streamLogs(of: job, follow: false)
        }
    }

    struct Cancel: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "cancel", abstract: "Cancel jobs; running ones get SIGTERM, then SIGKILL after a grace period.")

        @OptionGroup var connection: ClientOptions
        @Argument(help: "The jobs' ids.") var jobs: [String]

        func validate() throws {
            guard !jobs.isEmpty else { throw ValidationError("name at least one job to cancel") }
        }

        func run() async throws {
            let client = try await connection.client()
            for text in jobs {
                let job = try await client.cancel(try parseJobID(text))
                Output.write("job \(job.id): \(job.state)\n")
            }
        }
    }

    struct Why: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "why", abstract: "Why a job waits, what is ahead of it, and when it should start.")

        @OptionGroup var connection: ClientOptions
        @OptionGroup var format: OutputOptions
        @Argument(help: "The job's id.") var job: String

        func run() async throws {
            let job = try await connection.client().job(try parseJobID(self.job))
            if format.json { return try Output.json(job.queue.map { [$0] } ?? []) }
            guard job.state == "pending", let queue = job.queue else {
                Output.write("job \(job.id) is not waiting: " + (job.state == "running" ? "it is running (\(List.info(job)))" : JobFollower.endLine(job).replacingOccurrences(of: "job \(job.id) ", with: "it ")) + "\n")
                return
            }
            var text = "job \(job.id) is #\(queue.position) in the queue"
            if let start = WireTime.until(queue.estimatedStart) {
                text += "; estimated start \(start) (\(queue.estimatedStart!))"
                if queue.estimatedStartBasis == "learned" { text += ",\n  learned from the run times of finished jobs like it and like those it waits for (a --max-runtime makes it firmer)" }
            }
            text += "\n"
            if let reason = queue.reason {
                text += "  \(reason.kind == "never" ? "can never start" : "waiting for"): \(ReasonText.plain(reason.message)) [\(reason.code)]\n"
                if let ahead = reason.jobsAhead { text += "  jobs ahead of it: \(ahead)\n" }
                if let fit = reason.largestFreeFit { text += "  largest free fit now: \(fit.freeGPUs) × \(fit.gpuModel) on node \(fit.node)\n" }
                if reason.kind == "never" { text += "  change the request: fastgpu jobs cancel \(job.id), then run again with other resources\n" }
            }
            Output.write(text)
        }
    }
}

struct QueueCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "queue", abstract: "Every pending job in the order it will start, with its reason and estimated start.")

    @OptionGroup var connection: ClientOptions
    @OptionGroup var format: OutputOptions
    @Option(help: "Only this project's jobs.") var project: String?

    func run() async throws {
        let queue = try await connection.client().queue(project: project)
        if format.json { return try Output.json(queue) }
        if queue.items.isEmpty { return Output.write("the queue is empty\n") }
        Output.write(Output.table(["#", "JOB", "NAME", "PROJECT", "SUBMITTER", "START", "WAITING FOR"], queue.items.map { item in
            [String(item.position), String(item.job), item.name, item.project, item.submitter,
             WireTime.until(item.estimatedStart).map { $0 + (item.estimatedStartBasis == "learned" ? " (learned)" : "") } ?? "-",
             item.reason.map { ReasonText.plain($0.message) } ?? ""]
        }))
        if queue.items.contains(where: { $0.estimatedStartBasis == "learned" }) {
            Output.write("(learned): estimated from the run times of finished jobs like them, where no run time or --max-runtime was given\n")
        }
    }
}
