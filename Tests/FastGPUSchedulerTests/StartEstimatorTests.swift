import FastGPUModel
import FastGPUScheduler
import FastGPUTestSupport
import Testing

@Suite struct StartEstimatorTests {
    @Test func waitingJobsStartAsRunningWorkEnds() throws {
        // One 8-GPU node. Job 1 holds it until 100 s (its limit). Job 2 (8 GPUs, 50 s) waits, then
        // job 3 (8 GPUs, 20 s): 2 starts at 100, 3 at 150.
        let configuration = SchedulerConfiguration(policy: FIFOPolicy())
        var harness = SchedulerHarness(state: .make(nodes: [Node.make(1).gpus(8).build()], jobs: [Job.make(1).gpus(8).limit(seconds: 100).build()]),
                                       configuration: configuration)
        try harness.round()
        try harness.submit(Job.make(2).gpus(8).estimate(seconds: 50).submitted(atSecond: 1).build())
        try harness.submit(Job.make(3).gpus(8).estimate(seconds: 20).submitted(atSecond: 2).build())
        harness.now = .seconds(10)
        let plan = harness.scheduler.process(harness.state, now: harness.now)
        let starts = StartEstimator(configuration: configuration).estimatedStarts(state: harness.state, plan: plan, now: harness.now)
        #expect(starts == [JobID(2): .seconds(100), JobID(3): .seconds(150)])
    }

    @Test func workWithoutAnEndLeavesTheJobsBehindItWithoutAnEstimate() throws {
        let configuration = SchedulerConfiguration(policy: FIFOPolicy())
        var harness = SchedulerHarness(state: .make(nodes: [Node.make(1).gpus(8).build()], jobs: [Job.make(1).gpus(8).build()]), configuration: configuration)
        try harness.round()
        try harness.submit(Job.make(2).gpus(1).estimate(seconds: 50).submitted(atSecond: 1).build())
        let plan = harness.scheduler.process(harness.state, now: .seconds(5))
        #expect(StartEstimator(configuration: configuration).estimatedStarts(state: harness.state, plan: plan, now: .seconds(5)).isEmpty)
    }

    @Test func jobsThatCanNeverRunGetNoEstimate() throws {
        let state = ClusterState.make(nodes: [Node.make(1).gpus(8).build()], jobs: [Job.make(1).gpus(16).build(), Job.make(2).gpus(1).build()])
        let plan = Scheduler().process(state, now: .zero)
        let starts = StartEstimator(configuration: SchedulerConfiguration()).estimatedStarts(state: state, plan: plan, now: .zero)
        #expect(starts.isEmpty, "job 2 starts in the plan itself; job 1 never")
    }
}
