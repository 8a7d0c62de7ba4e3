import Foundation
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

    @Test func aContainerPullsItsImageBeforeItStarts() throws {
        var state = ClusterState.make(nodes: [Node.make(1).gpus(1).build()])
        let job = Job.make(1).gpus(1).build()
        _ = try state.apply(.submit(job, launch: JobLaunch(command: ["python", "train.py"], image: "pytorch/pytorch:2.3.0")))
        _ = try state.apply(.commit(plan(state, [place(1, [.whole(gpu: 0)])]), at: .seconds(10)))
        let allocation = try #require(state.allocations.values.first)
        let pulling = try state.apply(.allocationPulling(allocation.id, epoch: allocation.epoch, at: .seconds(11)))
        #expect(pulling == [.pulling(allocation.id, task: allocation.task, node: NodeID(1), image: "pytorch/pytorch:2.3.0")])
        #expect(try state.apply(.allocationPulling(allocation.id, epoch: allocation.epoch, at: .seconds(12))).isEmpty, "once")
        #expect(state.allocations[allocation.id]?.pullingSince == .seconds(11))
        #expect(state.allocations[allocation.id]?.runningSince == nil, "pulling is not running")
        _ = try state.apply(.allocationStarted(allocation.id, epoch: allocation.epoch, at: .seconds(40)))
        #expect(state.allocations[allocation.id]?.runningSince == .seconds(40))
        let encoded = try JSONEncoder().encode(pulling[0])
        #expect(try JSONDecoder().decode(ClusterEvent.self, from: encoded) == pulling[0])
    }

    @Test func aHostProcessCannotAskForAnIsolatedNetwork() {
        var state = ClusterState.make(nodes: [Node.make(1).gpus(1).build()])
        #expect(throws: ClusterChangeError.self) {
            try state.apply(.submit(Job.make(1).gpus(1).build(), launch: JobLaunch(command: ["true"], network: .isolated)))
        }
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
        #expect(try state.apply(.allocationPulling(allocation.id, epoch: allocation.epoch, at: .seconds(14))).isEmpty, "no pulling after the start")
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

/// Retries and the attempt history are the reducer's: the control plane says only why a task
/// was lost and with which retry policy.
@Suite struct AttemptTests {
    func running(_ maxAttempts: Int, tasks: Int = 1) throws -> ClusterState {
        var state = ClusterState.make(nodes: [Node.make(1).gpus(4).build()])
        try state.apply(.submit(Job.make(1).gpus(1).tasks(tasks).build(), launch: JobLaunch(command: ["train"], maxAttempts: maxAttempts)))
        let placements = (0..<tasks).map { Placement(task: TaskRef(job: JobID(1), group: 0, index: $0), node: NodeID(1), devices: [.whole(gpu: $0)],
                                                     cpuMillis: 0, memoryMiB: 0, gang: false) }
        try state.apply(.commit(PlanVerifier().verify(Plan(basedOn: state.index, placements: placements), against: state), at: .seconds(1)))
        return state
    }

    @Test func aLostTaskIsRequeuedAfterItsBackoffAndRemembered() throws {
        var state = try running(3)
        let allocation = try #require(state.allocations.values.first)
        let events = try state.apply(.loseAllocation(allocation.id, at: .seconds(5), cause: .nodeDown, retry: RetryPolicy(base: .seconds(10), cap: .seconds(300))))
        #expect(events == [.ended(allocation, .lost, cause: .nodeDown), .requeued(JobID(1), notBefore: .seconds(15))])
        let job = try #require(state.jobs[JobID(1)])
        #expect(job.state == .pending && job.notBefore == .seconds(15))
        #expect(job.history == [Attempt(allocation: allocation, outcome: .lost, cause: .nodeDown, endedAt: .seconds(5))])
        #expect(state.launches[JobID(1)]?.command == ["train"])
    }

    @Test func theLastAttemptLostFailsTheJob() throws {
        var state = try running(1)
        let allocation = try #require(state.allocations.values.first)
        let events = try state.apply(.loseAllocation(allocation.id, at: .seconds(5), cause: .agentLostIt, retry: RetryPolicy()))
        #expect(events == [.ended(allocation, .failed(exitCode: -1), cause: .outOfAttempts)])
        #expect(state.jobs[JobID(1)]?.state == .failed)
        #expect(state.jobs[JobID(1)]?.finishedAt == .seconds(5))
    }

    @Test func aJobWithoutALaunchRetriesForeverAndABadLaunchIsRefused() throws {
        var state = ClusterState.make(nodes: [Node.make(1).gpus(1).build()], jobs: [Job.make(1).gpus(1).build()])
        for round in 0..<5 {
            try state.apply(.commit(PlanVerifier().verify(Plan(basedOn: state.index, placements: [
                Placement(task: TaskRef(job: JobID(1), group: 0, index: 0), node: NodeID(1), devices: [.whole(gpu: 0)], cpuMillis: 0, memoryMiB: 0, gang: false)]),
                against: state), at: .seconds(Int64(round))))
            let allocation = try #require(state.allocations.values.first)
            try state.apply(.loseAllocation(allocation.id, at: .seconds(Int64(round)), cause: .nodeDown, retry: .immediate))
        }
        #expect(state.jobs[JobID(1)]?.state == .pending, "the simulator's jobs have no attempt limit")
        #expect(state.jobs[JobID(1)]?.history.count == 5)
        #expect(throws: ClusterChangeError.invalidJob(JobID(2), "a job needs a command")) {
            try state.apply(.submit(Job.make(2).gpus(1).build(), launch: JobLaunch(command: [])))
        }
        #expect(state.jobs[JobID(2)] == nil)
    }

    @Test func backoffDoublesUpToItsCap() {
        let policy = RetryPolicy(base: .seconds(10), cap: .seconds(300))
        #expect([1, 2, 4, 40].map(policy.backoff(attempt:)) == [.seconds(10), .seconds(20), .seconds(80), .seconds(300)])
        #expect(RetryPolicy.immediate.backoff(attempt: 3) == .zero)
    }
}

@Suite struct HoldingTests {
    @Test func heldWorkKeepsItsDevicesForAPassAndNothingElse() throws {
        var state = ClusterState.make(nodes: [Node.make(1).gpus(2).build()], jobs: [Job.make(1).gpus(1).build()])
        let placement = Placement(task: TaskRef(job: JobID(1), group: 0, index: 0), node: NodeID(1), devices: [.whole(gpu: 0)], cpuMillis: 1000, memoryMiB: 1024, gang: false)
        try state.apply(.commit(PlanVerifier().verify(Plan(basedOn: state.index, placements: [placement]), against: state), at: .seconds(1)))
        let allocation = try #require(state.allocations.values.first)
        #expect(state.holding([allocation]).node(NodeID(1)) == state.node(NodeID(1)), "a live allocation is held already")
        try state.apply(.cancel(JobID(1), at: .seconds(2)))
        #expect(state.node(NodeID(1))?.freeWholeGPUs == 2)
        let held = state.holding([allocation])
        #expect(held.node(NodeID(1))?.freeWholeGPUs == 1)
        #expect(held.node(NodeID(1))?.allocatedCPUMillis == 1000)
        #expect(held.allocations.isEmpty && held.index == state.index, "nothing to preempt or wait for, and the same state index")
        #expect(state.node(NodeID(1))?.freeWholeGPUs == 2, "the state itself is untouched")
    }
}
