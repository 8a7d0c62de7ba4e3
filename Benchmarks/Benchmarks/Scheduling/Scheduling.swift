import Benchmark
import FastGPUModel
import FastGPUScheduler
import FastGPUWorkloads

/// One scheduling pass over 100,000 pending jobs whose GPU counts follow the Philly trace, on an
/// empty cluster of N nodes × 8 GPUs, one thread, release build. Every decision (one job: placed
/// or given its pending reason) is timed; the pass places jobs until the cluster is full and
/// explains every job left over.
///
/// Figures: placements/s (tasks placed ÷ pass time), decisions/s, p50/p99 time per decision and
/// per placing decision, and the process's peak resident memory.
let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .peakMemoryResident],
        timeUnits: .milliseconds,
        warmupIterations: 0,
        maxDuration: .seconds(120),
        maxIterations: 3
    )

    for policy in [SchedulingPolicy.defaultName, "fair-share"] {
        for nodes in [1_000, 10_000] {
            Benchmark(
                "Scheduling pass, \(policy), \(nodes) nodes × 8 GPUs, 100000 Philly jobs",
                configuration: .init(metrics: [.wallClock, .peakMemoryResident] + SchedulingFigures.metrics),
                closure: { benchmark, state in
                    let figures = SchedulingFigures.measure(state, configuration: SchedulingFigures.configuration(policy))
                    figures.report(to: benchmark)
                    print(figures.summary(nodes: nodes, policy: policy))
                },
                setup: { SchedulingFigures.makeState(nodes: nodes, jobs: 100_000) }
            )
        }
    }
}

struct SchedulingFigures {
    static let placementsPerSecond = BenchmarkMetric.custom("placements/s", polarity: .prefersLarger, useScalingFactor: false)
    static let decisionsPerSecond = BenchmarkMetric.custom("decisions/s", polarity: .prefersLarger, useScalingFactor: false)
    static let decisionP50 = BenchmarkMetric.custom("decision p50 (ns)", useScalingFactor: false)
    static let decisionP99 = BenchmarkMetric.custom("decision p99 (ns)", useScalingFactor: false)
    static let placingP99 = BenchmarkMetric.custom("placing decision p99 (ns)", useScalingFactor: false)
    static let placingRate = BenchmarkMetric.custom("placements/s in placing decisions", polarity: .prefersLarger, useScalingFactor: false)
    static let setupTime = BenchmarkMetric.custom("pass setup (µs)", useScalingFactor: false)
    static let metrics = [placementsPerSecond, placingRate, decisionsPerSecond, decisionP50, decisionP99, placingP99, setupTime]

    var placements = 0
    var decisions = 0
    var passNanoseconds: Int64 = 0
    /// Building the pass: the queue in the policy's order, the capacity index, node shapes, workload mix.
    var setupNanoseconds: Int64 = 0
    var decisionNanoseconds: [Int64] = []
    var placingNanoseconds: [Int64] = []
    var gpusPlaced = 0

    static func makeState(nodes: Int, jobs: Int) -> ClusterState {
        var rng = SeededGenerator(seed: 42)
        var state = ClusterState()
        do {
            for node in Workloads.uniformCluster(nodes: nodes) { try state.apply(.registerNode(node)) }
            for job in Workloads.philly(count: jobs, using: &rng) { try state.apply(.submit(job)) }
        } catch {
            // The generated cluster and queue are valid by construction.
            preconditionFailure("invalid benchmark input: \(error)")
        }
        return state
    }

    /// The policy as the server runs it (`SchedulingPolicy`, restarts of 30 s), with what it would
    /// have learned from 5,000 finished Philly-shaped jobs (the Gittins tables of `fastgpu`).
    static func configuration(_ name: String) -> SchedulerConfiguration {
        let policy = SchedulingPolicy.named(name)!
        let configuration = policy.schedulerConfiguration(restartCost: .seconds(30))
        var learned = policy.learner(restartCost: .seconds(30))
        var rng = SeededGenerator(seed: 7)
        for job in Workloads.philly(count: 5_000, using: &rng) {
            learned.learn(project: job.project, submitter: job.submitter, gpus: LearnedRuntimes.wholeGPUs(job), milliGPUs: job.milliGPUs,
                          milliseconds: job.runtimeEstimate?.wholeMilliseconds ?? 3_600_000)
        }
        learned.buildTables()
        return learned.configuring(configuration)
    }

    static func measure(_ state: ClusterState, configuration: SchedulerConfiguration) -> SchedulingFigures {
        var figures = SchedulingFigures()
        let clock = ContinuousClock()
        let passStart = clock.now
        var pass = SchedulingPass(state: state, configuration: configuration, now: .seconds(100_000))
        figures.setupNanoseconds = (clock.now - passStart).nanoseconds
        figures.decisionNanoseconds.reserveCapacity(pass.queue.count)
        while true {
            let start = clock.now
            guard let decision = pass.step() else { break }
            let took = (clock.now - start).nanoseconds
            figures.decisionNanoseconds.append(took)
            if case .placed(_, let tasks, _) = decision {
                figures.placements += tasks
                figures.placingNanoseconds.append(took)
            }
        }
        figures.passNanoseconds = (clock.now - passStart).nanoseconds
        figures.decisions = figures.decisionNanoseconds.count
        figures.gpusPlaced = pass.plan.placements.reduce(0) { $0 + $1.devices.count }
        blackHole(pass.plan)
        return figures
    }

    static func percentile(_ values: [Int64], _ p: Double) -> Int64 {
        guard !values.isEmpty else { return 0 }
        let sorted = values.sorted()
        return sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]
    }

    /// Tasks placed per second of the time spent in decisions that placed something.
    var placingRate: Int {
        let spent = placingNanoseconds.reduce(0, +)
        return spent > 0 ? Int(Int64(placements) * 1_000_000_000 / spent) : 0
    }

    func perSecond(_ count: Int) -> Int { passNanoseconds > 0 ? Int(Int64(count) * 1_000_000_000 / passNanoseconds) : 0 }

    func report(to benchmark: Benchmark) {
        benchmark.measurement(Self.placementsPerSecond, perSecond(placements))
        benchmark.measurement(Self.decisionsPerSecond, perSecond(decisions))
        benchmark.measurement(Self.decisionP50, Int(Self.percentile(decisionNanoseconds, 0.50)))
        benchmark.measurement(Self.decisionP99, Int(Self.percentile(decisionNanoseconds, 0.99)))
        benchmark.measurement(Self.placingP99, Int(Self.percentile(placingNanoseconds, 0.99)))
        benchmark.measurement(Self.placingRate, placingRate)
        benchmark.measurement(Self.setupTime, Int(setupNanoseconds / 1000))
    }

    func summary(nodes: Int, policy: String) -> String {
        """
        [\(policy), \(nodes) nodes × 8 GPUs] pass \(passNanoseconds / 1_000_000) ms (setup \(setupNanoseconds / 1_000_000) ms): \(placements) placements (\(gpusPlaced) of \(nodes * 8) GPUs), \
        \(decisions) decisions; \(perSecond(placements)) placements/s, \(perSecond(decisions)) decisions/s; \
        decision p50 \(Self.percentile(decisionNanoseconds, 0.5) / 1000) µs, p99 \(Self.percentile(decisionNanoseconds, 0.99) / 1000) µs; \
        placing decision p99 \(Self.percentile(placingNanoseconds, 0.99) / 1000) µs, \(placingRate) placements/s in placing decisions
        """
    }
}

extension Duration {
    var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}
