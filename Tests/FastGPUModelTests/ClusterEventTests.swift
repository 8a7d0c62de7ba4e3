import FastGPUModel
import FastGPUScheduler
import FastGPUTestSupport
import Testing

/// The reducer says what every change did, as values.
@Suite struct ClusterEventTests {
    func plan(_ state: ClusterState, _ placements: [Placement], preemptions: [Preemption] = []) -> VerifiedPlan {
        PlanVerifier().verify(Plan(basedOn: state.index, placements: placements, preemptions: preemptions), against: state)
    }

    func place(_ job: UInt64, node: UInt64 = 1, _ devices: [DeviceAssignment]) -> Placement {
        Placement(task: TaskRef(job: JobID(job), group: 0, index: 0), node: NodeID(node), devices: devices, cpuMillis: 0, memoryMiB: 0, gang: false)
    }

    @Test func aJobsLifeIsItsEvents() throws {
        var state = ClusterState.make(nodes: [Node.make(1).gpus(1).build()])
        let job = Job.make(1).gpus(1).build()
        #expect(try state.apply(.submit(job)) == [.submitted(JobID(1), project: job.project)])
        let placed = try state.apply(.commit(plan(state, [place(1, [.whole(gpu: 0)])]), at: .seconds(10)))
        let allocation = try #require(state.allocations.values.first)
        #expect(placed == [.placed(allocation)])
        #expect(allocation.runningSince == nil, "placed is not started")

        let started = try state.apply(.allocationStarted(allocation.id, epoch: allocation.epoch, at: .seconds(13)))
        #expect(started == [.started(allocation.id, task: allocation.task, node: NodeID(1))])
        #expect(state.allocations[allocation.id]?.runningSince == .seconds(13))
        #expect(try state.apply(.allocationStarted(allocation.id, epoch: allocation.epoch, at: .seconds(14))).isEmpty, "a repeated report says nothing new")
        #expect(state.allocations[allocation.id]?.runningSince == .seconds(13))
        #expect(throws: ClusterChangeError.staleEpoch(allocation.id, Epoch(99))) {
            try state.apply(.allocationStarted(allocation.id, epoch: Epoch(99), at: .seconds(15)))
        }

        let ended = try state.apply(.endAllocation(allocation.id, .succeeded, at: .seconds(20), cause: .exited))
        guard case .ended(let last, .succeeded, cause: .exited) = ended.first else {
            Issue.record("ended: \(ended)")
            return
        }
        #expect(last.runningSince == .seconds(13), "the ended allocation carries its actual start, for metering")
        #expect(state.jobs[JobID(1)]?.finishedAt == .seconds(20))
    }

    @Test func aPreemptionSaysForWhomAndAGangSaysWhoTookItsPartnersDown() throws {
        var state = ClusterState.make(nodes: [Node.make(1).gpus(2).build()],
                                      jobs: [Job.make(1).gpus(1).priority(.low).build(), Job.make(2).gpus(2).priority(.high).build()])
        try state.apply(.commit(plan(state, [place(1, [.whole(gpu: 0)])]), at: .seconds(1)))
        let victim = try #require(state.allocations.values.first)
        let events = try state.apply(.commit(plan(state, [place(2, [.whole(gpu: 0), .whole(gpu: 1)])],
                                                  preemptions: [Preemption(allocation: victim.id, epoch: victim.epoch, victim: victim.task, beneficiary: JobID(2))]),
                                             at: .seconds(5)))
        #expect(events.first == .ended(victim, .preempted, cause: .preempted(for: JobID(2))))
        #expect(events.dropFirst().map(\.kind) == ["placed"])
        #expect(events.map(\.kind) == ["preempted", "placed"])

        var gang = ClusterState.make(nodes: [Node.make(1).gpus(2).build()], jobs: [Job.make(3).gpus(1).tasks(2, gang: true).build()])
        let placements = (0..<2).map { Placement(task: TaskRef(job: JobID(3), group: 0, index: $0), node: NodeID(1), devices: [.whole(gpu: $0)],
                                                 cpuMillis: 0, memoryMiB: 0, gang: true) }
        try gang.apply(.commit(plan(gang, placements), at: .seconds(1)))
        let first = try #require(gang.allocations.values.min { $0.id < $1.id })
        let lost = try gang.apply(.endAllocation(first.id, .lost, at: .seconds(2), cause: .agentLostIt))
        #expect(lost.count == 2)
        #expect(lost.endedAllocations.map(\.id).first == first.id)
        guard case .ended(_, .lost, cause: .partnerEnded(partner: first.id)) = lost.last else {
            Issue.record("the partner ends because of the first: \(lost)")
            return
        }
    }

    @Test func nodesSayWhatChanged() throws {
        var state = ClusterState()
        let node = Node.make(1).gpus(2).build()
        #expect(try state.apply(.registerNode(node)) == [.nodeRegistered(NodeID(1), name: node.name, gpus: 2, again: false)])
        #expect(try state.apply(.setNodeState(NodeID(1), .cordoned, at: .seconds(1))) == [.nodeStateChanged(NodeID(1), from: .ready, to: .cordoned)])
        #expect(try state.apply(.setNodeState(NodeID(1), .cordoned, at: .seconds(2))).isEmpty, "no change, no event")
        #expect(try state.apply(.setGPUHealth(NodeID(1), gpu: 1, .unhealthy(reason: "xid 79"))) == [.gpuHealthChanged(NodeID(1), gpu: 1, .unhealthy(reason: "xid 79"))])
        #expect(ClusterEvent.nodeStateChanged(NodeID(1), from: .ready, to: .down).kind == "node-down")
    }
}
