public import FastGPUModel
public import FastGPUScheduler
public import Logging
public import ServiceLifecycle
import Synchronization

/// Observes scheduling passes (for metrics); called once per pass.
public protocol SchedulingObserver: Sendable {
    func passFinished(placements: Int, pending: Int, decisionNanoseconds: Int64, commitNanoseconds: Int64)
}

/// The scheduling loop: event-driven and batched. Every submission, allocation end or node
/// change wakes it; wakes that arrive during a pass coalesce into the next one. A pass runs the
/// pure scheduler on a snapshot off the control plane's actor, so API reads are not held up, and
/// hands the plan back for verification and one durable commit.
public struct SchedulingService: Service {
    let controlPlane: ControlPlane
    let observer: (any SchedulingObserver)?
    let logger: Logger
    /// Start estimates are a shadow run of up to hundreds of passes: they are recomputed only
    /// once four times their last cost has passed (at most ~20 % of a core), and reused between.
    private let estimates = EstimateCache()

    public init(controlPlane: ControlPlane, observer: (any SchedulingObserver)? = nil, logger: Logger = Logger(label: "fastgpu.scheduler")) {
        self.controlPlane = controlPlane
        self.observer = observer
        self.logger = logger
    }

    public func run() async throws {
        await withGracefulShutdownHandler {
            for await _ in controlPlane.wakeups {
                do {
                    try await pass()
                } catch {
                    logger.error("scheduling pass failed", metadata: ["error": "\(error)"])
                }
            }
        } onGracefulShutdown: {
            controlPlane.stopWakeups()
            Task { await controlPlane.releaseWaiters() }
        }
    }

    /// One pass: snapshot, decide, estimate, commit. Public so that tests drive it step by step.
    @discardableResult
    public func pass() async throws -> Int {
        let (state, now, learned) = await controlPlane.schedulingInput()
        let configuration = controlPlane.configuration
        let clock = ContinuousClock()
        let started = clock.now
        // The policy with what was learned; start estimates always use learned run times.
        let scheduling = learned.configuring(configuration.scheduler)
        var filled: (state: ClusterState, learned: Set<JobID>)?
        if configuration.decidesOnLearnedRuntimes { filled = learned.filling(state, now: now) }
        let plan = Scheduler(configuration: scheduling).process(filled?.state ?? state, now: now)
        let planned = clock.now
        var starts: [JobID: Timestamp] = [:]
        var learnedStarts: Set<JobID> = []
        if plan.pending.count <= configuration.estimateLimit {
            let due = estimates.state.withLock { $0.next.map { planned >= $0 } ?? true }
            if due {
                let shadow = filled ?? learned.filling(state, now: now)
                let estimated = StartEstimator(configuration: scheduling).estimates(state: shadow.state, plan: plan, now: now, learned: shadow.learned)
                starts = estimated.mapValues(\.start)
                learnedStarts = Set(estimated.filter(\.value.learned).keys)
                let cost = clock.now - planned
                estimates.state.withLock { $0 = (clock.now + cost * 4, starts, learnedStarts) }
            } else {
                (starts, learnedStarts) = estimates.state.withLock { ($0.starts, $0.learned) }
            }
        }
        // A reservation's start (EASY) was computed on the state the pass decided on.
        if let filled, !filled.learned.isEmpty {
            for pending in plan.pending where starts[pending.job] == nil {
                if case .notNow(_, _, _, .some) = pending.reason { learnedStarts.insert(pending.job) }
            }
        }
        let decided = clock.now
        let placed = try await controlPlane.commit(plan, estimates: starts, learnedStarts: learnedStarts, now: now)
        let committed = clock.now
        observer?.passFinished(placements: placed, pending: plan.pending.count,
                               decisionNanoseconds: (decided - started).nanoseconds, commitNanoseconds: (committed - decided).nanoseconds)
        return placed
    }
}

/// Node liveness: every tick, nodes silent past heartbeat TTL + grace go down. If a tick comes
/// much later than it should, the control plane itself was paused, and no node is blamed for it.
public struct LivenessService: Service {
    let controlPlane: ControlPlane
    let tick: Duration
    let logger: Logger

    public init(controlPlane: ControlPlane, tick: Duration = .seconds(1), logger: Logger = Logger(label: "fastgpu.liveness")) {
        self.controlPlane = controlPlane
        self.tick = tick
        self.logger = logger
    }

    public func run() async throws {
        let clock = controlPlane.clock
        var last = clock.now()
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            do { try await clock.sleep(for: tick) } catch { return }
            let now = clock.now()
            // A tick later than its period by more than a heartbeat TTL: this process was paused.
            let late = now.milliseconds(since: last) - tick.wholeMilliseconds
            if late > controlPlane.configuration.heartbeatTTL.wholeMilliseconds {
                logger.warning("liveness check was paused; giving every node a fresh grace period", metadata: ["late_ms": "\(late)"])
                await controlPlane.forgiveHeartbeatGap()
            }
            last = now
            do {
                let downed = try await controlPlane.tick()
                if !downed.isEmpty { logger.warning("nodes down: missed heartbeats", metadata: ["nodes": "\(downed)"]) }
            } catch {
                logger.error("liveness check failed", metadata: ["error": "\(error)"])
            }
        }
    }
}

extension Duration {
    var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}

final class EstimateCache: Sendable {
    let state = Mutex<(next: ContinuousClock.Instant?, starts: [JobID: Timestamp], learned: Set<JobID>)>((nil, [:], []))
}

/// The services' reconciler: every tick it samples each service's load, lets its autoscaler
/// decide, rolls replicas toward the count and revision asked for, and stops drained ones.
/// Between ticks, a readiness report or a request held at zero replicas reconciles at once.
public struct ServiceReconcilerService: Service {
    let controlPlane: ControlPlane
    let tick: Duration
    let logger: Logger

    public init(controlPlane: ControlPlane, tick: Duration = .milliseconds(500), logger: Logger = Logger(label: "fastgpu.services")) {
        self.controlPlane = controlPlane
        self.tick = tick
        self.logger = logger
    }

    public func run() async throws {
        let clock = controlPlane.clock
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            do { try await clock.sleep(for: tick) } catch { return }
            do {
                try await controlPlane.reconcileServices()
            } catch {
                logger.error("service reconcile failed", metadata: ["error": "\(error)"])
            }
        }
    }
}
