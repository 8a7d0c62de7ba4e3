public import FastGPUModel
public import FastGPUScheduler

public struct ControlPlaneConfiguration: Sendable {
    public var scheduler: SchedulerConfiguration
    /// A node that has not sent a heartbeat for `heartbeatTTL + heartbeatGrace` goes down.
    public var heartbeatTTL: Duration
    public var heartbeatGrace: Duration
    /// After the control plane starts (or finds it was paused), nodes get this long before
    /// anyone is judged late: their agents could not have reached a stopped server.
    public var startupGrace: Duration
    /// Start estimates are computed in every pass while at most this many jobs wait.
    public var estimateLimit: Int
    /// Largest page of `GET /v1/jobs`.
    public var maxPageSize: Int
    /// A task lost with its node is retried after `retryBackoff`, doubled per attempt, at most `retryBackoffCap`.
    public var retryBackoff: Duration = .seconds(10)
    /// How long a retried submission with the same Idempotency-Key returns the first job.
    public var idempotencyRetention: Duration = .seconds(24 * 3600)
    public var retryBackoffCap: Duration = .seconds(300)
    public var retryPolicy: RetryPolicy { RetryPolicy(base: retryBackoff, cap: retryBackoffCap) }
    /// Jobs one project may have waiting at once; a submission beyond it is refused (429), so
    /// one project's flood cannot fill the server's memory or the others' queue.
    public var maxPendingJobsPerProject = 10_000
    /// A GPU an allocation holds at 0 % utilisation for this long is idle: a `gpu-idle` event on
    /// its job and `fastgpu_gpu_idle_allocated` on `/metrics`.
    public var idleGPUAfter: Duration = .seconds(600)
    /// The policy's name (the registry's, `SchedulingPolicy`), for the log.
    public var policyName: String
    /// Where the scheduler's run-time figures come from: a Gittins policy (`.distribution`) ranks
    /// by the tables learned from finished jobs; under `.history` a job without an estimate is
    /// decided with a learned one. Start estimates use learned run times wherever users gave
    /// none, whatever the policy.
    public var estimates: EstimateSource = .none
    /// What learns run times from finished jobs (samples kept per class, the claims' restart price).
    public var learner = LearnedRuntimes()

    /// The configuration that runs a policy of the registry, its grace and claims priced at
    /// `restartCost`: what `fastgpu server --policy` runs, and what `fastgpu sim` measures.
    public static func running(_ policy: SchedulingPolicy, restartCost: Duration = .seconds(30)) -> ControlPlaneConfiguration {
        var configuration = ControlPlaneConfiguration(scheduler: policy.schedulerConfiguration(restartCost: restartCost))
        configuration.policyName = policy.name
        configuration.estimates = policy.estimates
        configuration.learner = policy.learner(restartCost: restartCost)
        return configuration
    }

    /// Whether the policy decides on run times (SRTF, EASY backfill), so that a job without one
    /// is decided with a learned one, as the simulator's do. `fastgpu` ranks by its tables and
    /// places greedily: it decides on the state as it is (filling in run times copies every job).
    public var decidesOnLearnedRuntimes: Bool { estimates == .history }

    public init(scheduler: SchedulerConfiguration = SchedulerConfiguration(), heartbeatTTL: Duration = .seconds(5), heartbeatGrace: Duration = .seconds(5),
                startupGrace: Duration = .seconds(30), estimateLimit: Int = 2_000, maxPageSize: Int = 500) {
        self.scheduler = scheduler
        self.policyName = scheduler.policy.name
        self.heartbeatTTL = heartbeatTTL
        self.heartbeatGrace = heartbeatGrace
        self.startupGrace = startupGrace
        self.estimateLimit = estimateLimit
        self.maxPageSize = maxPageSize
    }
}
