import FastGPUModel
import FastGPUScheduler
import FastGPUTestSupport
import FastGPUWorkloads
import Testing

/// Seeded property tests over random clusters and job mixes (mixed models, MIG GPUs, shares,
/// gangs, spot, priorities, labels, nodes not ready). Each seed runs several rounds of
/// process → verify → commit with random changes in between, and checks after every commit that
/// nothing is over-committed (recomputed from the allocations by `ClusterInvariants`).
@Suite struct PropertyTests {
    static let seeds = Array(UInt64(1)...UInt64(250))

    static func configuration(using rng: inout SeededGenerator) -> SchedulerConfiguration {
        let policies: [any QueuePolicy] = [FIFOPolicy(), FairSharePolicy(), ShortestJobFirstPolicy(), LeastAttainedServicePolicy(thresholdGPUSeconds: [60, 600])]
        return SchedulerConfiguration(
            policy: policies.randomElement(using: &rng)!, backfill: BackfillMode.allCases.randomElement(using: &rng)!,
            preemption: Bool.random(using: &rng), seed: rng.next(), scoringLimit: Int.random(in: 1...8, using: &rng),
            defaultRuntime: Bool.random(using: &rng) ? .seconds(600) : nil)
    }

    /// Changes the world between deciding and committing: what the verifier must cope with.
    static func perturb(_ state: inout ClusterState, now: Timestamp, nextJobID: inout UInt64, using rng: inout SeededGenerator) throws {
        for _ in 0..<Int.random(in: 0...4, using: &rng) {
            switch Int.random(in: 0..<6, using: &rng) {
            case 0 where !state.nodes.isEmpty:
                let node = state.nodes.randomElement(using: &rng)!
                try state.apply(.setNodeState(node.id, NodeState.allCases.randomElement(using: &rng)!, at: now))
            case 1 where !state.allocations.isEmpty:
                let id = state.allocations.keys.sorted().randomElement(using: &rng)!
                let outcomes: [AllocationOutcome] = [.succeeded, .failed(exitCode: 1), .lost, .preempted]
                try state.apply(.endAllocation(id, outcomes.randomElement(using: &rng)!, at: now))
            case 2 where !state.nodes.isEmpty:
                let node = state.nodes.randomElement(using: &rng)!
                if !node.gpus.isEmpty {
                    let health: GPUHealth = Bool.random(using: &rng) ? .healthy : .unhealthy(reason: "XID 48")
                    try state.apply(.setGPUHealth(node.id, gpu: Int.random(in: 0..<node.gpus.count, using: &rng), health))
                }
            case 3:
                // Another scheduler's plan commits first and takes capacity.
                for job in Workloads.randomJobs(count: 3, firstID: nextJobID, using: &rng) { try state.apply(.submit(job)) }
                nextJobID += 3
                let rival = Scheduler(configuration: SchedulerConfiguration(policy: FIFOPolicy(), seed: rng.next())).process(state, now: now)
                try state.apply(.commit(PlanVerifier().verify(rival, against: state), at: now))
            case 4 where !state.waiting.isEmpty:
                try state.apply(.cancel(state.waiting.sorted().randomElement(using: &rng)!, at: now))
            default:
                break
            }
        }
    }

    @Test(arguments: seeds)
    func plansNeverOverCommitAndAlwaysExplain(seed: UInt64) throws {
        var rng = SeededGenerator(seed: seed)
        let jobs = Workloads.randomJobs(count: Int.random(in: 1...30, using: &rng), using: &rng)
        var state = ClusterState.make(nodes: Workloads.randomCluster(using: &rng), jobs: jobs)
        var nextJobID = UInt64(jobs.count + 1)
        let scheduler = Scheduler(configuration: Self.configuration(using: &rng))
        var now = Timestamp.zero

        for _ in 0..<6 {
            let plan = scheduler.process(state, now: now)

            // Same input, same plan.
            #expect(plan == scheduler.process(state, now: now))

            // Every waiting job is placed or has a reason; positions count the jobs left pending.
            let placedJobs = Set(plan.placements.map(\.task.job))
            let pendingJobs = Set(plan.pending.map(\.job))
            #expect(placedJobs.union(pendingJobs) == state.waiting)
            #expect(plan.pending.map(\.position) == Array(0..<plan.pending.count))

            // Gangs are all or nothing inside the plan.
            for job in placedJobs {
                let spec = state.jobs[job]!
                for (group, taskGroup) in spec.taskGroups.enumerated() where taskGroup.gang {
                    let placed = plan.placements.count { $0.task.job == job && $0.task.group == group }
                    let held = spec.heldTaskCount(group: group)
                    #expect(placed == 0 || placed + held == taskGroup.count)
                }
            }

            // On its own snapshot the plan is accepted whole: the scheduler never over-commits.
            let own = PlanVerifier().verify(plan, against: state)
            #expect(own.rejected.isEmpty, "seed \(seed): \(own.rejected.map(\.reason))")
            var sameState = state
            try sameState.apply(.commit(own, at: now))
            #expect(ClusterInvariants.violations(in: sameState).isEmpty)

            // Against a state that moved on, what commits still fits and lands on ready nodes only.
            try Self.perturb(&state, now: now, nextJobID: &nextJobID, using: &rng)
            let verified = PlanVerifier().verify(plan, against: state)
            for placement in verified.placements {
                #expect(state.node(placement.node)?.state == .ready, "seed \(seed): placed on a node that is not ready")
            }
            try state.apply(.commit(verified, at: now))
            let problems = ClusterInvariants.violations(in: state)
            #expect(problems.isEmpty, "seed \(seed): \(problems)")

            // What a store persists rebuilds the same state: same snapshot, same next plan.
            let restored = try ClusterState(restoring: state.snapshot)
            #expect(restored.snapshot == state.snapshot, "seed \(seed): restore differs")
            #expect(restored.nodes == state.nodes && restored.waiting == state.waiting)
            #expect(scheduler.process(restored, now: now) == scheduler.process(state, now: now))

            now = now + .seconds(Int64.random(in: 1...3600, using: &rng))
            if Bool.random(using: &rng) {
                for job in Workloads.randomJobs(count: 4, firstID: nextJobID, using: &rng) { try state.apply(.submit(job)) }
                nextJobID += 4
            }
        }
    }

    /// The invariant oracle must see a broken state, or the property above proves nothing.
    @Test func theInvariantCheckCatchesOverCommitment() throws {
        var node = Node.make(1).gpus(1).build()
        let a = Allocation(id: AllocationID(1), task: TaskRef(job: JobID(1), group: 0, index: 0), node: NodeID(1), devices: [.whole(gpu: 0)],
                           cpuMillis: 0, memoryMiB: 0, project: ProjectID(1), priority: .normal, spot: false, milliGPUs: 1000, epoch: Epoch(1),
                           startTime: .zero, expectedEnd: .distantFuture)
        #expect(node.reserve(a) == nil)
        var b = a
        b.id = AllocationID(2)
        #expect(node.reserve(b) == .gpuBusy(0), "a GPU is taken once")
        // A node that holds an allocation the state does not know, and a second allocation
        // claiming the same GPU, are both flagged.
        #expect(!ClusterInvariants.violations(nodes: [node], allocations: [:], jobs: [:], waiting: []).isEmpty)
        #expect(ClusterInvariants.violations(nodes: [node], allocations: [a.id: a], jobs: [:], waiting: []).isEmpty)
        let doubled = ClusterInvariants.violations(nodes: [node], allocations: [a.id: a, b.id: b], jobs: [:], waiting: [])
        #expect(doubled.contains { $0.contains("held 2 times") })
    }
}
