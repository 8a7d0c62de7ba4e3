public import FastGPUModel

/// How jobs behind a blocked job may start.
public enum BackfillMode: String, Sendable, CaseIterable {
    /// Nothing passes a blocked job: strict queue order (Slurm without its backfill plugin).
    case strict
    /// EASY backfill (Lifka, 1995; Slurm's `sched/backfill`): the first blocked job gets a
    /// reservation (the earliest time and nodes where it fits as running work ends on schedule);
    /// later jobs start if they fit now and either avoid the reserved nodes or end before it starts.
    case easy
    /// Any job that fits starts; a large job may wait forever (Kubernetes' default scheduler).
    case greedy
}

/// The scheduler's knobs. Every field has a default that a user of the server never has to set.
public struct SchedulerConfiguration: Sendable {
    public var policy: any QueuePolicy
    public var backfill: BackfillMode
    /// Whether a waiting job may preempt work that its policy says yields to it.
    public var preemption: Bool
    /// Feasibility checks, cheapest first.
    public var checks: [any FeasibilityCheck]
    public var scorers: [WeightedScorer]
    /// Tie-breaks among equal scores come from this seed: same seed, same input, same plan.
    public var seed: UInt64
    /// How many feasible nodes are scored per task before the best is taken (Nomad's limit,
    /// Kubernetes' `percentageOfNodesToScore`): bounds the cost of a decision on large clusters.
    public var scoringLimit: Int
    /// The run time assumed for a job without an estimate or limit (backfill, fair share);
    /// nil means such a job may run forever as far as backfill knows.
    public var defaultRuntime: Duration?
    /// How many jobs per pass may search for victims; the search scans every node of a model.
    public var preemptionSearchesPerPass: Int

    public init(
        policy: any QueuePolicy = FairSharePolicy(),
        backfill: BackfillMode = .easy,
        preemption: Bool = true,
        checks: [any FeasibilityCheck] = NodeReadyCheck.standardChain,
        scorers: [WeightedScorer] = SchedulerConfiguration.standardScorers,
        seed: UInt64 = 0,
        scoringLimit: Int = 16,
        defaultRuntime: Duration? = nil,
        preemptionSearchesPerPass: Int = 32
    ) {
        self.policy = policy
        self.backfill = backfill
        self.preemption = preemption
        self.checks = checks
        self.scorers = scorers
        self.seed = seed
        self.scoringLimit = max(1, scoringLimit)
        self.defaultRuntime = defaultRuntime
        self.preemptionSearchesPerPass = preemptionSearchesPerPass
    }

    /// Fragmentation weighs most (it is what keeps large jobs placeable), then best fit and
    /// topology; spread only speaks for groups that ask for it.
    public static var standardScorers: [WeightedScorer] {
        [
            WeightedScorer(FragmentationScorer(), weight: 3),
            WeightedScorer(BestFitScorer(), weight: 2),
            WeightedScorer(TopologyScorer(), weight: 2),
            WeightedScorer(SpreadScorer(), weight: 2),
        ]
    }
}

/// The scheduler: a pure function from a cluster snapshot and a time to a plan.
///
/// `process` runs a whole `SchedulingPass`; callers that want to interleave or time single
/// decisions drive the pass themselves with `step()`.
public struct Scheduler: Sendable {
    public var configuration: SchedulerConfiguration

    public init(configuration: SchedulerConfiguration = SchedulerConfiguration()) {
        self.configuration = configuration
    }

    public func process(_ state: ClusterState, now: Timestamp) -> Plan {
        var pass = SchedulingPass(state: state, configuration: configuration, now: now)
        while pass.step() != nil {}
        return pass.plan
    }
}
