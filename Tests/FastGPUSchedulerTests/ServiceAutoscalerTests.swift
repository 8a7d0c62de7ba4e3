import FastGPUModel
import FastGPUScheduler
import Testing

@Suite("Services: the autoscaler and the rollout")
struct ServiceAutoscalerTests {
    let spec = AutoscalingSpec(metric: .concurrency, target: 2, stableWindow: .seconds(60), panicWindow: .seconds(6),
                               scaleDownDelay: .seconds(30), scaleToZeroAfter: .seconds(300))
    let range = ReplicaRange(min: 0, max: 10)

    func at(_ seconds: Int64) -> Timestamp { .seconds(seconds) }

    /// Feeds one sample a second from `from` to `to` (inclusive), deciding after each.
    func run(_ scaler: inout ServiceAutoscaler, from: Int64, to: Int64, inFlight: Int, arrivals: Int = 0, current: inout Int, ready: Int? = nil) -> [ScalingDecision] {
        var decisions: [ScalingDecision] = []
        for t in from...to {
            scaler.record(LoadSample(at: at(t), inFlight: inFlight, arrivals: arrivals), spec: spec)
            let decision = scaler.decide(now: at(t), current: current, ready: ready ?? current, range: range, spec: spec)
            decisions.append(decision)
            current = decision.desired
        }
        return decisions
    }

    @Test func aRequestHeldAtZeroReplicasWakesTheServiceAtOnce() {
        var scaler = ServiceAutoscaler()
        scaler.record(LoadSample(at: at(100), inFlight: 1, arrivals: 1), spec: spec)
        let decision = scaler.decide(now: at(100), current: 0, ready: 0, range: range, spec: spec)
        #expect(decision.desired == 1)
        #expect(decision.reason == .wake)
    }

    @Test func loadThatDoublesIsMetWithinThePanicWindow() {
        var scaler = ServiceAutoscaler()
        var current = 1
        // A minute at 2 in flight (one replica's target), then 16 in flight: 8 replicas' worth.
        _ = run(&scaler, from: 0, to: 59, inFlight: 2, current: &current)
        #expect(current == 1)
        let decisions = run(&scaler, from: 60, to: 66, inFlight: 16, current: &current)
        // The 6 s window holds 16 from the first second on: ceil(16 ÷ 2) = 8 ≥ 2 × 1 ready → panic.
        let firstPanic = decisions.firstIndex { $0.panicking }
        #expect(firstPanic != nil && firstPanic! <= 6)
        #expect(current == 8)
    }

    @Test func panicNeverScalesDownUntilAStableWindowPassesWithoutIt() {
        var scaler = ServiceAutoscaler()
        var current = 1
        _ = run(&scaler, from: 0, to: 5, inFlight: 16, current: &current)
        #expect(current == 8)
        // Load falls to nothing: still 8 while panicking (60 s from the panic's start).
        _ = run(&scaler, from: 6, to: 50, inFlight: 0, current: &current)
        #expect(current == 8)
    }

    @Test func fewerReplicasOnlyAfterTheScaleDownDelay() {
        var scaler = ServiceAutoscaler()
        var current = 4
        // 8 in flight steadily: 4 replicas. No panic (wants 4 = current).
        _ = run(&scaler, from: 0, to: 60, inFlight: 8, current: &current)
        #expect(current == 4)
        // Load halves: the stable average falls over the next minute, but the count waits 30 s
        // after the lower count first showed.
        let decisions = run(&scaler, from: 61, to: 200, inFlight: 2, current: &current)
        let firstDrop = decisions.firstIndex { $0.desired < 4 }.map { Int64($0) + 61 }
        let firstLower = 61 as Int64  // ceil(avg ÷ 2) < 4 once the average falls under 6: within seconds
        #expect(firstDrop != nil && firstDrop! >= firstLower + 30)
        #expect(current == 1)
    }

    @Test func zeroOnlyAfterTheIdlePeriodWithNothingInFlight() {
        var scaler = ServiceAutoscaler()
        var current = 1
        _ = run(&scaler, from: 0, to: 10, inFlight: 1, arrivals: 1, current: &current)
        let idle = run(&scaler, from: 11, to: 400, inFlight: 0, current: &current)
        let zeroAt = idle.firstIndex { $0.desired == 0 }.map { Int64($0) + 11 }
        // The last request was at t=10; zero comes at t=310 (300 s idle), not before.
        #expect(zeroAt == 310)
        #expect(idle[zeroAt.map { Int($0 - 11) } ?? 0].reason == .scaleToZero)
    }

    @Test func minimumReplicasHoldWhateverTheLoad() {
        var scaler = ServiceAutoscaler()
        var current = 2
        let decision = scaler.decide(now: at(1000), current: current, ready: 2, range: ReplicaRange(min: 2, max: 4), spec: spec)
        current = decision.desired
        #expect(current == 2)
    }

    @Test func requestsPerSecondIsAMetricToo() {
        var rps = spec
        rps.metric = .rps
        rps.target = 10
        var scaler = ServiceAutoscaler()
        // 50 requests a second for a minute, 1 replica: ceil(50 ÷ 10) = 5.
        var current = 1
        for t in Int64(0)...60 {
            scaler.record(LoadSample(at: at(t), inFlight: 0, arrivals: 50), spec: rps)
            current = scaler.decide(now: at(t), current: current, ready: current, range: range, spec: rps).desired
        }
        #expect(current == 5)
    }

    // MARK: The rollout

    func replicas(_ list: [(UInt64, Int, ReplicaState, Int)]) -> [ReplicaStatus] {
        list.map { ReplicaStatus(job: JobID($0.0), revision: $0.1, state: $0.2, inFlight: $0.3) }
    }

    @Test func aNewRevisionSurgesByOneAndDrainsOnlyWhenANewReplicaServes() {
        // Two ready replicas of revision 1; revision 2 asked for with 2 replicas.
        var actions = ServiceRollout.actions(desired: 2, revision: 2, replicas: replicas([(1, 1, .ready, 0), (2, 1, .ready, 3)]))
        #expect(actions.start == 1 && actions.drain.isEmpty && actions.stop.isEmpty)
        // The new one starts: nothing more until it is ready.
        actions = ServiceRollout.actions(desired: 2, revision: 2, replicas: replicas([(1, 1, .ready, 0), (2, 1, .ready, 3), (3, 2, .starting, 0)]))
        #expect(actions.start == 0 && actions.drain.isEmpty)
        // Ready: the idler old one drains, and the next new one starts.
        actions = ServiceRollout.actions(desired: 2, revision: 2, replicas: replicas([(1, 1, .ready, 0), (2, 1, .ready, 3), (3, 2, .ready, 0)]))
        #expect(actions.drain == [JobID(1)] && actions.start == 1)
    }

    @Test func aRolloutNeverLeavesFewerReadyReplicasThanAskedFor() {
        // Walk a rollout of 3 replicas step by step, new replicas becoming ready one step after start.
        var fleet: [ReplicaStatus] = replicas([(1, 1, .ready, 0), (2, 1, .ready, 0), (3, 1, .ready, 0)])
        var next: UInt64 = 4
        for _ in 0..<20 {
            let actions = ServiceRollout.actions(desired: 3, revision: 2, replicas: fleet)
            fleet.removeAll { actions.stop.contains($0.job) }
            for i in fleet.indices where actions.drain.contains(fleet[i].job) { fleet[i].state = .draining }
            #expect(fleet.count { $0.state == .ready } >= 3, "ready replicas fell under the desired count")
            // Drained ones stop; starting ones become ready; new ones start.
            fleet.removeAll { $0.state == .draining }
            for i in fleet.indices where fleet[i].state == .starting { fleet[i].state = .ready }
            for _ in 0..<actions.start {
                fleet.append(ReplicaStatus(job: JobID(next), revision: 2, state: .starting, inFlight: 0))
                next += 1
            }
        }
        #expect(fleet.count == 3 && fleet.allSatisfy { $0.revision == 2 && $0.state == .ready })
    }

    @Test func scalingDownStopsUnreadyReplicasFirstThenTheIdlestReadyOnes() {
        let actions = ServiceRollout.actions(desired: 1, revision: 1, replicas: replicas([(1, 1, .ready, 5), (2, 1, .ready, 1), (3, 1, .starting, 0), (4, 1, .ready, 0)]))
        #expect(actions.stop == [JobID(3)])
        #expect(actions.drain == [JobID(4), JobID(2)])
    }

    @Test func specProblemsNameTheirField() {
        var spec = ServiceSpec(command: ["serve"], resources: TaskResources(gpu: .whole(count: 1), cpuMillis: 1000, memoryMiB: 1024))
        spec.replicas = ReplicaRange(min: 3, max: 2)
        #expect(spec.problems.map(\.field) == ["replicas.min"])
        spec.replicas = ReplicaRange(min: 0, max: 2)
        spec.port = 0
        #expect(spec.problems.map(\.field) == ["port"])
        spec.port = nil
        spec.readiness.timeout = spec.readiness.interval
        #expect(spec.problems.map(\.field) == ["readiness.timeoutSeconds"])
    }
}
