public import FastGPUModel

/// When each pending job may start, if running work ends when it is expected to and the queue
/// keeps its order: the material for `GET /v1/queue` and `fastgpu jobs why`.
///
/// A shadow run of the very same scheduler: the plan is committed on a copy of the state, then,
/// release by release (each allocation's expected end), the work that ends is ended and the
/// scheduler places what now fits. A job's estimate is the shadow time it was placed at. Work
/// without an estimate or limit never ends in the shadow, so jobs that wait behind it get no
/// estimate rather than a wrong one. Preemption is off in the shadow: an estimate should not count
/// on displacing someone. Bounded by `steps` releases, each one scheduling pass.
public struct StartEstimator: Sendable {
    public var configuration: SchedulerConfiguration
    public var steps: Int

    public init(configuration: SchedulerConfiguration, steps: Int = 256) {
        var shadow = configuration
        shadow.preemption = false
        self.configuration = shadow
        self.steps = steps
    }

    /// Estimated starts of the jobs the plan leaves pending (those it never reaches are absent).
    public func estimatedStarts(state: ClusterState, plan: Plan, now: Timestamp) -> [JobID: Timestamp] {
        var shadow = state
        let waiting = Set(plan.pending.filter { !$0.reason.isNever }.map(\.job))
        guard !waiting.isEmpty, (try? shadow.apply(.commit(PlanVerifier().verify(plan, against: shadow), at: now))) != nil else { return [:] }
        let scheduler = Scheduler(configuration: configuration)
        var starts: [JobID: Timestamp] = [:]
        for _ in 0..<steps where starts.count < waiting.count {
            // The next expected release; work without an expected end never releases.
            guard let next = shadow.allocations.values.map(\.expectedEnd).filter({ $0 < .distantFuture }).min() else { break }
            let at = max(now, next)
            for allocation in shadow.allocations.values.filter({ $0.expectedEnd <= at }).sorted(by: { $0.id < $1.id }) where shadow.allocations[allocation.id] != nil {
                _ = try? shadow.apply(.endAllocation(allocation.id, .succeeded, at: at))
            }
            let step = scheduler.process(shadow, now: at)
            guard (try? shadow.apply(.commit(PlanVerifier().verify(step, against: shadow), at: at))) != nil else { break }
            for placement in step.placements where waiting.contains(placement.task.job) && starts[placement.task.job] == nil {
                starts[placement.task.job] = at
            }
        }
        return starts
    }
}
