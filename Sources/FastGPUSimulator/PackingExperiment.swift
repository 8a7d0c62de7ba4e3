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

    /// Where the capacity that was not allocated sits at the end of the run (the top load).
    public struct Stranded: Codable, Sendable, Equatable {
        /// Free milli-GPUs on GPUs that hold shares, by how much each has free (50-milli bins:
        /// key 150 holds GPUs with 150–199 free), as `[bin: GPUs]`.
        public var partlyFreeGPUs: [Int: Int]
        public var partlyFreeMilli: Int
        /// Whole free GPUs on nodes whose CPU or memory is used up (less than a core or 1 GiB left
        /// for each free GPU): no GPU pod of the trace could use them.
        public var wholeGPUsWithoutCPUOrMemory: Int
        /// Whole free GPUs elsewhere (pods that failed needed more per node, or another model).
        public var wholeGPUsOther: Int
        /// Pods that failed, by kind: `cpu-only`, `share`, `whole-K`.
        public var failedPods: [String: Int]
        /// Placed pods that ask for a share, by size in milli-GPUs.
        public var placedShares: [Int: Int]
    }

    public struct Outcome: Codable, Sendable {
        public var policy: String
        public var points: [Point]
        public var stranded: Stranded?
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
        return Outcome(policy: name, points: points, stranded: Self.stranded(in: state))
    }

    static func stranded(in state: ClusterState) -> Stranded {
        var result = Stranded(partlyFreeGPUs: [:], partlyFreeMilli: 0, wholeGPUsWithoutCPUOrMemory: 0, wholeGPUsOther: 0, failedPods: [:], placedShares: [:])
        for node in state.nodes {
            let wholeFree = node.gpus.filter { $0.isHealthy && $0.freeMilli == 1000 }.count
            let starved = wholeFree > 0 && (node.freeCPUMillis < 1000 * wholeFree || node.freeMemoryMiB < 1024 * wholeFree)
            for gpu in node.gpus where gpu.isHealthy && gpu.freeMilli > 0 {
                if gpu.freeMilli == 1000 {
                    if starved { result.wholeGPUsWithoutCPUOrMemory += 1 } else { result.wholeGPUsOther += 1 }
                } else {
                    result.partlyFreeMilli += gpu.freeMilli
                    result.partlyFreeGPUs[gpu.freeMilli / 50 * 50, default: 0] += 1
                }
            }
        }
        for job in state.jobs.values {
            let gpu = job.taskGroups[0].resources.gpu
            if job.state == .cancelled {
                let kind = switch gpu {
                case .none: "cpu-only"
                case .whole(let k): "whole-\(k)"
                case .share: "share"
                case .mig: "mig"
                }
                result.failedPods[kind, default: 0] += 1
            } else if case .share(let milli, _) = gpu {
                result.placedShares[milli, default: 0] += 1
            }
        }
        return result
    }
}

