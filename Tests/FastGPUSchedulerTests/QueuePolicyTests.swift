import FastGPUModel
import FastGPUScheduler
import FastGPUTestSupport
import Testing

@Suite struct QueuePolicyTests {
    static let node = Node.make(1).gpus(8).cpu(millis: 64_000).memory(mib: 512 * 1024).build()

    func order(_ policy: any QueuePolicy, _ jobs: [Job], state: ClusterState? = nil, now: Timestamp = .seconds(1000)) -> [UInt64] {
        let state = state ?? .make(nodes: [Self.node], jobs: jobs)
        return policy.order(jobs, in: state, now: now).map(\.id.rawValue)
    }

    @Test func fifoIsSubmitTimeThenID() {
        let jobs = [Job.make(3).submitted(atSecond: 5).build(), Job.make(1).submitted(atSecond: 9).build(), Job.make(2).submitted(atSecond: 5).build()]
        #expect(order(FIFOPolicy(), jobs) == [2, 3, 1])
    }

    @Test func sjfUsesTheEstimateAndPutsUnknownsLast() {
        let jobs = [Job.make(1).estimate(seconds: 600).build(), Job.make(2).build(), Job.make(3).estimate(seconds: 60).submitted(atSecond: 9).build()]
        #expect(order(ShortestJobFirstPolicy(), jobs) == [3, 1, 2])
    }

    @Test func priorityClassGoesFirstThenFairShare() {
        let jobs = [
            Job.make(1).project(1).gpus(1).estimate(seconds: 3600).build(),
            Job.make(2).project(1).gpus(1).estimate(seconds: 3600).submitted(atSecond: 1).build(),
            Job.make(3).project(2).gpus(1).estimate(seconds: 3600).submitted(atSecond: 2).build(),
            Job.make(4).project(2).priority(.high).gpus(1).submitted(atSecond: 3).build(),
        ]
        // High class first, and it charges project 2 for job 4 (1 GPU × the 1 h horizon).
        // Then project 1 (share 0) gives job 1; now both are charged 1 GPU-hour, the tie goes
        // to the lower project id, so job 2; then job 3.
        #expect(order(FairSharePolicy(), jobs) == [4, 1, 2, 3])
        // Without job 4, the projects alternate: 1, 2, 1.
        #expect(order(FairSharePolicy(), Array(jobs.prefix(3))) == [1, 3, 2])
    }

    @Test func aProjectThatUsedMoreWaitsBehindOneThatUsedLess() throws {
        var state = ClusterState.make(nodes: [Self.node], jobs: [Job.make(9).project(1).gpus(8).build()])
        let plan = Scheduler().process(state, now: .zero)
        try state.apply(.commit(PlanVerifier().verify(plan, against: state), at: .zero))
        try state.apply(.endAllocation(state.allocations.keys.first!, .succeeded, at: .seconds(3600)))
        let jobs = [Job.make(1).project(1).gpus(1).build(), Job.make(2).project(2).gpus(1).submitted(atSecond: 5).build()]
        for job in jobs { try state.apply(.submit(job)) }
        #expect(order(FairSharePolicy(), jobs, state: state) == [2, 1])
    }

    @Test func weightScalesTheShare() throws {
        // Both projects used 8 GPU-hours; project 1 has weight 4, so its share is a quarter and it goes first.
        var state = ClusterState.make(nodes: [Self.node])
        try state.apply(.setProject(ProjectID(1), weight: 4))
        for (id, project) in [(UInt64(10), UInt64(1)), (11, 2)] {
            try state.apply(.submit(Job.make(id).project(project).gpus(8).build()))
            let plan = Scheduler(configuration: SchedulerConfiguration(policy: FIFOPolicy())).process(state, now: .zero)
            try state.apply(.commit(PlanVerifier().verify(plan, against: state), at: .zero))
            try state.apply(.endAllocation(state.allocations.keys.first!, .succeeded, at: .seconds(3600)))
        }
        let jobs = [Job.make(2).project(2).gpus(1).build(), Job.make(1).project(1).gpus(1).submitted(atSecond: 5).build()]
        for job in jobs { try state.apply(.submit(job)) }
        #expect(order(FairSharePolicy(), jobs, state: state) == [1, 2])
    }

    @Test func lasPutsJobsWithLessAttainedServiceFirst() throws {
        // Job 1 ran 1 GPU for 2 hours (7,200 GPU-s ≥ 3,600: queue 1); job 2 is new (queue 0).
        var state = ClusterState.make(nodes: [Self.node], jobs: [Job.make(1).gpus(1).build()])
        let plan = Scheduler().process(state, now: .zero)
        try state.apply(.commit(PlanVerifier().verify(plan, against: state), at: .zero))
        try state.apply(.endAllocation(state.allocations.keys.first!, .preempted, at: .seconds(7200)))
        try state.apply(.submit(Job.make(2).gpus(1).submitted(atSecond: 7000).build()))
        let las = LeastAttainedServicePolicy()
        #expect(las.queue(of: state.jobs[JobID(1)]!, in: state, now: .seconds(7200)) == 1)
        #expect(las.queue(of: state.jobs[JobID(2)]!, in: state, now: .seconds(7200)) == 0)
        #expect(order(las, [state.jobs[JobID(1)]!, state.jobs[JobID(2)]!], state: state, now: .seconds(7200)) == [2, 1])
    }

    @Test func lasPreemptsRunningWorkOfALowerQueue() throws {
        var harness = SchedulerHarness(state: .make(nodes: [Node.make(1).gpus(1).build()], jobs: [Job.make(1).gpus(1).build()]),
                                       configuration: SchedulerConfiguration(policy: LeastAttainedServicePolicy()))
        try harness.round()
        harness.now = .seconds(4000)  // job 1 has attained 4,000 GPU-s: queue 1
        try harness.submit(Job.make(2).gpus(1).submitted(atSecond: 4000).build())
        let verified = try harness.round()
        #expect(verified.preemptions.map(\.victim.job) == [JobID(1)])
        #expect(verified.placements.map(\.task.job) == [JobID(2)])
        #expect(harness.state.jobs[JobID(1)]?.state == .pending)
    }

    @Test func gittinsIndexFollowsTheDistribution() {
        // Samples 1 s, 1 s, 100 s. Fresh (a = 0): k = 1 → 1 ÷ (1 + 2 × 1) = 1/3; k = 2 → 2 ÷ (2 + 1) = 2/3;
        // k = 3 → 3 ÷ 102. Index 2/3. After 1 s only the 100 s sample is left: 1 ÷ 99.
        let table = GittinsPolicy.Table(samples: [1_000_000, 1_000_000, 100_000_000])
        #expect(abs(table.indices[0] - 2.0 / 3) < 1e-12)
        #expect(abs(table.indices[1] - 1.0 / 99) < 1e-12)
        #expect(table.index(attainedMilliGPUMilliseconds: 1_500_000) == table.indices[1])
    }

    @Test func gittinsRunsAFreshJobBeforeOneThatOutlivedTheShortSamples() throws {
        // Job 1 has run 2 s of a class whose samples say "1 s, or 100 s"; fresh job 2 of the same
        // class is likelier to finish soon, so it goes first.
        var state = ClusterState.make(nodes: [Self.node], jobs: [Job.make(1).gpus(1).build()])
        let plan = Scheduler(configuration: SchedulerConfiguration(policy: FIFOPolicy())).process(state, now: .zero)
        try state.apply(.commit(PlanVerifier().verify(plan, against: state), at: .zero))
        try state.apply(.endAllocation(state.allocations.keys.first!, .preempted, at: .seconds(2)))
        try state.apply(.submit(Job.make(2).gpus(1).submitted(atSecond: 2).build()))
        let tables = [GittinsPolicy.ClassKey(project: nil, milliGPUs: nil): GittinsPolicy.Table(samples: [1_000_000, 1_000_000, 100_000_000])]
        let policy = GittinsPolicy(tables: tables)
        #expect(order(policy, [state.jobs[JobID(1)]!, state.jobs[JobID(2)]!], state: state, now: .seconds(2)) == [2, 1])
        // Without history the prior ranks by what each has run (least attained service): the fresh job first.
        #expect(order(GittinsPolicy(tables: [:]), [state.jobs[JobID(1)]!, state.jobs[JobID(2)]!], state: state, now: .seconds(2)) == [2, 1])
    }

    @Test func aJobThatOutlivedEverySampleOfItsClassIsRankedByACoarserOne() throws {
        // Ada's class has three 1-second jobs; all jobs include ones of 100,000 s. Her job that has
        // run 10,000 s (over ten times her class's longest) is not "nearly done" (the flat tail of
        // her class: 1 ÷ 1 s) but ranked by the class that has seen runs that long.
        var state = ClusterState.make(nodes: [Self.node], jobs: [Job.make(1).gpus(1).submitter("ada").build()])
        let plan = Scheduler(configuration: SchedulerConfiguration(policy: FIFOPolicy())).process(state, now: .zero)
        try state.apply(.commit(PlanVerifier().verify(plan, against: state), at: .zero))
        var learned = LearnedRuntimes(tail: .flat)
        for _ in 0..<3 { learned.learn(project: ProjectID(1), submitter: "ada", gpus: 1, milliGPUs: 1000, milliseconds: 1000) }
        for seconds: Int64 in [10, 1000, 100_000] { learned.learn(project: ProjectID(2), submitter: "bo", gpus: 1, milliGPUs: 1000, milliseconds: seconds * 1000) }
        learned.buildTables()
        let policy = try #require(learned.configuring(SchedulerConfiguration(policy: GittinsPolicy(tables: [:]))).policy as? GittinsPolicy)
        let index = policy.index(of: state.jobs[JobID(1)]!, in: state, now: .seconds(10_000))
        #expect(index <= 1.0 / 90_000, "\(index)")
        // While it is within its class's runs, its own class ranks it.
        #expect(policy.index(of: state.jobs[JobID(1)]!, in: state, now: Timestamp(millisecondsSinceEpoch: 500)) >= 0.5)
    }

    @Test func theClaimIndexPaysForTheRestart() {
        // Samples 1 s, 1 s, 100 s; a restart costs r = 1 s. Fresh: k = 1 → 1 ÷ (1 + 2 + 3 × 1) = 1/6;
        // k = 2 → 2 ÷ (2 + 1 + 3) = 1/3; k = 3 → 3 ÷ (102 + 3) = 1/35. Claim 1/3 against a plain 2/3.
        let table = GittinsPolicy.Table(samples: [1_000_000, 1_000_000, 100_000_000], restartSeconds: 1)
        #expect(abs(table.indices[0] - 2.0 / 3) < 1e-12)
        #expect(abs(table.claimIndices[0] - 1.0 / 3) < 1e-12)
        #expect(abs(table.claimIndex(attainedMilliGPUMilliseconds: 0) - 1.0 / 3) < 1e-12)
        // Without a restart cost the claim is the index.
        #expect(GittinsPolicy.Table(samples: [1_000_000, 100_000_000]).claimIndices == GittinsPolicy.Table(samples: [1_000_000, 100_000_000]).indices)
    }

    @Test func pastEverySampleTheTailIsAsLongAgainOrFlat() {
        // Band 8 starts at 128 s, past the longest sample (100 s).
        let samples: [Int64] = [1_000_000, 1_000_000, 100_000_000]
        #expect(GittinsPolicy.Table(samples: samples).indices[8] == 1.0 / 128)
        #expect(GittinsPolicy.Table(samples: samples, tail: .flat).indices[8] == 1.0 / 100)
        // Flat: every band past the samples ranks the same, so such jobs do not preempt each other.
        #expect(GittinsPolicy.Table(samples: samples, tail: .flat).indices[20] == 1.0 / 100)
    }

    /// Job 1 has run 2 s of a class whose samples say "1 s, or 100 s" (index 1/98); fresh job 2
    /// (index 2/3) waits for the only GPU. With a restart of `restartSeconds`, does job 2 preempt?
    func preemptsForAFreshJob(restartSeconds: Double, weighs: Bool = false) throws -> Bool {
        var harness = SchedulerHarness(state: .make(nodes: [Node.make(1).gpus(1).build()], jobs: [Job.make(1).gpus(1).build()]),
                                       configuration: SchedulerConfiguration(policy: FIFOPolicy()))
        try harness.round()
        let table = GittinsPolicy.Table(samples: [1_000_000, 1_000_000, 100_000_000], restartSeconds: restartSeconds)
        harness.scheduler.configuration.policy = GittinsPolicy(tables: [GittinsPolicy.ClassKey(project: nil, milliGPUs: nil): table], weighsVictims: weighs)
        harness.now = .seconds(2)
        try harness.submit(Job.make(2).gpus(1).submitted(atSecond: 2).build())
        let verified = try harness.round()
        return verified.preemptions.map(\.victim.job) == [JobID(1)]
    }

    @Test func aClaimThatCannotPayForTheRestartPreemptsNothing() throws {
        // r = 30 s: claim 2 ÷ (3 + 90) ≈ 1/46 beats 1/98 by a band. r = 1,000 s: 2 ÷ 3,003 does not.
        #expect(try preemptsForAFreshJob(restartSeconds: 30))
        #expect(try !preemptsForAFreshJob(restartSeconds: 1000))
    }

    @Test func aWeighingClaimMustOutRateAllItsVictimsTogether() throws {
        // One 2-GPU node runs jobs 1 and 2 (1 GPU each, 2 s into a "1 s or 100 s" class: 1/98 each).
        // Job 3 needs both GPUs. Its claim from samples "60 s, 60 s" is 1/60: above either victim's
        // band, yet below their sum (2/98 = 1/49), so a weighing policy leaves them be.
        func run(weighs: Bool) throws -> Int {
            var harness = SchedulerHarness(state: .make(nodes: [Node.make(1).gpus(2).build()], jobs: [Job.make(1).gpus(1).build(), Job.make(2).gpus(1).build()]),
                                           configuration: SchedulerConfiguration(policy: FIFOPolicy()))
            try harness.round()
            let tables = [
                GittinsPolicy.ClassKey(project: nil, milliGPUs: 1000): GittinsPolicy.Table(samples: [1_000_000, 1_000_000, 100_000_000]),
                GittinsPolicy.ClassKey(project: nil, milliGPUs: 2000): GittinsPolicy.Table(samples: [60_000_000, 60_000_000]),
            ]
            harness.scheduler.configuration.policy = GittinsPolicy(tables: tables, weighsVictims: weighs)
            harness.now = .seconds(2)
            try harness.submit(Job.make(3).gpus(2).submitted(atSecond: 2).build())
            return try harness.round().preemptions.count
        }
        #expect(try run(weighs: false) == 2)
        #expect(try run(weighs: true) == 0)
    }
}

@Suite struct QueuePolicyRegistryTests {
    @Test func everyListedNameIsAPolicyAndNothingElseIs() {
        for name in SchedulingPolicy.names { #expect(SchedulingPolicy.named(name)?.name == name, "\(name)") }
        #expect(SchedulingPolicy.named("FIFO") == nil)
        #expect(SchedulingPolicy.named("") == nil)
        #expect(SchedulingPolicy.named("fastgpu:") == nil)
        #expect(Set(SchedulingPolicy.names).count == SchedulingPolicy.names.count)
        // A live cluster cannot run an oracle: it has no true run times.
        #expect(SchedulingPolicy.liveNames == ["fifo", "las", "fastgpu", "srtf-predicted", "fair-share"])
        #expect(SchedulingPolicy.liveNames.contains(SchedulingPolicy.defaultName))
    }

    @Test func theGraceAndTheClaimArePricedInRestarts() throws {
        let policy = try #require(SchedulingPolicy.named("fastgpu"))
        #expect(policy.schedulerConfiguration(restartCost: .seconds(30)).preemptionGrace == .seconds(240))
        #expect(policy.schedulerConfiguration(restartCost: .seconds(5)).preemptionGrace == .seconds(40))
        #expect(policy.learner(restartCost: .seconds(30)).distributions.restartSeconds == 60, "two restarts of 30 s")
        #expect(SchedulingPolicy.named("fastgpu:claim=0")!.learner(restartCost: .seconds(30)).distributions.restartSeconds == 0)
    }
}

@Suite struct LearnedRuntimesTests {
    static let project = ProjectID(1)

    @Test func aJobThatOutlivedTheMedianIsGivenTheMedianOfLongerRunsOrAsLongAgain() {
        var learned = LearnedRuntimes()
        for seconds: Int64 in [10, 20, 30, 400, 500] {
            learned.learn(project: Self.project, submitter: "ada", gpus: 1, milliGPUs: 1000, milliseconds: seconds * 1000)
        }
        // The class's median, then the median of the runs longer than 25 s, then as long again.
        #expect(learned.estimateMilliseconds(project: Self.project, submitter: "ada", gpus: 1) == 30_000)
        #expect(learned.estimateMilliseconds(project: Self.project, submitter: "ada", gpus: 1, ranFor: 25_000) == 400_000)
        #expect(learned.estimateMilliseconds(project: Self.project, submitter: "ada", gpus: 1, ranFor: 600_000) == 1_200_000)
        #expect(learned.finishedJobs == 5)
    }

    @Test func fillingGivesRunTimesOnlyToJobsWithoutThemAndLeavesTheStateItsIndex() throws {
        var learned = LearnedRuntimes()
        for _ in 0..<3 { learned.learn(project: ProjectID(1), submitter: "", gpus: 1, milliGPUs: 1000, milliseconds: 100_000) }
        let node = Node.make(1).gpus(2).cpu(millis: 64_000).memory(mib: 512 * 1024).build()
        var state = ClusterState.make(nodes: [node], jobs: [Job.make(1).gpus(1).build(), Job.make(2).gpus(1).estimate(seconds: 50).build(), Job.make(3).gpus(2).build()])
        let plan = Scheduler(configuration: SchedulerConfiguration(policy: FIFOPolicy())).process(state, now: .zero)
        try state.apply(.commit(PlanVerifier().verify(plan, against: state), at: .zero))
        let (filled, which) = learned.filling(state, now: .seconds(40))
        // Job 1 runs without an estimate: 100 s learned, so it ends at 100 s; job 2 has its own;
        // job 3 waits and gets the class's median (the all-jobs class: no 2-GPU history).
        #expect(which == [JobID(1), JobID(3)])
        #expect(filled.jobs[JobID(1)]?.runtimeEstimate == .seconds(100))
        #expect(filled.jobs[JobID(3)]?.runtimeEstimate == .seconds(100))
        let running = try #require(filled.jobs[JobID(1)]?.liveAllocations.values.first)
        #expect(filled.allocations[running]?.expectedEnd == .seconds(100))
        #expect(filled.index == state.index)
        #expect(state.jobs[JobID(1)]?.runtimeEstimate == nil)
    }
}
