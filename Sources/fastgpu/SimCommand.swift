import ArgumentParser
import FastGPUModel
import FastGPUScheduler
import FastGPUSimulator
import Foundation

/// `fastgpu sim`: replays real GPU-cluster traces through the very same scheduler.
struct SimCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sim",
        abstract: "Replay GPU-cluster traces through the scheduler.",
        subcommands: [SimRunCommand.self, SimCompareCommand.self, SimPackCommand.self],
        defaultSubcommand: SimRunCommand.self
    )
}

/// Options shared by `sim run` and `sim compare`.
struct TraceOptions: ParsableArguments {
    @Option(help: "Trace file.") var trace: String
    @Option(help: "Trace format: philly, helios, alibaba, csv (submit_s,gpus,duration_s[,gpu_milli,project,priority]), slurm. Guessed from the file name when left out.")
    var format: String?
    @Option(help: "Nodes of the simulated cluster.") var nodes: Int?
    @Option(name: .customLong("gpus-per-node"), help: "GPUs per node.") var gpusPerNode = 8
    @Option(name: .customLong("gpu-model"), help: "GPU model of every node.") var gpuModel = "V100-32GB"
    @Option(name: .customLong("node-list"), help: "A node list (Alibaba's sn,cpu_milli,memory_mib,gpu,model) instead of --nodes.") var nodeList: String?
    @Option(help: "One pool of nodes per project instead of --nodes, jobs confined to their project's pool: vcvGl=20,vcvlY=2.") var pools: String?
    @Option(name: .customLong("project-map"), help: "Rename the trace's projects (Philly's VCs): 7f04ca=vision,6214e9=speech,*=research ('*': every other).")
    var projectMap: String?
    @Option(help: "Quotas on the shared cluster: project=GPUs guaranteed[:GPUs more it may borrow][@cohort], e.g. vision=128,speech=96@lab,research=0. Work beyond a guarantee is borrowed and yields to guaranteed work; a named cohort lends its idle guarantees only to its own projects.")
    var quotas: String?
    @Option(help: "Projects whose jobs all run on the spot tier (comma-separated).") var spot: String?
    @Option(name: .customLong("from-s"), help: "Keep jobs submitted at or after this many seconds into the trace.") var fromSeconds: Int64?
    @Option(name: .customLong("to-s"), help: "Keep jobs submitted before this many seconds into the trace.") var toSeconds: Int64?
    @Option(help: "Schedule every this many seconds instead of on every event.") var interval: Int64?
    @Option(name: .customLong("estimate-every"), help: ArgumentHelp("Measure the server's start estimates: at most every this many simulated seconds, estimate every waiting job's start as `fastgpu server` does (learned run times), and compare each job's first estimate with when it started.", valueName: "seconds"))
    var estimateEvery: Int64?
    @Option(name: .customLong("restart-penalty"), help: "Seconds added to a preempted job's run time.") var restartPenalty: Int64 = 30
    @Option(help: "Seed for the scheduler's tie-breaks.") var seed: UInt64 = 0
    @Option(help: "Write every figure as JSON to this file.") var json: String?
    @Option(help: "Write a chart of the JCT distribution (SVG) to this file.") var svg: String?
    @Option(help: "Write every job's outcome under every policy as CSV to this file (policy,job,project,gpus,submit_s,start_s,finish_s,duration_s,preemptions; with --estimate-every also estimated_at_s,estimated_start_s).")
    var outcomes: String?

    func validate() throws {
        if let nodes, nodes < 1 { throw ValidationError("--nodes must be at least 1") }
        if [nodes != nil, nodeList != nil, pools != nil].filter({ $0 }).count != 1 {
            throw ValidationError("give the cluster one way: --nodes N (with --gpus-per-node, --gpu-model), --node-list FILE or --pools P=N,…")
        }
        if let pools, parsedPools(pools) == nil { throw ValidationError("--pools takes project=nodes pairs: vcvGl=20,vcvlY=2") }
        if let quotas, parsedQuotas(quotas) == nil { throw ValidationError("--quotas takes project=GPUs[:borrowable GPUs][@cohort] pairs: vision=128,speech=96:32@lab") }
        if quotas != nil && pools != nil { throw ValidationError("--quotas share one cluster (--nodes); --pools partitions it: give one") }
        if let projectMap, parsedMap(projectMap) == nil { throw ValidationError("--project-map takes from=to pairs: 7f04ca=vision,*=research") }
        guard gpusPerNode >= 1, gpusPerNode <= 64 else { throw ValidationError("--gpus-per-node must be between 1 and 64") }
        if let interval, interval < 1 { throw ValidationError("--interval must be at least 1 second") }
        guard restartPenalty >= 0 else { throw ValidationError("--restart-penalty cannot be negative") }
        if let format, TraceFormat(rawValue: format) == nil {
            throw ValidationError("unknown --format '\(format)'; use \(TraceFormat.allCases.map(\.rawValue).joined(separator: ", "))")
        }
    }

    func parsedQuotas(_ text: String) -> [String: Quota]? {
        var quotas: [String: Quota] = [:]
        for pair in text.split(separator: ",") {
            let parts = pair.split(separator: "=")
            guard parts.count == 2, !parts[0].isEmpty else { return nil }
            // p=G[:B][@cohort]
            let cohortParts = parts[1].split(separator: "@")
            guard (1...2).contains(cohortParts.count) else { return nil }
            let cohort = cohortParts.count == 2 ? String(cohortParts[1]) : nil
            if let cohort, !Quota.isValidCohortName(cohort) { return nil }
            let amounts = cohortParts[0].split(separator: ":")
            guard (1...2).contains(amounts.count), let guaranteed = Int(amounts[0]), (0...100_000).contains(guaranteed) else { return nil }
            var borrow: Int?
            if amounts.count == 2 {
                guard let more = Int(amounts[1]), (0...100_000).contains(more) else { return nil }
                borrow = more * 1000
            }
            quotas[String(parts[0])] = Quota(guaranteedMilliGPUs: guaranteed * 1000, borrowingLimitMilliGPUs: borrow, cohort: cohort)
        }
        return quotas.isEmpty ? nil : quotas
    }

    func parsedMap(_ text: String) -> [String: String]? {
        var map: [String: String] = [:]
        for pair in text.split(separator: ",") {
            let parts = pair.split(separator: "=")
            guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else { return nil }
            map[String(parts[0])] = String(parts[1])
        }
        return map.isEmpty ? nil : map
    }

    func parsedPools(_ text: String) -> [(project: String, nodes: Int)]? {
        var pools: [(project: String, nodes: Int)] = []
        for pair in text.split(separator: ",") {
            let parts = pair.split(separator: "=")
            guard parts.count == 2, !parts[0].isEmpty, let count = Int(parts[1]), count >= 1 else { return nil }
            pools.append((String(parts[0]), count))
        }
        return pools.isEmpty ? nil : pools
    }

    func traceFormat() throws -> TraceFormat {
        if let format { return TraceFormat(rawValue: format)! }
        let name = trace.lowercased()
        if name.contains("philly") { return .philly }
        if name.contains("helios") { return .helios }
        if name.contains("openb") || name.contains("alibaba") { return .alibaba }
        if name.contains("mixed-") || name.contains("slurm") { return .slurm }
        if name.hasSuffix(".csv") { return .csv }
        throw ValidationError("cannot tell the format of \(trace); give --format")
    }

    func load() throws -> (Trace, SimulationOptions) {
        var whole = try TraceReader.read(trace, format: try traceFormat())
        if let map = projectMap.flatMap(parsedMap) {
            for index in whole.jobs.indices { whole.jobs[index].project = map[whole.jobs[index].project] ?? map["*"] ?? whole.jobs[index].project }
        }
        let loaded = whole.window(fromSeconds: fromSeconds, toSeconds: toSeconds)
        guard !loaded.jobs.isEmpty else { throw ValidationError("no jobs in the window --from-s/--to-s") }
        var options: SimulationOptions
        if let nodeList {
            options = SimulationOptions(nodes: try TraceReader.alibabaNodes(nodeList), gpusPerNode: gpusPerNode)
        } else if let pools, let parsed = parsedPools(pools) {
            options = .pools(parsed, gpusPerNode: gpusPerNode, gpuModel: gpuModel)
        } else {
            options = .uniform(nodes: nodes!, gpusPerNode: gpusPerNode, gpuModel: gpuModel)
        }
        options.restartPenaltyMilliseconds = restartPenalty * 1000
        options.quotas = quotas.flatMap(parsedQuotas) ?? [:]
        options.spotProjects = Set((spot ?? "").split(separator: ",").map(String.init))
        options.intervalMilliseconds = interval.map { $0 * 1000 }
        if let estimateEvery {
            guard (1...86_400).contains(estimateEvery) else { throw ValidationError("--estimate-every must be 1 to 86400 seconds") }
            options.estimateEveryMilliseconds = estimateEvery * 1000
        }
        if let fromSeconds { options.history = whole.finished(beforeSeconds: fromSeconds) }
        return (loaded, options)
    }
}

struct SimRunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "run", abstract: "Replay a trace with one policy.")

    @OptionGroup var options: TraceOptions
    @Option(help: "Policy: \(SchedulingPolicy.names.joined(separator: ", ")); fastgpu:grace=N:claim=N:tail=flat|asLongAgain:window=N:weigh=true:measure=time|gpu to vary the default.") var policy = "fastgpu"

    func validate() throws {
        guard SchedulingPolicy.named(policy) != nil else { throw ValidationError("unknown --policy '\(policy)'; use \(SchedulingPolicy.names.joined(separator: ", "))") }
    }

    func run() throws {
        try SimCompareCommand.compare(options, policies: [policy])
    }
}

struct SimCompareCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "compare", abstract: "Replay a trace with several policies side by side; ratios are against the first.")

    @OptionGroup var options: TraceOptions
    @Option(help: "Comma-separated policies; the first is the baseline (fastgpu:grace=N:claim=N:tail=flat|asLongAgain:window=N:weigh=true:measure=gpu varies the default).") var policies = "fifo,sjf-oracle,srtf-oracle,las,fastgpu"

    func validate() throws {
        for name in policies.split(separator: ",") where SchedulingPolicy.named(String(name)) == nil {
            throw ValidationError("unknown policy '\(name)'; use \(SchedulingPolicy.names.joined(separator: ", "))")
        }
    }

    func run() throws {
        try Self.compare(options, policies: policies.split(separator: ",").map(String.init))
    }

    /// Per policy and project: jobs, mean JCT, GPU-hours used (preempted runs included) and what they cost.
    static func projectTable(_ results: [(String, SimulationResult)], projects: [String], quotas: [String: Quota]) -> String {
        var rows = [["policy", "project", "quota", "jobs", "mean JCT s", "GPU-hours", "cost"]]
        for (policy, result) in results {
            for project in projects {
                let mine = result.outcomes.filter { $0.project == project }
                let jcts = mine.compactMap(\.completionMilliseconds)
                let mean = jcts.isEmpty ? 0 : Double(jcts.reduce(0, +)) / Double(jcts.count) / 1000
                let quota = quotas[project].map { q in "\(q.guaranteedMilliGPUs / 1000)" + (q.borrowingLimitMilliGPUs.map { "+\($0 / 1000)" } ?? "+idle") + (q.cohort.map { "@\($0)" } ?? "") } ?? "-"
                rows.append([policy, project, quota, "\(mine.count)", String(format: "%.0f", mean),
                             String(format: "%.1f", Double(result.gpuMillisecondsByProject[project] ?? 0) / 3_600_000_000),
                             Money.text(result.costMicrosByProject[project] ?? 0)])
            }
        }
        var widths = rows[0].map(\.count)
        for row in rows { for (i, cell) in row.enumerated() { widths[i] = max(widths[i], cell.count) } }
        return rows.map { row in row.enumerated().map { $0.element.padding(toLength: widths[$0.offset] + 2, withPad: " ", startingAt: 0) }.joined() }.joined(separator: "\n")
    }

    static func compare(_ options: TraceOptions, policies: [String]) throws {
        let (trace, simulation) = try options.load()
        let gpus = simulation.nodes.reduce(0) { $0 + $1.gpus.count }
        print("trace     \(trace.name): \(trace.jobs.count) jobs over \(trace.jobs.last!.submitMilliseconds / 1000) s")
        if !simulation.history.isEmpty { print("history   \(simulation.history.count) jobs that finished before the window teach the predictors") }
        print("cluster   \(simulation.nodes.count) nodes, \(gpus) GPUs; restart penalty \(simulation.restartPenaltyMilliseconds / 1000) s; "
            + (simulation.intervalMilliseconds.map { "rounds every \($0 / 1000) s" } ?? "event-driven"))
        var results: [(SimulationMetrics, Double)] = []
        var byProject: [(String, SimulationResult)] = []
        var outcomeRows = ["policy,job,project,gpus,submit_s,start_s,finish_s,duration_s,preemptions"
            + (simulation.estimateEveryMilliseconds == nil ? "" : ",estimated_at_s,estimated_start_s")]
        for name in policies {
            let policy = SchedulingPolicy.named(name, seed: options.seed)!
            let clock = ContinuousClock()
            let start = clock.now
            let result = Simulation(trace: trace, policy: policy, options: simulation).run()
            byProject.append((name, result))
            let took = clock.now - start
            results.append((SimulationMetrics(result), Double(took.components.seconds) + Double(took.components.attoseconds) / 1e18))
            if options.outcomes != nil {
                func seconds(_ ms: Int64?) -> String { ms.map { String(Double($0) / 1000) } ?? "" }
                for o in result.outcomes {
                    let estimate = result.firstEstimates.isEmpty ? nil : result.firstEstimates[o.id - 1]
                    outcomeRows.append("\(name),\(o.id),\(o.project),\(o.gpus),\(seconds(o.submitMilliseconds)),\(seconds(o.firstStartMilliseconds)),"
                        + "\(seconds(o.finishMilliseconds)),\(seconds(o.durationMilliseconds)),\(o.preemptions)"
                        + (simulation.estimateEveryMilliseconds == nil ? "" : ",\(seconds(estimate?.madeAt)),\(seconds(estimate?.start))"))
                }
            }
        }
        print(SimulationReport.table(results.map(\.0), seconds: results.map(\.1)))
        for metrics in results.map(\.0) {
            guard let accuracy = metrics.startEstimates else { continue }
            func whole(_ value: Double) -> Int { Int(value.rounded()) }
            print("start estimates, \(metrics.policy): \(accuracy.jobs) waiting jobs estimated (\(accuracy.withoutEstimate) seen without one); "
                  + "|estimated − actual start| median \(whole(accuracy.medianAbsoluteError)) s, p90 \(whole(accuracy.p90AbsoluteError)) s; "
                  + "they still waited a median \(whole(accuracy.medianWaitAfterEstimate)) s; \(whole(accuracy.withinAQuarter * 100)) % within a quarter of their wait (or 5 min)")
        }
        let projects = Set(byProject.flatMap { $0.1.outcomes.map(\.project) })
        if projects.count <= 12 {
            print("\nper project (cost at the price book's list prices\(simulation.spotProjects.isEmpty ? "" : "; spot: " + simulation.spotProjects.sorted().joined(separator: ","))):")
            print(Self.projectTable(byProject, projects: projects.sorted(), quotas: simulation.quotas))
        }
        if let json = options.json {
            try SimulationReport.json(results.map(\.0)).write(toFile: json, atomically: true, encoding: .utf8)
            print("wrote \(json)")
        }
        if let path = options.outcomes {
            try (outcomeRows.joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
            print("wrote \(path)")
        }
        if let svg = options.svg {
            try SimulationReport.jctChart(results.map(\.0), title: "JCT distribution, \(trace.name), \(gpus) GPUs").write(toFile: svg, atomically: true, encoding: .utf8)
            print("wrote \(svg)")
        }
    }
}

struct SimPackCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pack",
        abstract: "The FGD packing experiment: pods arrive and never leave; GPU allocation ratio as demand passes 100 % of capacity."
    )

    @Option(help: "Pod list (Alibaba openb_pod_list_*.csv).") var pods: String
    @Option(name: .customLong("node-list"), help: "Node list (Alibaba openb_node_list_*.csv).") var nodeList: String
    @Option(help: "Comma-separated arrived-demand loads in percent of GPU capacity.") var loads = "100,110,120,130"
    @Option(help: "Comma-separated placement policies: \(PackingExperiment.policies.joined(separator: ", ")).") var policies = "random,best-fit,fgd,fastgpu"
    @Option(name: .customLong("scoring-limit"), help: "Feasible nodes scored per pod (FGD scores every node).") var scoringLimit = 100_000
    @Option(help: "Seed for sampling pods and tie-breaks.") var seed: UInt64 = 1
    @Option(help: "Write the figures as JSON to this file.") var json: String?
    @Option(help: "Write a chart of allocation ratio against load (SVG) to this file.") var svg: String?

    func validate() throws {
        guard let values = Optional(loads.split(separator: ",").compactMap { Int($0) }), !values.isEmpty, values.allSatisfy({ $0 > 0 && $0 <= 1000 }),
              values.count == loads.split(separator: ",").count
        else { throw ValidationError("--loads takes percentages like 100,110,120,130") }
        for name in policies.split(separator: ",") where !PackingExperiment.policies.contains(String(name)) {
            throw ValidationError("unknown policy '\(name)'; use \(PackingExperiment.policies.joined(separator: ", "))")
        }
        guard scoringLimit >= 1 else { throw ValidationError("--scoring-limit must be at least 1") }
    }

    func run() throws {
        let trace = try TraceReader.read(pods, format: .alibaba)
        let nodes = try TraceReader.alibabaNodes(nodeList)
        let experiment = PackingExperiment(pods: trace.jobs, nodes: nodes, loadsPercent: loads.split(separator: ",").compactMap { Int($0) }, seed: seed)
        let gpus = nodes.reduce(0) { $0 + $1.gpus.count }
        print("pods      \(trace.jobs.count) in \(trace.name), drawn with replacement (seed \(seed))")
        print("cluster   \(nodes.count) nodes, \(gpus) GPUs; \(scoringLimit) feasible nodes scored per pod")
        var outcomes: [PackingExperiment.Outcome] = []
        for name in policies.split(separator: ",").map(String.init) {
            let clock = ContinuousClock()
            let start = clock.now
            guard let outcome = experiment.run(policy: name, scoringLimit: scoringLimit) else { continue }
            outcomes.append(outcome)
            let took = clock.now - start
            print("  \(name): \(took.components.seconds) s")
        }
        print(SimulationReport.packingTable(outcomes))
        print("\nwhere the unallocated capacity is at \(experiment.loadsPercent.last ?? 100)% load (percent of all GPUs):")
        print(SimulationReport.strandedTable(outcomes, gpus: gpus))
        if let json {
            try SimulationReport.encode(outcomes).write(toFile: json, atomically: true, encoding: .utf8)
            print("wrote \(json)")
        }
        if let svg {
            try SimulationReport.packingChart(outcomes, title: "GPU allocation ratio, \(trace.name), \(gpus) GPUs").write(toFile: svg, atomically: true, encoding: .utf8)
            print("wrote \(svg)")
        }
    }
}
