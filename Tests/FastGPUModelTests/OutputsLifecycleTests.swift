import FastGPUModel
import FastGPUScheduler
import FastGPUTestSupport
import Testing

/// A job with outputs: its GPUs go back when its process exits, it waits in `uploading` for its
/// agent's upload, and ends as its tasks did, or fails with `output_upload_failed` and can try
/// the upload again.
@Suite struct OutputsLifecycleTests {
    func started(_ outputs: [OutputWhen], tasks: Int = 1, gang: Bool = false) throws -> ClusterState {
        var job = Job.make(1).gpus(1).tasks(tasks, gang: gang).build()
        job.outputs = outputs
        var state = ClusterState.make(nodes: [Node.make(1).gpus(4).build()], jobs: [job])
        let placements = (0..<tasks).map { index in
            Placement(task: TaskRef(job: JobID(1), group: 0, index: index), node: NodeID(1), devices: [.whole(gpu: index)], cpuMillis: 1000, memoryMiB: 4096, gang: gang)
        }
        let verified = PlanVerifier().verify(Plan(basedOn: state.index, placements: placements, preemptions: []), against: state)
        try state.apply(.commit(verified, at: .seconds(0)))
        return state
    }

    @Test func theGPUsAreFreeWhileTheOutputsUploadAndTheJobEndsOnceTheyAreIn() throws {
        var state = try started([.always])
        let allocation = try #require(state.allocations.keys.first)
        let events = try state.apply(.endAllocation(allocation, .succeeded, at: .seconds(60)))
        #expect(events.contains(.uploading(JobID(1))))
        let job = try #require(state.jobs[JobID(1)])
        #expect(job.state == .uploading && job.finishedAt == nil && job.pendingUploads == [allocation])
        #expect(state.node(NodeID(1))?.freeWholeGPUs == 4, "upload time is not GPU time")
        #expect(!job.isWaiting && job.unplacedTasks.isEmpty && state.waiting.isEmpty, "an uploading job is not placed again")
        #expect(state.awaitingUploads == [JobID(1)] && ClusterInvariants.violations(in: state).isEmpty)

        try state.apply(.settleUpload(JobID(1), allocation, succeeded: true, at: .seconds(75)))
        #expect(state.jobs[JobID(1)]?.state == .succeeded)
        #expect(state.jobs[JobID(1)]?.finishedAt == .seconds(75))
        #expect(state.jobs[JobID(1)]?.outputUploadFailed == false)
        #expect(state.awaitingUploads.isEmpty && ClusterInvariants.violations(in: state).isEmpty)
    }

    @Test func aFailedUploadFailsTheJobAndARetryCanStillSucceed() throws {
        var state = try started([.always])
        let allocation = try #require(state.allocations.keys.first)
        try state.apply(.endAllocation(allocation, .succeeded, at: .seconds(60)))
        let failed = try state.apply(.settleUpload(JobID(1), allocation, succeeded: false, error: "connection refused", at: .seconds(61)))
        #expect(failed == [.outputsUploaded(JobID(1), allocation: allocation, succeeded: false, error: "connection refused")])
        #expect(state.jobs[JobID(1)]?.state == .failed)
        #expect(state.jobs[JobID(1)]?.outputUploadFailed == true)

        try state.apply(.retryUploads(JobID(1)))
        #expect(state.awaitingUploads == [JobID(1)], "a retry puts it back where the agents look")
        #expect(state.jobs[JobID(1)]?.state == .uploading && state.jobs[JobID(1)]?.finishedAt == nil)
        #expect(state.waiting.isEmpty)
        try state.apply(.settleUpload(JobID(1), allocation, succeeded: true, at: .seconds(90)))
        #expect(state.jobs[JobID(1)]?.state == .succeeded, "it ends as its process did")
        // Settled once: a late second report is refused, and nothing else may be retried.
        #expect(throws: ClusterChangeError.self) { try state.apply(.settleUpload(JobID(1), allocation, succeeded: true, at: .seconds(91))) }
        #expect(throws: ClusterChangeError.self) { try state.apply(.retryUploads(JobID(1))) }
    }

    @Test(arguments: [
        // when, how the process ended, whether the outputs are uploaded, the job's end.
        (OutputWhen.always, AllocationOutcome.failed(exitCode: 2), true, JobState.failed),
        (.success, .failed(exitCode: 2), false, .failed),
        (.failure, .failed(exitCode: 2), true, .failed),
        (.failure, .succeeded, false, .succeeded),
        (.success, .succeeded, true, .succeeded),
    ])
    func outputsFollowTheirWhen(when: OutputWhen, outcome: AllocationOutcome, uploads: Bool, end: JobState) throws {
        var state = try started([when])
        let allocation = try #require(state.allocations.keys.first)
        try state.apply(.endAllocation(allocation, outcome, at: .seconds(10)))
        #expect(state.jobs[JobID(1)]?.state == (uploads ? .uploading : end))
        if uploads { try state.apply(.settleUpload(JobID(1), allocation, succeeded: true, at: .seconds(20))) }
        #expect(state.jobs[JobID(1)]?.state == end)
    }

    @Test func aLostAllocationUploadsNothing() throws {
        var state = try started([.always])
        let allocation = try #require(state.allocations.keys.first)
        try state.apply(.loseAllocation(allocation, at: .seconds(5), cause: .nodeDown, retry: RetryPolicy()))
        #expect(state.jobs[JobID(1)]?.pendingUploads.isEmpty == true)
        #expect(state.jobs[JobID(1)]?.state == .pending, "requeued: its next run uploads")
    }

    @Test func aGangThatFailsUploadsWhatItsFailedMemberLeftAndStopsTheOthers() throws {
        var state = try started([.failure], tasks: 2, gang: true)
        let byTask = Dictionary(uniqueKeysWithValues: state.allocations.values.map { ($0.task.index, $0.id) })
        try state.apply(.endAllocation(byTask[1]!, .failed(exitCode: 1), at: .seconds(30)))
        let job = try #require(state.jobs[JobID(1)])
        #expect(job.state == .uploading && job.pendingUploads == [byTask[1]!], "the partner was stopped, not failed: nothing of it to upload")
        #expect(state.allocations.isEmpty && state.node(NodeID(1))?.freeWholeGPUs == 4)
        try state.apply(.settleUpload(JobID(1), byTask[1]!, succeeded: true, at: .seconds(31)))
        #expect(state.jobs[JobID(1)]?.state == .failed && state.jobs[JobID(1)]?.outputUploadFailed == false)
    }

    @Test func aJobCancelledWhileUploadingStaysCancelled() throws {
        var state = try started([.always])
        let allocation = try #require(state.allocations.keys.first)
        try state.apply(.endAllocation(allocation, .succeeded, at: .seconds(10)))
        try state.apply(.cancel(JobID(1), at: .seconds(11)))
        #expect(state.jobs[JobID(1)]?.state == .cancelled)
        try state.apply(.settleUpload(JobID(1), allocation, succeeded: true, at: .seconds(12)))
        #expect(state.jobs[JobID(1)]?.state == .cancelled)
    }
}
