import FastGPUModel
import FastGPUScheduler
import FastGPUTestSupport
import Testing

@Suite struct PreemptionTests {
    @Test func nonSpotWorkPreemptsTheSpotJobThatLosesLeast() throws {
        var harness = SchedulerHarness(state: .make(nodes: [Node.make(1).gpus(8).build()],
                                                    jobs: [Job.make(1).gpus(4).spot().build()]))
        try harness.round()
        harness.now = .seconds(100)
        try harness.submit(Job.make(2).gpus(4).spot().submitted(atSecond: 100).build())
        try harness.round()
        harness.now = .seconds(200)
        try harness.submit(Job.make(3).gpus(4).submitted(atSecond: 200).build())
        let verified = try harness.round()
        // Job 2 started later: preempting it loses 4 GPUs × 100 s, job 1 would lose 4 × 200 s.
        #expect(verified.preemptions.map(\.victim.job) == [JobID(2)])
        #expect(verified.placements.map(\.task.job) == [JobID(3)])
        #expect(harness.state.jobs[JobID(2)]?.state == .pending)
        #expect(harness.state.waiting == [JobID(2)])
        #expect(ClusterInvariants.violations(in: harness.state).isEmpty)
    }

    @Test func theFewestVictimsWin() throws {
        // node-1 holds eight 1-GPU spot jobs, node-2 two 4-GPU spot jobs: a 4-GPU job preempts one job on node-2.
        let spot = (1...8).map { Job.make(UInt64($0)).gpus(1).spot().selector("pool", "a").build() }
            + (9...10).map { Job.make(UInt64($0)).gpus(4).spot().selector("pool", "b").build() }
        var harness = SchedulerHarness(state: .make(nodes: [Node.make(1).gpus(8).label("pool", "a").build(), Node.make(2).gpus(8).label("pool", "b").build()], jobs: spot))
        try harness.round()
        #expect(harness.state.allocations.count == 10)
        try harness.submit(Job.make(11).gpus(4).priority(.high).build())
        let verified = try harness.round()
        #expect(verified.preemptions.count == 1)
        #expect(verified.placements.first?.node == NodeID(2))
    }

    @Test func theVictimsThatHoldTheLeastGPUCapacityWin() throws {
        // node-1 holds eight 1-GPU spot jobs since t = 0, node-2 one 8-GPU spot job since t = 190 s.
        // At 200 s a 1-GPU job stops one 1-GPU job, though the young 8-GPU job would lose less work:
        // stopping it would free seven GPUs the claim does not need and put a whole node's job back in line.
        let narrow = (1...8).map { Job.make(UInt64($0)).gpus(1).spot().selector("pool", "a").build() }
        var harness = SchedulerHarness(state: .make(nodes: [Node.make(1).gpus(8).label("pool", "a").build(), Node.make(2).gpus(8).label("pool", "b").build()], jobs: narrow))
        try harness.round()
        harness.now = .seconds(190)
        try harness.submit(Job.make(9).gpus(8).spot().selector("pool", "b").submitted(atSecond: 190).build())
        try harness.round()
        harness.now = .seconds(200)
        try harness.submit(Job.make(10).gpus(1).submitted(atSecond: 200).build())
        let verified = try harness.round()
        #expect(verified.preemptions.count == 1)
        #expect(verified.preemptions.first.map { $0.victim.job.rawValue <= 8 } == true)
        #expect(verified.placements.first?.node == NodeID(1))
    }

    @Test func equalWorkIsNeverPreempted() throws {
        var harness = SchedulerHarness(state: .make(nodes: [Node.make(1).gpus(1).build()], jobs: [Job.make(1).gpus(1).build()]))
        try harness.round()
        try harness.submit(Job.make(2).gpus(1).submitted(atSecond: 1).build())
        let verified = try harness.round()
        #expect(verified.preemptions.isEmpty && verified.placements.isEmpty)
    }

    @Test func spotWorkNeverPreemptsNonSpotWork() throws {
        var harness = SchedulerHarness(state: .make(nodes: [Node.make(1).gpus(1).build()], jobs: [Job.make(1).gpus(1).priority(.low).build()]))
        try harness.round()
        try harness.submit(Job.make(2).gpus(1).spot().build())
        #expect(try harness.round().preemptions.isEmpty)
    }

    @Test func preemptingAGangMemberTakesTheWholeGang() throws {
        var harness = SchedulerHarness(state: .make(nodes: [Node.make(1).gpus(8).build(), Node.make(2).gpus(8).build()],
                                                    jobs: [Job.make(1).gpus(8).tasks(2, gang: true).spot().build()]))
        try harness.round()
        try harness.submit(Job.make(2).gpus(8).build())
        let verified = try harness.round()
        #expect(Set(verified.preemptions.map(\.victim)) == [TaskRef(job: JobID(1), group: 0, index: 0), TaskRef(job: JobID(1), group: 0, index: 1)])
        #expect(harness.state.jobs[JobID(1)]?.liveAllocations.isEmpty == true)
        #expect(ClusterInvariants.violations(in: harness.state).isEmpty)
    }

    @Test func preemptionCanBeTurnedOff() throws {
        var harness = SchedulerHarness(state: .make(nodes: [Node.make(1).gpus(1).build()], jobs: [Job.make(1).gpus(1).spot().build()]),
                                       configuration: SchedulerConfiguration(preemption: false))
        try harness.round()
        try harness.submit(Job.make(2).gpus(1).build())
        #expect(try harness.round().preemptions.isEmpty)
    }

    @Test func graceShieldsYoungWorkFromPolicyPreemptionButNotFromSpotRules() throws {
        let configuration = SchedulerConfiguration(policy: LeastAttainedServicePolicy(thresholdGPUSeconds: [60]), preemptionGrace: .seconds(600))
        var harness = SchedulerHarness(state: .make(nodes: [Node.make(1).gpus(1).build()], jobs: [Job.make(1).gpus(1).build()]), configuration: configuration)
        try harness.round()
        // At 100 s job 1 has attained 100 GPU-s (queue 1); new job 2 (queue 0) outranks it, but
        // job 1 is younger than the 600 s grace.
        harness.now = .seconds(100)
        try harness.submit(Job.make(2).gpus(1).submitted(atSecond: 100).build())
        #expect(try harness.round().preemptions.isEmpty)
        harness.now = .seconds(700)
        #expect(try harness.round().preemptions.map(\.victim.job) == [JobID(1)])

        // A spot allocation gets no grace against non-spot work.
        var spot = SchedulerHarness(state: .make(nodes: [Node.make(1).gpus(1).build()], jobs: [Job.make(1).gpus(1).spot().build()]), configuration: configuration)
        try spot.round()
        try spot.submit(Job.make(2).gpus(1).build())
        #expect(try spot.round().preemptions.map(\.victim.job) == [JobID(1)])
    }
}
