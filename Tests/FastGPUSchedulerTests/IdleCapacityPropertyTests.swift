import FastGPUModel
import FastGPUScheduler
import FastGPUTestSupport
import FastGPUWorkloads
import Testing

/// Whenever a job waits while GPUs it fits on are idle, a named reservation for a wider job must
/// explain it: idle capacity next to a waiting job that could use it is either a deliberate hold
/// (EASY backfill keeps a wide job's nodes) or a bug. Checked over random traces for every policy
/// a live cluster can run, after every committed pass.
@Suite struct IdleCapacityPropertyTests {
    static let cases: [(policy: String, seed: UInt64)] = SchedulingPolicy.liveNames.flatMap { name in (UInt64(1)...UInt64(30)).map { (name, $0) } }

    static func randomJob(_ id: UInt64, at now: Timestamp, using rng: inout SeededGenerator) -> Job {
        var builder = Job.make(id).project(UInt64.random(in: 1...3, using: &rng)).submitted(atSecond: now.milliseconds(since: .zero) / 1000)
        switch Int.random(in: 0..<10, using: &rng) {
        case 0: builder = builder.gpus(8).tasks(2, gang: true)
        case 1, 2: builder = builder.gpus(8)
        case 3: builder = builder.gpus(4)
        case 4: builder = builder.gpus(2)
        default: builder = builder.gpus(1)
        }
        if Bool.random(using: &rng) { builder = builder.estimate(seconds: Int64.random(in: 60...20_000, using: &rng)) }
        return builder.build()
    }

    /// Whether a single-task job fits on the free capacity of some ready node now.
    static func fitsNow(_ job: Job, in state: ClusterState) -> Bool {
        guard job.taskCount == 1, case .whole(let count) = job.taskGroups[0].resources.gpu else { return false }
        let resources = job.taskGroups[0].resources
        return state.nodes.contains { node in
            node.state == .ready && node.freeWholeGPUs >= count && node.freeCPUMillis >= resources.cpuMillis && node.freeMemoryMiB >= resources.memoryMiB
        }
    }

    @Test(arguments: cases)
    func aJobWaitingBesideIdleGPUsItFitsOnWaitsForANamedWiderJob(policy name: String, seed: UInt64) throws {
        var rng = SeededGenerator(seed: seed)
        let policy = try #require(SchedulingPolicy.named(name, seed: seed))
        var learned = policy.learner(restartCost: .seconds(30))
        let nodes = (1...UInt64.random(in: 2...6, using: &rng)).map { Node.make($0).gpus(8).cpu(millis: 256_000).memory(mib: 2 << 20).build() }
        var state = ClusterState.make(nodes: nodes)
        var now = Timestamp.zero
        var nextID: UInt64 = 1
        for _ in 0..<25 {
            for _ in 0..<Int.random(in: 0...6, using: &rng) {
                try state.apply(.submit(Self.randomJob(nextID, at: now, using: &rng)))
                nextID += 1
            }
            // What the server does each pass: the learned tables, learned run times where none were given.
            learned.buildTables()
            let configuration = learned.configuring(policy.schedulerConfiguration(restartCost: .seconds(30)))
            let decideOn = policy.estimates == .history ? learned.filling(state, now: now).state : state
            let plan = Scheduler(configuration: configuration).process(decideOn, now: now)
            try state.apply(.commit(PlanVerifier().verify(plan, against: state), at: now))
            for pending in plan.pending {
                guard let job = state.jobs[pending.job], job.isWaiting, Self.fitsNow(job, in: state) else { continue }
                guard case .notNow(.reservedFor(let holder), _, _, _) = pending.reason, let wider = state.jobs[holder] else {
                    Issue.record("\(name) seed \(seed): job \(job.id) (\(job.milliGPUs / 1000) GPUs) waits beside idle GPUs it fits on: \(pending.reason)")
                    return
                }
                #expect(wider.milliGPUs > job.milliGPUs, "job \(job.id) waits for \(holder), which is no wider")
                #expect(plan.reservation?.job == holder)
            }
            // Time passes; some work ends (and teaches the learner).
            now = now + .seconds(Int64.random(in: 1...3_600, using: &rng))
            for id in state.allocations.keys.sorted() where Int.random(in: 0..<3, using: &rng) == 0 {
                guard let allocation = state.allocations[id] else { continue }
                try state.apply(.endAllocation(id, .succeeded, at: now))
                if let job = state.jobs[allocation.task.job], job.state == .succeeded { learned.learn(job) }
            }
        }
    }
}
