import FastGPUModel
import FastGPUScheduler
import FastGPUTestSupport
import FastGPUWorkloads
import Foundation
import Testing

/// The reducer is deterministic, so a log of `ClusterChange`s is a durable record of the state:
/// replaying the log, after a round trip through JSON as a store would keep it, rebuilds the very
/// same state (the event-sourcing half of the coming store; `ClusterSnapshot` is the other half).
@Suite struct ReplayTests {
    struct Recorder {
        var state = ClusterState()
        var log: [ClusterChange] = []

        mutating func apply(_ change: ClusterChange) throws {
            try state.apply(change)
            log.append(change)
        }
    }

    @Test(arguments: Array(UInt64(1)...UInt64(40)))
    func replayingTheChangeLogRebuildsTheState(seed: UInt64) throws {
        var rng = SeededGenerator(seed: seed)
        var recorder = Recorder()
        for node in Workloads.randomCluster(using: &rng) { try recorder.apply(.registerNode(node)) }
        try recorder.apply(.setProject(ProjectID(2), weight: 3))
        var nextID: UInt64 = 1
        let scheduler = Scheduler(configuration: SchedulerConfiguration(policy: LeastAttainedServicePolicy(thresholdGPUSeconds: [60]), seed: seed))
        var now = Timestamp.zero
        for _ in 0..<6 {
            for job in Workloads.randomJobs(count: 5, firstID: nextID, using: &rng) { try recorder.apply(.submit(job)) }
            nextID += 5
            let plan = scheduler.process(recorder.state, now: now)
            try recorder.apply(.commit(PlanVerifier().verify(plan, against: recorder.state), at: now))
            now = now + .seconds(Int64.random(in: 1...900, using: &rng))
            if let id = recorder.state.allocations.keys.sorted().first {
                try recorder.apply(.endAllocation(id, [.succeeded, .lost, .failed(exitCode: 2)].randomElement(using: &rng)!, at: now))
            }
            if let node = recorder.state.nodes.randomElement(using: &rng), Bool.random(using: &rng) {
                try recorder.apply(.setNodeState(node.id, NodeState.allCases.randomElement(using: &rng)!, at: now))
            }
            if let job = recorder.state.waiting.sorted().first, Int.random(in: 0..<4, using: &rng) == 0 {
                try recorder.apply(.cancel(job, at: now))
            }
            try recorder.apply(.decayUsage(keepPermille: 900))
        }

        let encoded = try JSONEncoder().encode(recorder.log)
        let decoded = try JSONDecoder().decode([ClusterChange].self, from: encoded)
        var replayed = ClusterState()
        for change in decoded { try replayed.apply(change) }
        #expect(replayed.snapshot == recorder.state.snapshot)
        #expect(replayed.index == recorder.state.index)
        #expect(scheduler.process(replayed, now: now) == scheduler.process(recorder.state, now: now))
    }

    @Test func identifiersEncodeAsBareNumbers() throws {
        let text = String(decoding: try JSONEncoder().encode([JobID(42)]), as: UTF8.self)
        #expect(text == "[42]")
        #expect(try JSONDecoder().decode([NodeID].self, from: Data("[7]".utf8)) == [NodeID(7)])
    }
}
