import FastGPUModel
import FastGPUScheduler
import FastGPUTestSupport
import Testing

@Suite struct PlacementTests {
    @Test func bestFitFillsThePartlyUsedNodeFirst() throws {
        // node-1 has 4 of 8 taken; node-2 is empty. A 4-GPU job completes node-1 and leaves
        // node-2 whole for an 8-GPU job.
        var harness = SchedulerHarness(state: .make(nodes: [Node.make(1).gpus(8).build(), Node.make(2).gpus(8).build()],
                                                    jobs: [Job.make(1).gpus(4).build()]))
        let first = try harness.round()
        #expect(first.placements.count == 1)
        let firstNode = first.placements[0].node
        try harness.submit(Job.make(2).gpus(4).submitted(atSecond: 1).build())
        try harness.submit(Job.make(3).gpus(8).submitted(atSecond: 2).build())
        let second = try harness.round()
        #expect(second.placements.first { $0.task.job == JobID(2) }?.node == firstNode)
        #expect(second.placements.first { $0.task.job == JobID(3) }?.node != firstNode)
    }

    @Test func aMultiGPUTaskStaysOnOneNVLinkIsland() throws {
        // Islands of 4: gpu0 is taken, so island 0 has 3 free and island 1 has 4. A 4-GPU task
        // goes to island 1 whole rather than straddling.
        var state = ClusterState.make(nodes: [Node.make(1).gpus(8).islands(2).build()], jobs: [Job.make(1).gpus(1).build(), Job.make(2).gpus(4).submitted(atSecond: 1).build()])
        let plan = Scheduler().process(state, now: .zero)
        let devices = plan.placements.first { $0.task.job == JobID(2) }!.devices.map(\.gpuIndex)
        #expect(Set(devices.map { $0 / 4 }).count == 1, "devices \(devices) straddle islands")
        try state.apply(.commit(PlanVerifier().verify(plan, against: state), at: .zero))
        #expect(ClusterInvariants.violations(in: state).isEmpty)
    }

    @Test func sharesPackOntoTheSameGPU() throws {
        let state = ClusterState.make(nodes: [Node.make(1).gpus(2).build()],
                                      jobs: (1...3).map { Job.make(UInt64($0)).share(milli: 300, memoryMiB: 10 * 1024).submitted(atSecond: Int64($0)).build() })
        let plan = Scheduler().process(state, now: .zero)
        #expect(plan.placements.count == 3)
        #expect(Set(plan.placements.map { $0.devices[0].gpuIndex }).count == 1, "three 300m shares fit on one GPU")
    }

    @Test func sharesOfDifferentProjectsDoNotMixUnlessTheNodeIsolates() {
        let jobs = [Job.make(1).project(1).share(milli: 300).build(), Job.make(2).project(2).share(milli: 300).submitted(atSecond: 1).build()]
        let plain = Scheduler().process(.make(nodes: [Node.make(1).gpus(2).build()], jobs: jobs), now: .zero)
        #expect(Set(plain.placements.map { $0.devices[0].gpuIndex }).count == 2)
        let isolated = Scheduler().process(.make(nodes: [Node.make(1).gpus(2).crossProjectSharing().build()], jobs: jobs), now: .zero)
        #expect(Set(isolated.placements.map { $0.devices[0].gpuIndex }).count == 1)
    }

    @Test func migProfilesFollowTheSlotRules() throws {
        // One A100-40GB in MIG mode: 3g.20gb + 3g.20gb fill slots 0–7; a 1g.5gb then waits.
        var harness = SchedulerHarness(state: .make(nodes: [Node.make(1).migGPUs(1, model: "A100-40GB").build()], jobs: [
            Job.make(1).mig("3g.20gb").build(), Job.make(2).mig("3g.20gb").submitted(atSecond: 1).build(),
            Job.make(3).mig("1g.5gb").submitted(atSecond: 2).build(),
        ]))
        let verified = try harness.round()
        #expect(verified.placements.map(\.task.job) == [JobID(1), JobID(2)])
        #expect(Set(verified.placements.map { $0.devices[0] }) == [.mig(gpu: 0, profile: "3g.20gb", start: 0, slotCount: 4), .mig(gpu: 0, profile: "3g.20gb", start: 4, slotCount: 4)])
        guard case .notNow(.migSlots("1g.5gb"), _, _, _) = try #require(harness.reason(for: JobID(3))) else {
            Issue.record("expected a MIG-slot shortfall, got \(String(describing: harness.reason(for: JobID(3))))")
            return
        }
        #expect(ClusterInvariants.violations(in: harness.state).isEmpty)
    }

    @Test func aGangStartsWholeOrNotAtAll() throws {
        // Two 8-GPU nodes, one with a GPU taken: a gang of 2 × 8 cannot start, and nothing of it commits.
        var harness = SchedulerHarness(state: .make(nodes: [Node.make(1).gpus(8).build(), Node.make(2).gpus(8).build()],
                                                    jobs: [Job.make(1).gpus(1).build()]))
        try harness.round()
        try harness.submit(Job.make(2).gpus(8).tasks(2, gang: true).submitted(atSecond: 1).build())
        let verified = try harness.round()
        #expect(verified.placements.isEmpty)
        guard case .notNow(.gangNodes(tasks: 2, placeable: 1), _, _, _) = try #require(harness.reason(for: JobID(2))) else {
            Issue.record("expected a gang shortfall, got \(String(describing: harness.reason(for: JobID(2))))")
            return
        }
        try harness.finish(JobID(1))
        let third = try harness.round()
        #expect(third.placements.count == 2)
        #expect(Set(third.placements.map(\.node)).count == 2)
    }

    @Test func cpuOnlyTasksPreferNodesWithoutGPUs() {
        let state = ClusterState.make(nodes: [Node.make(1).gpus(8).build(), Node.make(2).cpu(millis: 32_000).build()],
                                      jobs: [Job.make(1).noGPU().cpu(millis: 2000).build()])
        #expect(Scheduler().process(state, now: .zero).placements.first?.node == NodeID(2))
    }

    @Test func theSameInputGivesTheSamePlanAndTheSeedBreaksTies() {
        let nodes = (1...20).map { Node.make(UInt64($0)).gpus(8).build() }
        let state = ClusterState.make(nodes: nodes, jobs: [Job.make(1).gpus(1).build()])
        let a = Scheduler(configuration: SchedulerConfiguration(seed: 1)).process(state, now: .zero)
        let b = Scheduler(configuration: SchedulerConfiguration(seed: 1)).process(state, now: .zero)
        #expect(a == b)
        let chosen = Set((1...30).map { seed in Scheduler(configuration: SchedulerConfiguration(seed: UInt64(seed))).process(state, now: .zero).placements[0].node })
        #expect(chosen.count > 1, "equal nodes are chosen by the seed, not always the first")
    }

    @Test func cordonedDrainingAndDownNodesTakeNothing() {
        let nodes = [Node.make(1).gpus(8).state(.cordoned).build(), Node.make(2).gpus(8).state(.draining).build(), Node.make(3).gpus(8).state(.down).build()]
        let plan = Scheduler().process(.make(nodes: nodes, jobs: [Job.make(1).gpus(1).build()]), now: .zero)
        #expect(plan.placements.isEmpty)
        #expect(plan.pending.first?.reason == .notNow(shortfall: .noReadyNode, largestFreeFit: nil, jobsAhead: 0, estimatedStart: nil))
    }
}
