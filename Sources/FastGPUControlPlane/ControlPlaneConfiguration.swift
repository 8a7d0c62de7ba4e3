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

    public init(scheduler: SchedulerConfiguration = SchedulerConfiguration(), heartbeatTTL: Duration = .seconds(5), heartbeatGrace: Duration = .seconds(5),
                startupGrace: Duration = .seconds(30), estimateLimit: Int = 2_000, maxPageSize: Int = 500) {
        self.scheduler = scheduler
        self.heartbeatTTL = heartbeatTTL
        self.heartbeatGrace = heartbeatGrace
        self.startupGrace = startupGrace
        self.estimateLimit = estimateLimit
        self.maxPageSize = maxPageSize
    }
}
