import FastGPUModel
import FastGPUScheduler
import FastGPUTestSupport
import Testing

/// The classic EASY scenario on one 8-GPU node: job 1 holds 4 GPUs until t = 1000 s; job 2 (head)
/// needs 6 and is blocked; job 3 (2 GPUs, 500 s) ends before job 2 can start, job 4 (2 GPUs,
/// 5000 s) would delay it.
@Suite struct BackfillTests {
    func scenario(_ mode: BackfillMode, extraNode: Bool = false) throws -> SchedulerHarness {
        var nodes = [Node.make(1).gpus(8).label("pool", "big").build()]
        if extraNode { nodes.append(Node.make(2).gpus(4).build()) }
        var harness = SchedulerHarness(state: .make(nodes: nodes, jobs: [Job.make(1).gpus(4).selector("pool", "big").limit(seconds: 1000).build()]),
                                       configuration: SchedulerConfiguration(policy: FIFOPolicy(), backfill: mode, preemption: false))
        try harness.round()
        try harness.submit(Job.make(2).gpus(6).estimate(seconds: 100).submitted(atSecond: 1).build())
        try harness.submit(Job.make(3).gpus(2).estimate(seconds: 500).submitted(atSecond: 2).build())
        try harness.submit(Job.make(4).gpus(2).estimate(seconds: 5000).submitted(atSecond: 3).build())
        try harness.round()
        return harness
    }

    func started(_ harness: SchedulerHarness) -> Set<UInt64> {
        Set(harness.state.allocations.values.map(\.task.job.rawValue))
    }

    @Test func easyLetsAShortJobPassButNotALongOne() throws {
        let harness = try scenario(.easy)
        #expect(started(harness) == [1, 3])
        let reservation = try #require(harness.lastPlan?.reservation)
        #expect(reservation.job == JobID(2))
        #expect(reservation.start == .seconds(1000))
        #expect(reservation.nodes == [NodeID(1)])
        guard case .notNow(_, let fit, _, let start) = try #require(harness.reason(for: JobID(2))) else { Issue.record("job 2 not pending"); return }
        #expect(start == .seconds(1000))
        // When job 2 was decided 4 GPUs were free; job 3 then took 2. Its reason tells what the
        // plan leaves, not what it saw.
        #expect(fit == FreeFit(node: NodeID(1), freeGPUs: 2, gpuModel: "H100-80GB"))
        // Job 4 would fit in the 2 GPUs left, but it would still run when job 2 starts there.
        #expect(harness.reason(for: JobID(4)) == .notNow(shortfall: .reservedFor(JobID(2)),
                                                        largestFreeFit: FreeFit(node: NodeID(1), freeGPUs: 2, gpuModel: "H100-80GB"),
                                                        jobsAhead: 1, estimatedStart: nil))
    }

    @Test func easyLetsALongJobRunOnANodeTheReservationDoesNotNeed() throws {
        let harness = try scenario(.easy, extraNode: true)
        #expect(started(harness) == [1, 3, 4])
        #expect(harness.placements(of: JobID(4)).map(\.node) == [NodeID(2)])
    }

    @Test func strictLetsNothingPass() throws {
        let harness = try scenario(.strict)
        #expect(started(harness) == [1])
        #expect(harness.reason(for: JobID(3)) == .notNow(shortfall: .reservedFor(JobID(2)), largestFreeFit: nil, jobsAhead: 1, estimatedStart: nil))
    }

    @Test func greedyLetsEverythingThatFitsPass() throws {
        let harness = try scenario(.greedy)
        #expect(started(harness) == [1, 3, 4])  // 3 and 4 take the last 4 GPUs; job 2 may wait forever
        #expect(harness.lastPlan?.reservation == nil)
    }

    @Test func workWithoutAnEndGivesNoReservationTime() throws {
        var harness = SchedulerHarness(state: .make(nodes: [Node.make(1).gpus(8).build()], jobs: [Job.make(1).gpus(6).build()]),
                                       configuration: SchedulerConfiguration(policy: FIFOPolicy(), preemption: false))
        try harness.round()
        try harness.submit(Job.make(2).gpus(4).submitted(atSecond: 1).build())
        try harness.round()
        #expect(harness.lastPlan?.reservation?.start == .distantFuture)
        guard case .notNow(.gpus(perTask: 4, model: nil), let fit, 0, nil) = try #require(harness.reason(for: JobID(2))) else {
            Issue.record("unexpected reason \(String(describing: harness.reason(for: JobID(2))))"); return
        }
        #expect(fit == FreeFit(node: NodeID(1), freeGPUs: 2, gpuModel: "H100-80GB"))
    }

    @Test func workWithoutAnEstimateEndsAfterTheDefaultRuntime() throws {
        // With a default run time of 1000 s, job 1 (no estimate, started at 0) is planned to end
        // at 1000 s, in this round as in the round that placed it.
        var harness = SchedulerHarness(state: .make(nodes: [Node.make(1).gpus(8).build()], jobs: [Job.make(1).gpus(6).build()]),
                                       configuration: SchedulerConfiguration(policy: FIFOPolicy(), preemption: false, defaultRuntime: .seconds(1000)))
        try harness.round()
        harness.now = .seconds(10)
        try harness.submit(Job.make(2).gpus(4).submitted(atSecond: 10).build())
        try harness.round()
        #expect(harness.lastPlan?.reservation == Reservation(job: JobID(2), start: .seconds(1000), nodes: [NodeID(1)]))
    }
}
