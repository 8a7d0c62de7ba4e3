public import FastGPUModel

/// When each pending job may start, if running work ends when it is expected to and the queue
/// keeps its order: the material for `GET /v1/queue` and `fastgpu jobs why`.
///
/// A shadow run of the very same scheduler: the plan is committed on a copy of the state, then,
/// release by release (each allocation's expected end), the work that ends is ended and the
/// scheduler places what now fits. A job's estimate is the shadow time it was placed at. Work
/// without an estimate or limit never ends in the shadow, so jobs that wait behind it get no
/// estimate rather than a wrong one (the control plane gives such work a learned run time first).
/// The shadow preempts as the policy does, and also steps when young work's preemption grace
/// ends: under a preemptive policy that is how most waiting jobs start (how good the estimates
/// are: `fastgpu sim run … --estimate-every 600`, README). Bounded by `steps` steps, each one
/// scheduling pass.
public struct StartEstimator: Sendable {
    public var configuration: SchedulerConfiguration
    public var steps: Int

    public init(configuration: SchedulerConfiguration, steps: Int = 256) {
        self.configuration = configuration
        self.steps = steps
    }

    /// An estimated start, and whether it rests on a run time that was learned rather than given.
    public struct Estimate: Hashable, Sendable {
        public var start: Timestamp
        public var learned: Bool
    }

    /// Estimated starts of the jobs the plan leaves pending (those it never reaches are absent).
    public func estimatedStarts(state: ClusterState, plan: Plan, now: Timestamp) -> [JobID: Timestamp] {
        estimates(state: state, plan: plan, now: now, learned: []).mapValues(\.start)
    }

    /// The same, with what each estimate rests on: `learned` names the jobs whose run times in
    /// `state` were learned (`LearnedRuntimes.filling`). An estimate is learned when, by the step
    /// that placed the job, the shadow had ended work on a learned run time; otherwise only given
    /// run times and the policy's own rules (a grace that ends) decided it.
    public func estimates(state: ClusterState, plan: Plan, now: Timestamp, learned: Set<JobID>) -> [JobID: Estimate] {
        var shadow = state
        let waiting = Set(plan.pending.filter { !$0.reason.isNever }.map(\.job))
        guard !waiting.isEmpty, (try? shadow.apply(.commit(PlanVerifier().verify(plan, against: shadow), at: now))) != nil else { return [:] }
        let scheduler = Scheduler(configuration: configuration)
        var starts: [JobID: Estimate] = [:]
        var learnedUsed = false
        let grace = configuration.preemption ? configuration.preemptionGrace : .zero
        var last = now
        for _ in 0..<steps where starts.count < waiting.count {
            // The next expected release; work without an expected end never releases. With
            // preemption, also the next end of a grace: young work may be displaced from then.
            var next = shadow.allocations.values.map(\.expectedEnd).filter({ $0 < .distantFuture }).min()
            if grace > .zero, let graceEnd = shadow.allocations.values.map({ $0.startTime + grace }).filter({ $0 > last }).min() {
                next = min(next ?? graceEnd, graceEnd)
            }
            guard let next else { break }
            let at = max(now, next)
            last = at
            for allocation in shadow.allocations.values.filter({ $0.expectedEnd <= at }).sorted(by: { $0.id < $1.id }) where shadow.allocations[allocation.id] != nil {
                if learned.contains(allocation.task.job) { learnedUsed = true }
                _ = try? shadow.apply(.endAllocation(allocation.id, .succeeded, at: at))
            }
            let step = scheduler.process(shadow, now: at)
            guard (try? shadow.apply(.commit(PlanVerifier().verify(step, against: shadow), at: at))) != nil else { break }
            for placement in step.placements where waiting.contains(placement.task.job) && starts[placement.task.job] == nil {
                starts[placement.task.job] = Estimate(start: at, learned: learnedUsed)
            }
        }
        return starts
    }
}
