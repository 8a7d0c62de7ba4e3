public import FastGPUModel

/// Where a policy's run-time figures come from.
public enum EstimateSource: String, Sendable {
    /// None (FIFO, LAS): the user's estimate or limit, if any.
    case none
    /// The true duration: only for labelled oracle reference lines of the simulator.
    case oracle
    /// `HistoryPredictor`: the median run time of similar finished jobs, learned online.
    case history
    /// The distribution of run time of finished jobs per class, for `GittinsPolicy` (plus
    /// history estimates), learned online.
    case distribution
}

/// A named scheduling policy: a scheduler configuration, where its run-time figures come from,
/// and the knobs priced in restarts. The one registry of names for `fastgpu plan`, `fastgpu sim`
/// and `fastgpu server --policy`: what the simulator measures under a name is what the server runs
/// under it.
public struct SchedulingPolicy: Sendable {
    public var name: String
    /// The scheduler's configuration, preemption grace aside (`schedulerConfiguration(restartCost:)`).
    public var configuration: SchedulerConfiguration
    public var estimates: EstimateSource
    /// The preemption grace in restarts: work younger than this many restart costs is not
    /// displaced by work its policy merely ranks higher.
    public var graceInRestartPenalties: Int
    /// For a `.distribution` policy: the restarts a waiting job's claim must pay for
    /// (`GittinsPolicy.Table.claimIndices`); 0 claims the plain index.
    public var claimInRestartPenalties: Int
    /// For a `.distribution` policy: finished jobs kept per class (the most recent).
    public var window: Int = 64
    /// For a `.distribution` policy: what a job past every sample of its class has left.
    public var tail: GittinsPolicy.Table.Tail = .asLongAgain

    public init(name: String, configuration: SchedulerConfiguration, estimates: EstimateSource, graceInRestartPenalties: Int = 0,
                claimInRestartPenalties: Int = 0) {
        self.name = name
        self.configuration = configuration
        self.estimates = estimates
        self.graceInRestartPenalties = graceInRestartPenalties
        self.claimInRestartPenalties = claimInRestartPenalties
    }

    public var isOracle: Bool { estimates == .oracle }

    /// The policy the server runs and `fastgpu sim` measures unless told otherwise.
    public static let defaultName = "fastgpu"

    /// Every name, the simulator's oracle reference lines included.
    public static let names = ["fifo", "sjf-oracle", "srtf-oracle", "las", "fastgpu", "srtf-predicted", "fair-share"]

    /// The names a live cluster can run: an oracle needs true run times, which only a trace has.
    public static var liveNames: [String] { names.filter { named($0)?.isOracle == false } }

    /// The configuration with its grace priced at `restartCost` (what a preemption costs its
    /// victim: checkpoint reload, warm-up).
    public func schedulerConfiguration(restartCost: Duration) -> SchedulerConfiguration {
        var configuration = self.configuration
        configuration.preemptionGrace = restartCost * graceInRestartPenalties
        return configuration
    }

    /// What learns run times for this policy, with its claims priced at `restartCost`.
    public func learner(restartCost: Duration) -> LearnedRuntimes {
        let measure = (configuration.policy as? GittinsPolicy)?.measure ?? .time
        return LearnedRuntimes(window: window, restartSeconds: Double(restartCost.wholeMilliseconds * Int64(claimInRestartPenalties)) / 1000, tail: tail, measure: measure)
    }

    /// The policies by name. All place greedily (a job that fits starts, as the published trace
    /// simulators do), except `fair-share`, which uses EASY backfill. (EASY under `fastgpu` was
    /// tried: Philly 13,787 → 13,701 s, but Helios 7,556 → 8,980 s.)
    ///
    /// `fastgpu` takes parameters for experiments, `fastgpu:grace=4:measure=gpu`: the preemption
    /// grace in restart penalties (`grace`, default 8), the restart penalties a claim pays
    /// (`claim`, default 2; 0 claims the plain index), what a job past every sample has left
    /// (`tail=flat`, default, or `asLongAgain`), the samples kept per class (`window`, default 64),
    /// whether a claim must out-rate all its victims together (`weigh=true`; default false), and
    /// the service measure (`measure=time`, default, or `gpu` for GPU time). The name in reports is
    /// the whole string.
    public static func named(_ name: String, seed: UInt64 = 0) -> SchedulingPolicy? {
        let parts = name.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        if parts.count > 1 {
            guard parts[0] == "fastgpu", var policy = named("fastgpu", seed: seed) else { return nil }
            var measure = GittinsPolicy.Measure.time
            var weighs = false
            for parameter in parts.dropFirst() {
                let pair = parameter.split(separator: "=", maxSplits: 1).map(String.init)
                guard pair.count == 2 else { return nil }
                switch pair[0] {
                case "grace":
                    guard let value = Int(pair[1]), (0...1000).contains(value) else { return nil }
                    policy.graceInRestartPenalties = value
                case "claim":
                    guard let value = Int(pair[1]), (0...1000).contains(value) else { return nil }
                    policy.claimInRestartPenalties = value
                case "tail":
                    guard let value = GittinsPolicy.Table.Tail(rawValue: pair[1]) else { return nil }
                    policy.tail = value
                case "window":
                    guard let value = Int(pair[1]), (1...100_000).contains(value) else { return nil }
                    policy.window = value
                case "weigh":
                    guard let value = Bool(pair[1]) else { return nil }
                    weighs = value
                case "measure":
                    switch pair[1] {
                    case "time": measure = .time
                    case "gpu": measure = .gpuTime
                    default: return nil
                    }
                default:
                    return nil
                }
            }
            policy.name = name
            policy.configuration.policy = GittinsPolicy(tables: [:], measure: measure, weighsVictims: weighs)
            return policy
        }
        func config(_ policy: any QueuePolicy, backfill: BackfillMode = .greedy, preemption: Bool) -> SchedulerConfiguration {
            SchedulerConfiguration(policy: policy, backfill: backfill, preemption: preemption, seed: seed, preemptionSearchesPerPass: 64)
        }
        switch name {
        case "fifo": return SchedulingPolicy(name: name, configuration: config(FIFOPolicy(), preemption: false), estimates: .none)
        case "sjf-oracle": return SchedulingPolicy(name: name, configuration: config(ShortestJobFirstPolicy(), preemption: false), estimates: .oracle)
        case "srtf-oracle": return SchedulingPolicy(name: name, configuration: config(ShortestRemainingTimePolicy(), preemption: true), estimates: .oracle)
        case "las": return SchedulingPolicy(name: name, configuration: config(LeastAttainedServicePolicy(), preemption: true), estimates: .none)
        case "fastgpu":
            // Grace of 8 restart penalties (4 min at the default 30 s): on Helios and mixed-120 it
            // cut preemptions by 3× and 29→0 and improved mean JCT; on Philly it cost ~3 %.
            // A flat tail, and a claim that pays two restarts: chosen on the robustness figure
            // (every Philly window at 32, 40 and 48 nodes, Helios at 20–26 nodes and pooled;
            // `scripts/sim_robustness.py`): claims of 1, 2 and 3 restarts give geometric means of
            // 1.062, 1.060 and 1.063 × srtf-oracle and worst points of 1.55, 1.48 and 1.71 (all on
            // Helios at 20 nodes, where neighbouring settings move the mean by ±10 %), before the
            // tenfold fallback of `GittinsPolicy.lookUp` (with it: 1.062 and 1.55).
            var policy = SchedulingPolicy(name: name, configuration: config(GittinsPolicy(tables: [:]), preemption: true), estimates: .distribution,
                                          graceInRestartPenalties: 8, claimInRestartPenalties: 2)
            policy.tail = .flat
            return policy
        case "srtf-predicted":
            return SchedulingPolicy(name: name, configuration: config(ShortestRemainingTimePolicy(overdue: .asLongAgain, bandedPreemption: true), preemption: true), estimates: .history)
        case "fair-share": return SchedulingPolicy(name: name, configuration: config(FairSharePolicy(), backfill: .easy, preemption: true), estimates: .history)
        default: return nil
        }
    }
}

/// Run times learned from finished jobs, as the simulator and the control plane both learn them:
/// per class of job, the median (estimates: start times, SRTF, backfill) and the distribution (the
/// Gittins index's tables). A job teaches it once, when it has ended, how long it ran; so what it
/// says of a job never depends on that job's own run time or a later job's.
public struct LearnedRuntimes: Sendable {
    public private(set) var predictor = HistoryPredictor()
    public private(set) var distributions: ServiceDistributions
    /// What the Gittins tables measure.
    public let measure: GittinsPolicy.Measure
    /// Finished jobs learned from.
    public private(set) var finishedJobs = 0

    public init(window: Int = 64, restartSeconds: Double = 0, tail: GittinsPolicy.Table.Tail = .asLongAgain, measure: GittinsPolicy.Measure = .time) {
        distributions = ServiceDistributions(window: window)
        distributions.restartSeconds = restartSeconds
        distributions.tail = tail
        self.measure = measure
    }

    /// A job of `gpus` GPUs (`milliGPUs` in all) ended after running `milliseconds` (every attempt).
    public mutating func learn(project: ProjectID, submitter: String, gpus: Int, milliGPUs: Int, milliseconds: Int64) {
        predictor.learn(project: project, user: submitter, gpus: gpus, milliseconds: milliseconds)
        // Samples in the measure the policy ranks by (wall time scaled like a 1-GPU job's GPU time).
        let service = measure == .time ? 1000 * milliseconds : Int64(milliGPUs) * milliseconds
        distributions.learn(project: project, submitter: submitter, milliGPUs: milliGPUs, milliGPUMilliseconds: service)
        finishedJobs += 1
    }

    /// Teaches it a job of the state that has ended, by the run time of all its attempts.
    public mutating func learn(_ job: Job) {
        guard job.milliGPUs > 0 else { return }
        learn(project: job.project, submitter: job.submitter, gpus: Self.wholeGPUs(job), milliGPUs: job.milliGPUs,
              milliseconds: job.attainedMilliGPUMilliseconds / Int64(job.milliGPUs))
    }

    /// GPUs a job asks for, counting a fraction of one as one (the predictor's classes).
    public static func wholeGPUs(_ job: Job) -> Int { (job.milliGPUs + 999) / 1000 }

    /// The learned run time of a job like this one that has run `elapsed` milliseconds so far.
    public func estimateMilliseconds(project: ProjectID, submitter: String, gpus: Int, ranFor elapsed: Int64 = 0) -> Int64 {
        predictor.estimateMilliseconds(project: project, user: submitter, gpus: gpus, ranFor: elapsed)
    }

    /// Rebuilds the tables of the classes that learned something since the last call; `gittins`
    /// reads what the last call built. Call it where the learning happens (the control plane's
    /// actor), so that the copies handed to passes find them built.
    public mutating func buildTables() {
        _ = distributions.tables()
    }

    /// The configuration with its Gittins policy (if it has one) ranking by the tables as last
    /// built, and a prior that prices its claims alike; other policies learn nothing from them.
    public func configuring(_ configuration: SchedulerConfiguration) -> SchedulerConfiguration {
        guard var policy = configuration.policy as? GittinsPolicy else { return configuration }
        policy.tables = distributions.builtTables
        policy.prior = GittinsPolicy.Table(samples: [], restartSeconds: distributions.restartSeconds)
        var configured = configuration
        configured.policy = policy
        return configured
    }

    /// The state with a learned run time for every unfinished job that has neither an estimate nor
    /// a limit, for decisions and start estimates only (the control plane's own state never gets
    /// them): a waiting job gets its class's median, a running one the median of its class's runs
    /// longer than it has run so far (or as long again), and its allocations the end that follows.
    /// Returns the jobs it gave a run time. Before any job has finished it gives none: a run time
    /// made up from nothing would be a guess, not something learned. `overridingEstimates` replaces
    /// estimates too (limits stay): the simulator measures the server's estimates on jobs whose
    /// policy was given other ones.
    public func filling(_ state: ClusterState, now: Timestamp, overridingEstimates: Bool = false) -> (state: ClusterState, learned: Set<JobID>) {
        guard finishedJobs > 0 else { return (state, []) }
        var filled = state
        var learned: Set<JobID> = []
        var candidates = Set(state.waiting)
        for allocation in state.allocations.values { candidates.insert(allocation.task.job) }
        for id in candidates.sorted() {
            // A service's replicas run until the service scales down: no run time says when.
            guard let job = state.jobs[id], job.runtimeLimit == nil, overridingEstimates || job.runtimeEstimate == nil, job.milliGPUs > 0,
                  state.launches[id]?.replica == nil else { continue }
            let elapsed = ShortestRemainingTimePolicy.elapsedMilliseconds(of: job, in: state, now: now)
            let total = estimateMilliseconds(project: job.project, submitter: job.submitter, gpus: Self.wholeGPUs(job), ranFor: elapsed)
            let end = now + .milliseconds(max(0, total - elapsed))
            filled.assumeRuntime(.milliseconds(total), of: id, ending: end)
            learned.insert(id)
        }
        return (filled, learned)
    }
}
