public import FastGPUModel
public import FastGPUScheduler
public import FastGPUStore

// The plan applier: a scheduling pass's plan is verified against the current state and committed.
extension ControlPlane {
    // MARK: - Scheduling

    /// A copy of the state for one scheduling pass, and the time of the pass.
    /// What allocations its agents are still stopping hold is held in it too.
    public func schedulingInput() -> (state: ClusterState, now: Timestamp, learned: LearnedRuntimes) {
        learned.buildTables()
        return (state.holding(stopping.held), clock.now(), learned)
    }

    /// Verifies a plan against the current state, commits what still holds, records the queue,
    /// and returns once the commit is durable. Returns how many placements were committed.
    @discardableResult
    public func commit(_ plan: Plan, estimates: [JobID: Timestamp], learnedStarts: Set<JobID> = [], now: Timestamp) async throws -> Int {
        try checkWritable()
        let verified = PlanVerifier().verify(plan, against: state)
        var committed = 0
        if !verified.isEmpty {
            // Queue wait: from submission to the job's first placement.
            for job in Set(verified.placements.map(\.task.job)) {
                guard let record = state.jobs[job], record.state == .pending, record.attempts == 0 else { continue }
                queueWaits[record.project, default: WaitHistogram()].observe(Double(now.milliseconds(since: record.submitTime)) / 1000)
            }
            try apply(.commit(verified, at: now), now: now)
            committed = verified.placements.count
        }
        if !verified.rejected.isEmpty { wake() }
        scheduleWakeForBackoffs(plan, now: now)
        // An estimated start that passes while its job still waits is stale (the work ahead ran
        // longer than expected): a pass then estimates again, from how long that work has run.
        if let next = estimates.values.filter({ $0 > now }).min(), next < (backoffWake ?? .distantFuture) { backoffWake = next }
        queue = []
        for pendingJob in plan.pending.sorted(by: { $0.position < $1.position }) {
            guard let job = state.jobs[pendingJob.job], job.isWaiting else { continue }
            var start = estimates[pendingJob.job]
            if start == nil, case .notNow(_, _, _, let reasonStart) = pendingJob.reason { start = reasonStart }
            queue.append(QueueEntry(job: pendingJob.job, project: job.project, position: queue.count + 1, reason: pendingJob.reason,
                                    estimatedStart: start, estimatedStartLearned: start != nil && learnedStarts.contains(pendingJob.job)))
        }
        pending.queueChanged = true
        recountWaiting()
        try await awaitDurable()
        return committed
    }

    func waitingJobs(of project: ProjectID) -> Int {
        state.waiting.reduce(0) { count, id in count + (state.jobs[id]?.project == project ? 1 : 0) }
    }

    func recountWaiting() {
        waitingEstimate = [:]
        for id in state.waiting { if let job = state.jobs[id] { waitingEstimate[job.project, default: 0] += 1 } }
    }

    /// Some waits end at a time, not on an event: a job backing off becomes placeable, and young
    /// work's preemption grace runs out, after which a waiting job may displace it (what the start
    /// estimates count on). Wake the scheduler then.
    func scheduleWakeForBackoffs(_ plan: Plan, now: Timestamp) {
        var earliest = plan.pending.compactMap { pending -> Timestamp? in
            if case .notNow(.backoff(let until), _, _, _) = pending.reason { return until }
            return nil
        }.min()
        let grace = configuration.scheduler.preemption ? configuration.scheduler.preemptionGrace : .zero
        if grace > .zero, plan.pending.contains(where: { !$0.reason.isNever }),
           let graceEnd = state.allocations.values.map({ $0.startTime + grace }).filter({ $0 > now }).min() {
            earliest = min(earliest ?? graceEnd, graceEnd)
        }
        guard let earliest, earliest < (backoffWake ?? .distantFuture) else { return }
        backoffWake = earliest
    }

    /// Wakes the scheduler when the earliest retry backoff has run out; the liveness service
    /// asks every tick, on the injected clock. True when it woke it.
    @discardableResult
    public func wakeIfBackoffDue() -> Bool {
        guard let due = backoffWake, clock.now() >= due else { return false }
        backoffWake = nil
        wake()
        return true
    }
}
