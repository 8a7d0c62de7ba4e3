public import FastGPUModel
public import FastGPUScheduler

/// Drives the scheduler the way the control plane will: process → verify → commit, recording
/// every plan and verified plan so that tests assert on them (Nomad's `scheduler/tests` harness).
public struct SchedulerHarness {
    public var state: ClusterState
    public var scheduler: Scheduler
    public var now: Timestamp
    public private(set) var plans: [Plan] = []
    public private(set) var verified: [VerifiedPlan] = []

    public init(state: ClusterState, configuration: SchedulerConfiguration = SchedulerConfiguration(), now: Timestamp = .zero) {
        self.state = state
        self.scheduler = Scheduler(configuration: configuration)
        self.now = now
    }

    /// One scheduling round: returns the verified plan after committing it.
    @discardableResult
    public mutating func round() throws -> VerifiedPlan {
        let plan = scheduler.process(state, now: now)
        plans.append(plan)
        let checked = PlanVerifier().verify(plan, against: state)
        verified.append(checked)
        try state.apply(.commit(checked, at: now))
        return checked
    }

    public mutating func submit(_ job: Job) throws {
        try state.apply(.submit(job))
    }

    /// Ends every live allocation of the job with the outcome.
    public mutating func finish(_ job: JobID, outcome: AllocationOutcome = .succeeded) throws {
        for allocation in state.allocations.values.filter({ $0.task.job == job }).sorted(by: { $0.id < $1.id }) {
            if state.allocations[allocation.id] != nil { try state.apply(.endAllocation(allocation.id, outcome, at: now)) }
        }
    }

    public func placements(of job: JobID) -> [Allocation] {
        state.allocations.values.filter { $0.task.job == job }.sorted { $0.task < $1.task }
    }

    public var lastPlan: Plan? { plans.last }

    public func reason(for job: JobID) -> PendingReason? {
        plans.last?.pending.first { $0.job == job }?.reason
    }
}
