import FastGPUModel
import FastGPUScheduler
import FastGPUTestSupport
import Testing

@Suite struct PlanVerifierTests {
    @Test func aNodeThatLostCapacityRejectsItsPartAndOtherNodesCommit() throws {
        var state = ClusterState.make(nodes: [Node.make(1).gpus(8).build(), Node.make(2).gpus(8).build()],
                                      jobs: [Job.make(1).gpus(8).build(), Job.make(2).gpus(8).submitted(atSecond: 1).build()])
        let plan = Scheduler().process(state, now: .zero)
        #expect(plan.placements.count == 2)
        // Meanwhile another plan takes one GPU on the node job 1 was given.
        let node1 = plan.placements.first { $0.task.job == JobID(1) }!.node
        try state.apply(.submit(Job.make(3).gpus(1).submitted(atSecond: 2).build()))
        let other = Plan(basedOn: state.index, placements: [Placement(task: TaskRef(job: JobID(3), group: 0, index: 0), node: node1,
                                                                      devices: [.whole(gpu: 0)], cpuMillis: 0, memoryMiB: 0, gang: false)])
        try state.apply(.commit(PlanVerifier().verify(other, against: state), at: .zero))

        let verified = PlanVerifier().verify(plan, against: state)
        #expect(verified.placements.map(\.task.job) == [JobID(2)])
        #expect(verified.rejected.map(\.placement.task.job) == [JobID(1)])
        #expect(verified.rejected.first?.reason == .capacity(.gpuBusy(0)))
        try state.apply(.commit(verified, at: .zero))
        #expect(ClusterInvariants.violations(in: state).isEmpty)
    }

    @Test func aGangLosingOneNodeLosesAllItsPlacements() throws {
        var state = ClusterState.make(nodes: [Node.make(1).gpus(8).build(), Node.make(2).gpus(8).build()],
                                      jobs: [Job.make(1).gpus(8).tasks(2, gang: true).build()])
        let plan = Scheduler().process(state, now: .zero)
        #expect(plan.placements.count == 2)
        try state.apply(.setNodeState(NodeID(2), .down, at: .zero))
        let verified = PlanVerifier().verify(plan, against: state)
        #expect(verified.placements.isEmpty)
        #expect(Set(verified.rejected.map(\.reason)) == [.capacity(.nodeNotReady(.down)), .gangIncomplete])
    }

    @Test func aPreemptionWhoseBeneficiaryIsRejectedIsDropped() throws {
        var harness = SchedulerHarness(state: .make(nodes: [Node.make(1).gpus(1).build()], jobs: [Job.make(1).gpus(1).spot().build()]))
        try harness.round()
        try harness.submit(Job.make(2).gpus(1).build())
        let plan = harness.scheduler.process(harness.state, now: .zero)
        #expect(plan.preemptions.count == 1)
        try harness.state.apply(.cancel(JobID(2), at: .zero))
        let verified = PlanVerifier().verify(plan, against: harness.state)
        #expect(verified.preemptions.isEmpty, "the spot job must not be stopped for a cancelled job")
        #expect(verified.rejected.map(\.reason) == [.jobNotWaiting])
    }

    @Test func aPreemptionOfAnAllocationThatChangedIsDroppedAndItsBeneficiaryChecked() throws {
        var harness = SchedulerHarness(state: .make(nodes: [Node.make(1).gpus(1).build()], jobs: [Job.make(1).gpus(1).spot().build()]))
        try harness.round()
        try harness.submit(Job.make(2).gpus(1).build())
        let plan = harness.scheduler.process(harness.state, now: .zero)
        // The spot job ended and was restarted in between: new allocation, new epoch.
        try harness.finish(JobID(1), outcome: .lost)
        let restart = Plan(basedOn: harness.state.index, placements: [Placement(task: TaskRef(job: JobID(1), group: 0, index: 0), node: NodeID(1),
                                                                                devices: [.whole(gpu: 0)], cpuMillis: 1000, memoryMiB: 4096, gang: false)])
        try harness.state.apply(.commit(PlanVerifier().verify(restart, against: harness.state), at: .zero))
        let verified = PlanVerifier().verify(plan, against: harness.state)
        #expect(verified.preemptions.isEmpty)
        #expect(verified.placements.isEmpty, "without its preemption the placement no longer fits")
        #expect(verified.rejected.first?.reason == .capacity(.gpuBusy(0)))
    }

    @Test func forgedPlansAreRefused() throws {
        let state = ClusterState.make(nodes: [Node.make(1).gpus(1).build()], jobs: [Job.make(1).gpus(1).build()])
        func place(_ job: UInt64, _ node: UInt64, _ gpu: Int, index: Int = 0) -> Placement {
            Placement(task: TaskRef(job: JobID(job), group: 0, index: index), node: NodeID(node), devices: [.whole(gpu: gpu)], cpuMillis: 0, memoryMiB: 0, gang: false)
        }
        let forged: [(Placement, PlacementRejection)] = [
            (place(9, 1, 0), .unknownJob), (place(1, 9, 0), .unknownNode), (place(1, 1, 5), .capacity(.unknownGPU(5))),
            (place(1, 1, 0, index: 3), .jobNotWaiting),
        ]
        for (placement, expected) in forged {
            #expect(PlanVerifier().verify(Plan(basedOn: 0, placements: [placement]), against: state).rejected.map(\.reason) == [expected])
        }
        let twice = PlanVerifier().verify(Plan(basedOn: 0, placements: [place(1, 1, 0), place(1, 1, 0)]), against: state)
        #expect(twice.rejected.map(\.reason) == [.duplicateTask])
    }
}
