import FastGPUModel
import FastGPUScheduler
import FastGPUTestSupport
import FastGPUWorkloads
import Testing

@Suite struct PendingReasonTests {
    static let cluster = [Node.make(1).gpus(8, model: "H100-80GB").build(), Node.make(2).gpus(8, model: "A100-80GB").build(),
                          Node.make(3).migGPUs(2, model: "A100-40GB").label("zone", "b").build()]

    func reason(_ job: Job, nodes: [Node] = cluster) -> PendingReason? {
        Scheduler().process(.make(nodes: nodes, jobs: [job]), now: .zero).pending.first?.reason
    }

    struct Never: Sendable, CustomTestStringConvertible {
        var job: Job
        var expected: NeverReason
        var testDescription: String { expected.description }
    }

    @Test(arguments: [
        Never(job: Job.make().gpus(16).build(), expected: .taskLargerThanAnyNode(requestedGPUs: 16, largestNodeGPUs: 8)),
        Never(job: Job.make().gpus(1, model: "B200").build(), expected: .unknownGPUModel("B200")),
        Never(job: Job.make().mig("9g.90gb").build(), expected: .unknownMIGProfile("9g.90gb")),
        Never(job: Job.make().mig("1g.20gb").build(), expected: .noNodeFits("no GPU in MIG mode offers 1g.20gb")),
        Never(job: Job.make().gpus(8).tasks(3, gang: true).build(), expected: .gangLargerThanCluster(tasks: 3, hostable: 2)),
        Never(job: Job.make().gpus(1).selector("zone", "x").build(), expected: .noNodeFits("no node has the labels zone=x")),
        Never(job: Job.make().gpus(1).cpu(millis: 1_000_000).build(), expected: .noNodeFits("no node has 1000000m CPU")),
        Never(job: Job.make().share(milli: 100, memoryMiB: 100 * 1024).build(), expected: .noNodeFits("no GPU has 102400 MiB of memory")),
    ])
    func never(_ c: Never) {
        #expect(reason(c.job) == .never(c.expected))
    }

    @Test func aPerGPUMemoryFloorCountsOnlyTheGPUsThatMeetIt() throws {
        // One node: one 80 GB GPU and three 24 GB ones.
        let nodes = [Node.make(1).gpus(1, model: "X-80GB", memoryMiB: 81_559).gpus(3, model: "X-80GB", memoryMiB: 23_034).build()]
        #expect(reason(Job.make().gpus(2, minMemoryMiB: 40_000).build(), nodes: nodes)
                == .never(.noNodeFits("no node has 2 GPUs with 40000 MiB of memory each (at most 1)")))
        #expect(reason(Job.make().gpus(1, minMemoryMiB: 90_000).build(), nodes: nodes) == .never(.noNodeFits("no GPU has 90000 MiB of memory")))
        // One GPU with the floor goes to the large one; one without a floor leaves it free.
        let placed = Scheduler().process(.make(nodes: nodes, jobs: [Job.make(1).gpus(1, minMemoryMiB: 40_000).build()]), now: .zero)
        #expect(placed.placements.first?.devices == [.whole(gpu: 0)])
        var harness = SchedulerHarness(state: .make(nodes: nodes, jobs: [Job.make(1).gpus(3).build()]))
        try harness.round()
        try harness.submit(Job.make(2).gpus(1, minMemoryMiB: 40_000).submitted(atSecond: 1).build())
        try harness.round()
        #expect(harness.reason(for: JobID(2)) == nil, "the 80 GB GPU was left for the job that needs it")
        // Four GPUs take the large one too, as the only way to fit.
        let all = Scheduler().process(.make(nodes: nodes, jobs: [Job.make(3).gpus(4).build()]), now: .zero)
        #expect(all.placements.first?.devices.count == 4)
    }

    @Test func aCordonedNodeThatCouldHostItMakesItNotNow() {
        let nodes = [Node.make(1).gpus(8).state(.cordoned).build()]
        guard case .notNow(.noReadyNode, _, _, _) = reason(Job.make().gpus(8).build(), nodes: nodes) else {
            Issue.record("a cordoned node can be uncordoned: waiting helps"); return
        }
    }

    @Test func notNowNamesTheShortfallTheLargestFitAndTheJobsAhead() throws {
        // node-1 keeps 3 GPUs free after job 1; job 2 asks 4, job 3 asks 4 too.
        var harness = SchedulerHarness(state: .make(nodes: [Node.make(1).gpus(8).build()], jobs: [Job.make(1).gpus(5).build()]),
                                       configuration: SchedulerConfiguration(policy: FIFOPolicy(), backfill: .greedy))
        try harness.round()
        try harness.submit(Job.make(2).gpus(4).submitted(atSecond: 1).build())
        try harness.submit(Job.make(3).gpus(4).submitted(atSecond: 2).build())
        try harness.round()
        let fit = FreeFit(node: NodeID(1), freeGPUs: 3, gpuModel: "H100-80GB")
        #expect(harness.reason(for: JobID(2)) == .notNow(shortfall: .gpus(perTask: 4, model: nil), largestFreeFit: fit, jobsAhead: 0, estimatedStart: nil))
        #expect(harness.reason(for: JobID(3)) == .notNow(shortfall: .gpus(perTask: 4, model: nil), largestFreeFit: fit, jobsAhead: 1, estimatedStart: nil))
        #expect(harness.reason(for: JobID(2))?.description == "not now: no ready node has 4 free GPUs; largest free fit 3 H100-80GB free on node-1; 0 jobs ahead")
    }

    @Test func cpuShortBesideFreeGPUs() throws {
        // A gang that even an empty cluster cannot hold is never; one that waits for CPU is not now.
        let nodes = [Node.make(1).gpus(8).cpu(millis: 2000).build()]
        #expect(reason(Job.make().gpus(1).cpu(millis: 1000).tasks(3, gang: true).build(), nodes: nodes) == .never(.gangLargerThanCluster(tasks: 3, hostable: 2)))
        var harness = SchedulerHarness(state: .make(nodes: nodes, jobs: [Job.make(1).noGPU().cpu(millis: 1500).build()]))
        try harness.round()
        try harness.submit(Job.make(2).gpus(1).cpu(millis: 1000).build())
        try harness.round()
        guard case .notNow(.cpu(perTaskMillis: 1000), let fit, 0, nil) = try #require(harness.reason(for: JobID(2))) else {
            Issue.record("got \(String(describing: harness.reason(for: JobID(2))))"); return
        }
        #expect(fit?.freeGPUs == 8, "the GPUs are free; the CPU is short")
    }

    @Test func everyJobLeftPendingHasAReason() {
        var rng = SeededGenerator(seed: 7)
        let state = ClusterState.make(nodes: Workloads.uniformCluster(nodes: 4), jobs: Workloads.philly(count: 300, using: &rng))
        let plan = Scheduler().process(state, now: .zero)
        let placed = Set(plan.placements.map(\.task.job))
        let pending = Set(plan.pending.map(\.job))
        #expect(placed.union(pending) == state.waiting)
        #expect(plan.pending.map(\.position) == Array(0..<plan.pending.count))
    }
}

@Suite struct RetryBackoffTests {
    @Test func aDeferredJobWaitsOutItsBackoffWithoutHoldingTheQueue() throws {
        var state = ClusterState.make(nodes: [Node.make(1).gpus(8).build()],
                                      jobs: [Job.make(1).gpus(8).submitted(atSecond: 1).build(), Job.make(2).gpus(8).submitted(atSecond: 2).build()])
        try state.apply(.deferJob(JobID(1), until: .seconds(60)))
        var configuration = SchedulerConfiguration()
        configuration.backfill = .strict
        let early = Scheduler(configuration: configuration).process(state, now: .seconds(10))
        #expect(early.placements.map(\.task.job) == [JobID(2)], "the job behind it runs; strict FIFO does not wait for a backing-off head")
        #expect(early.pending.first?.reason == .notNow(shortfall: .backoff(until: .seconds(60)), largestFreeFit: nil, jobsAhead: 0, estimatedStart: .seconds(60)))
        let later = Scheduler(configuration: configuration).process(state, now: .seconds(60))
        #expect(later.placements.map(\.task.job) == [JobID(1)])
        #expect(throws: ClusterChangeError.unknownJob(JobID(9))) { try state.apply(.deferJob(JobID(9), until: .seconds(1))) }
    }
}

@Suite struct EmptyClusterTests {
    @Test func withNoNodesYetNothingIsNeverOnlyNotNow() {
        let plan = Scheduler().process(.make(nodes: [], jobs: [Job.make(1).gpus(2).build(), Job.make(2).gpus(2, model: "B200").build()]), now: .zero)
        #expect(plan.pending.count == 2)
        #expect(plan.pending.allSatisfy { !$0.reason.isNever }, "\(plan.pending.map(\.reason))")
    }
}
