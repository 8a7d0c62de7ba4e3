public import FastGPUModel
public import FastGPUScheduler
import FastGPUWorkloads

/// The packing experiment in the method of the FGD paper (Weng et al., ATC'23): pods arrive one
/// at a time and never leave; each is placed by the scheduler or fails (and is dropped). As the
/// arrived GPU demand grows past 100 % of the cluster's GPUs, the GPU allocation ratio shows how
/// much capacity the placement policy strands.
///
/// Pods are drawn with replacement from the trace with a seeded generator until the arrived
/// demand reaches the highest load asked for (the paper's "tuned" workloads are sampled the same
/// way). CPU-only pods arrive too: they take CPU and memory that GPU pods need.
public struct PackingExperiment: Sendable {
    public var pods: [TraceJob]
    public var nodes: [Node]
    public var loadsPercent: [Int]
    public var seed: UInt64

    public init(pods: [TraceJob], nodes: [Node], loadsPercent: [Int] = [100, 110, 120, 130], seed: UInt64 = 1) {
        self.pods = pods
        self.nodes = nodes
        self.loadsPercent = loadsPercent.sorted()
        self.seed = seed
    }

    public struct Point: Codable, Sendable {
        public var loadPercent: Int
        /// Allocated milli-GPUs ÷ capacity when the arrived demand first reached the load.
        public var allocationRatio: Double
        /// min(1, arrived demand ÷ capacity): no placement can allocate more than arrived.
        public var upperBound: Double
        public var placedPods: Int
        public var failedPods: Int
    }

    public struct Outcome: Codable, Sendable {
        public var policy: String
        public var points: [Point]
    }

    /// The named placement policies of the experiment: scorer sets over the same checks.
    public static let policies = ["random", "best-fit", "fgd", "fastgpu"]

    public static func configuration(_ name: String, seed: UInt64, mix: WorkloadMix, scoringLimit: Int) -> SchedulerConfiguration? {
        let scorers: [WeightedScorer]
        switch name {
        case "random": scorers = [WeightedScorer(RandomScorer(seed: seed), weight: 1)]
        case "best-fit": scorers = [WeightedScorer(BestFitScorer(), weight: 1)]
        case "fgd": scorers = [WeightedScorer(FragmentationScorer(), weight: 1)]
        case "fastgpu": scorers = SchedulerConfiguration.standardScorers
        default: return nil
        }
        return SchedulerConfiguration(policy: FIFOPolicy(), backfill: .greedy, preemption: false, scorers: scorers, seed: seed,
                                      scoringLimit: scoringLimit, workloadMix: mix)
    }

    /// The pod sequence: drawn with replacement until the arrived GPU demand reaches the top load.
    public func arrivals() -> [TraceJob] {
        let capacity = nodes.reduce(0) { $0 + $1.gpus.count * 1000 }
        let target = capacity * (loadsPercent.last ?? 100) / 100
        var rng = SeededGenerator(seed: seed)
        var sequence: [TraceJob] = []
        var demand = 0
        while demand < target && !pods.isEmpty {
            var pod = pods[Int(rng.next() % UInt64(pods.count))]
            pod.id = sequence.count + 1
            pod.submitMilliseconds = Int64(sequence.count)
            sequence.append(pod)
            demand += pod.milliGPUs
        }
        return sequence
    }

    public func run(policy name: String, scoringLimit: Int = 64, gpusPerNode: Int = 8) -> Outcome? {
        let sequence = arrivals()
        let mixJobs = pods.enumerated().map { i, pod in
            Job(id: JobID(UInt64(i + 1)), project: ProjectID(1), taskGroups: [pod.taskGroup(gpusPerNode: gpusPerNode)], submitTime: .zero)
        }
        guard let configuration = Self.configuration(name, seed: seed, mix: WorkloadMix.of(mixJobs, limit: 64), scoringLimit: scoringLimit) else { return nil }
        let scheduler = Scheduler(configuration: configuration)
        var state = ClusterState()
        for node in nodes {
            // Node lists are validated by their reader.
            try! state.apply(.registerNode(node))  // swiftlint:disable:this force_try
        }
        let capacity = nodes.reduce(0) { $0 + $1.gpus.count * 1000 }
        var points: [Point] = []
        var arrived = 0
        var allocated = 0
        var placed = 0
        var failed = 0
        var nextLoad = 0
        for pod in sequence {
            let job = Job(id: JobID(UInt64(pod.id)), project: ProjectID(1), taskGroups: [pod.taskGroup(gpusPerNode: gpusPerNode)],
                          submitTime: Timestamp(millisecondsSinceEpoch: pod.submitMilliseconds))
            let now = Timestamp(millisecondsSinceEpoch: pod.submitMilliseconds)
            guard (try? state.apply(.submit(job))) != nil else { failed += 1; continue }
            let plan = scheduler.process(state, now: now)
            let verified = PlanVerifier().verify(plan, against: state)
            if verified.placements.isEmpty {
                failed += 1
                _ = try? state.apply(.cancel(job.id, at: now))
            } else {
                // Verified against this very state.
                try! state.apply(.commit(verified, at: now))  // swiftlint:disable:this force_try
                placed += 1
                allocated += pod.milliGPUs
            }
            arrived += pod.milliGPUs
            while nextLoad < loadsPercent.count, arrived * 100 >= capacity * loadsPercent[nextLoad] {
                points.append(Point(loadPercent: loadsPercent[nextLoad], allocationRatio: Double(allocated) / Double(capacity),
                                    upperBound: min(1, Double(arrived) / Double(capacity)), placedPods: placed, failedPods: failed))
                nextLoad += 1
            }
        }
        return Outcome(policy: name, points: points)
    }
}

