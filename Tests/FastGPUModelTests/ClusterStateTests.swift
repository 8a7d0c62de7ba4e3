import FastGPUModel
import FastGPUScheduler
import FastGPUTestSupport
import Testing

@Suite struct ClusterStateTests {
    func commit(_ state: inout ClusterState, _ placements: [Placement], preemptions: [Preemption] = [], at second: Int64 = 0) throws {
        let plan = Plan(basedOn: state.index, placements: placements, preemptions: preemptions)
        let verified = PlanVerifier().verify(plan, against: state)
        #expect(verified.rejected.isEmpty, "\(verified.rejected)")
        try state.apply(.commit(verified, at: .seconds(second)))
    }

    func place(_ job: UInt64, group: Int = 0, index: Int = 0, node: UInt64, _ devices: [DeviceAssignment], gang: Bool = false) -> Placement {
        Placement(task: TaskRef(job: JobID(job), group: group, index: index), node: NodeID(node), devices: devices, cpuMillis: 1000, memoryMiB: 4096, gang: gang)
    }

    @Test func commitCreatesAllocationsWithTheCommitEpochAndTakesDevices() throws {
        var state = ClusterState.make(nodes: [Node.make(1).gpus(8).build()], jobs: [Job.make(1).gpus(2).build()])
        let before = state.index
        try commit(&state, [place(1, node: 1, [.whole(gpu: 0), .whole(gpu: 1)])])
        let allocation = try #require(state.allocations.values.first)
        #expect(allocation.epoch == Epoch(before + 1))
        #expect(state.index == before + 1)
        #expect(state.node(NodeID(1))?.freeWholeGPUs == 6)
        #expect(state.jobs[JobID(1)]?.state == .running)
        #expect(state.waiting.isEmpty)
    }

    @Test func endingReleasesExactlyWhatWasTaken() throws {
        var state = ClusterState.make(nodes: [Node.make(1).gpus(2).build()], jobs: [Job.make(1).share(milli: 300, memoryMiB: 1024).build()])
        let pristine = try #require(state.node(NodeID(1)))
        try commit(&state, [place(1, node: 1, [.share(gpu: 0, milli: 300, memoryMiB: 1024)])])
        #expect(state.node(NodeID(1))?.gpus[0].freeMilli == 700)
        try state.apply(.endAllocation(state.allocations.keys.first!, .succeeded, at: .seconds(10)))
        #expect(state.node(NodeID(1)) == pristine)
        #expect(state.jobs[JobID(1)]?.state == .succeeded)
        // 300 milli-GPU × 10,000 ms of attained service.
        #expect(state.jobs[JobID(1)]?.attainedMilliGPUMilliseconds == 3_000_000)
    }

    @Test func aLostGangMemberRequeuesTheWholeGang() throws {
        var state = ClusterState.make(nodes: [Node.make(1).gpus(8).build(), Node.make(2).gpus(8).build()],
                                      jobs: [Job.make(1).gpus(8).tasks(2, gang: true).build()])
        try commit(&state, [place(1, index: 0, node: 1, (0..<8).map { .whole(gpu: $0) }, gang: true),
                            place(1, index: 1, node: 2, (0..<8).map { .whole(gpu: $0) }, gang: true)])
        let ended = try state.apply(.setNodeState(NodeID(1), .down, at: .seconds(5))).endedAllocations
        #expect(ended.count == 2)
        #expect(state.allocations.isEmpty)
        #expect(state.jobs[JobID(1)]?.state == .pending)
        #expect(state.waiting == [JobID(1)])
        #expect(state.node(NodeID(2))?.freeWholeGPUs == 8)
        #expect(state.jobs[JobID(1)]?.attempts == 2)
    }

    @Test func aGangRunsAgainWholeWhenAMemberIsLostAfterAnotherFinished() throws {
        var state = ClusterState.make(nodes: [Node.make(1).gpus(8).build()], jobs: [Job.make(1).gpus(1).tasks(3, gang: true).build()])
        try commit(&state, (0..<3).map { place(1, index: $0, node: 1, [.whole(gpu: $0)], gang: true) })
        let byTask = Dictionary(uniqueKeysWithValues: state.allocations.values.map { ($0.task.index, $0.id) })
        try state.apply(.endAllocation(byTask[0]!, .succeeded, at: .seconds(5)))
        #expect(state.jobs[JobID(1)]?.state == .running)
        let ended = try state.apply(.endAllocation(byTask[1]!, .lost, at: .seconds(6))).endedAllocations
        #expect(Set(ended.map(\.task.index)) == [1, 2])
        let job = try #require(state.jobs[JobID(1)])
        #expect(job.state == .pending && job.completedTasks.isEmpty)
        #expect(job.unplacedTasks.count == 3, "the whole gang runs again")
    }

    @Test func aFailedTaskFailsTheJobAndStopsItsOtherTasks() throws {
        var state = ClusterState.make(nodes: [Node.make(1).gpus(8).build()], jobs: [Job.make(1).gpus(1).tasks(3).build()])
        try commit(&state, (0..<3).map { place(1, index: $0, node: 1, [.whole(gpu: $0)]) })
        let first = state.allocations.values.min { $0.id < $1.id }!
        let ended = try state.apply(.endAllocation(first.id, .failed(exitCode: 3), at: .seconds(1))).endedAllocations
        #expect(ended.count == 3)
        #expect(state.jobs[JobID(1)]?.state == .failed)
        #expect(state.waiting.isEmpty)
        #expect(state.node(NodeID(1))?.freeWholeGPUs == 8)
    }

    @Test func aPlainGroupRunsItsTasksIndependently() throws {
        var state = ClusterState.make(nodes: [Node.make(1).gpus(1).build()], jobs: [Job.make(1).gpus(1).tasks(2).build()])
        try commit(&state, [place(1, index: 0, node: 1, [.whole(gpu: 0)])])
        #expect(state.waiting == [JobID(1)], "the second task still waits")
        try state.apply(.endAllocation(state.allocations.keys.first!, .succeeded, at: .seconds(1)))
        #expect(state.jobs[JobID(1)]?.unplacedTasks == [TaskRef(job: JobID(1), group: 0, index: 1)])
        try commit(&state, [place(1, index: 1, node: 1, [.whole(gpu: 0)])])
        try state.apply(.endAllocation(state.allocations.keys.first!, .succeeded, at: .seconds(2)))
        #expect(state.jobs[JobID(1)]?.state == .succeeded)
    }

    @Test func cancelStopsEverythingAndTheJobLeavesTheQueue() throws {
        var state = ClusterState.make(nodes: [Node.make(1).gpus(2).build()], jobs: [Job.make(1).gpus(1).tasks(2).build()])
        try commit(&state, [place(1, index: 0, node: 1, [.whole(gpu: 0)])])
        let ended = try state.apply(.cancel(JobID(1), at: .seconds(3))).endedAllocations
        #expect(ended.map(\.task.index) == [0])
        #expect(state.jobs[JobID(1)]?.state == .cancelled)
        #expect(state.waiting.isEmpty && state.allocations.isEmpty)
    }

    @Test func aPlanVerifiedAgainstAnotherIndexIsRefused() throws {
        var state = ClusterState.make(nodes: [Node.make(1).gpus(1).build()], jobs: [Job.make(1).gpus(1).build()])
        let verified = PlanVerifier().verify(Plan(basedOn: state.index, placements: [place(1, node: 1, [.whole(gpu: 0)])]), against: state)
        try state.apply(.setNodeState(NodeID(1), .cordoned, at: .zero))
        #expect(throws: ClusterChangeError.stalePlan(verifiedAt: verified.verifiedAt, current: state.index)) {
            try state.apply(.commit(verified, at: .zero))
        }
    }

    @Test func aGangWithAMissingTaskIsRefusedWhole() throws {
        var state = ClusterState.make(nodes: [Node.make(1).gpus(8).build()], jobs: [Job.make(1).gpus(4).tasks(2, gang: true).build()])
        let plan = Plan(basedOn: state.index, placements: [place(1, index: 0, node: 1, (0..<4).map { .whole(gpu: $0) }, gang: true)])
        let verified = PlanVerifier().verify(plan, against: state)
        #expect(verified.placements.isEmpty)
        #expect(verified.rejected.map(\.reason) == [.gangIncomplete])
        let untouched = state
        try state.apply(.commit(verified, at: .zero))
        #expect(state.allocations.isEmpty && state.nodes == untouched.nodes)
    }

    struct BadJob: Sendable, CustomTestStringConvertible {
        var job: Job
        var why: String
        var testDescription: String { why }
    }

    @Test(arguments: [
        BadJob(job: Job(id: JobID(1), project: ProjectID(1), taskGroups: [], submitTime: .zero), why: "no task group"),
        BadJob(job: Job.make(1).gpus(0).build(), why: "zero GPUs"),
        BadJob(job: Job.make(1).tasks(0).build(), why: "zero tasks"),
        BadJob(job: Job.make(1).share(milli: 0).build(), why: "empty share"),
        BadJob(job: Job.make(1).share(milli: 1000).build(), why: "a share that is a whole GPU"),
        BadJob(job: Job.make(1).cpu(millis: -1).build(), why: "negative CPU"),
        BadJob(job: Job.make(1).limit(seconds: 0).build(), why: "zero limit"),
    ])
    func invalidJobsAreRefusedAndChangeNothing(_ bad: BadJob) {
        var state = ClusterState.make(nodes: [Node.make(1).gpus(1).build()])
        let index = state.index
        #expect(throws: ClusterChangeError.self) { try state.apply(.submit(bad.job)) }
        #expect(state.jobs.isEmpty && state.index == index)
    }

    @Test func duplicatesAreRefused() throws {
        var state = ClusterState.make(nodes: [Node.make(1).gpus(1).build()], jobs: [Job.make(1).build()])
        #expect(throws: ClusterChangeError.duplicateJob(JobID(1))) { try state.apply(.submit(Job.make(1).build())) }
        #expect(throws: ClusterChangeError.duplicateNode(NodeID(1))) { try state.apply(.registerNode(Node.make(1).build())) }
    }

    @Test func usageDecays() throws {
        var state = ClusterState.make(nodes: [Node.make(1).gpus(1).build()], jobs: [Job.make(1).gpus(1).project(7).build()])
        try commit(&state, [place(1, node: 1, [.whole(gpu: 0)])])
        try state.apply(.endAllocation(state.allocations.keys.first!, .succeeded, at: .seconds(100)))
        // 1000 milli-GPU × 100,000 ms.
        #expect(state.projects[ProjectID(7)]?.usage.milliGPUMilliseconds == 100_000_000)
        try state.apply(.decayUsage(keepPermille: 500))
        #expect(state.projects[ProjectID(7)]?.usage.milliGPUMilliseconds == 50_000_000)
    }

    @Test func aSnapshotThatDoesNotAddUpIsRefused() throws {
        var state = ClusterState.make(nodes: [Node.make(1).gpus(1).build()], jobs: [Job.make(1).gpus(1).build(), Job.make(2).gpus(1).build()])
        try commit(&state, [place(1, node: 1, [.whole(gpu: 0)])])
        var snapshot = state.snapshot
        // A second allocation claiming the same GPU, as a damaged store might hold.
        var forged = snapshot.allocations[0]
        forged.id = AllocationID(snapshot.nextAllocationID)
        forged.task = TaskRef(job: JobID(2), group: 0, index: 0)
        snapshot.allocations.append(forged)
        snapshot.nextAllocationID += 1
        #expect(throws: ClusterChangeError.placementRefused(forged.task, "gpu0 is in use")) { try ClusterState(restoring: snapshot) }
        // The honest snapshot restores to the same state.
        let restored = try ClusterState(restoring: state.snapshot)
        #expect(restored.snapshot == state.snapshot && restored.nodes == state.nodes && restored.index == state.index)
    }

    @Test func typedIdentifiersPrintAndParse() {
        #expect(JobID(42).description == "job-42")
        #expect(JobID(parsing: "job-42") == JobID(42))
        #expect(JobID(parsing: "42") == JobID(42))
        #expect(JobID(parsing: "node-42") == nil)
        #expect(NodeID(parsing: "node-7") == NodeID(7))
    }
}
