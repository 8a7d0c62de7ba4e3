public import FastGPUModel
public import FastGPUScheduler
import HeapModule

/// How the simulated cluster behaves.
public struct SimulationOptions: Sendable {
    public var nodes: [Node]
    public var gpusPerNode: Int
    /// Added to a preempted job's remaining run time (checkpoint reload, warm-up).
    public var restartPenaltyMilliseconds: Int64
    /// Schedule at fixed rounds of this length; nil schedules on every event (arrival, completion).
    public var intervalMilliseconds: Int64?
    /// Jobs that finished before the simulated window starts: the history predictors begin with
    /// (what a running cluster would know on the window's first day). Never replayed.
    public var history: [TraceJob]
    /// Nodes are partitioned by project (label `pool`), and each job runs only in its project's
    /// pool: a virtual cluster per team, as Philly and Helios ran them.
    public var poolPerProject: Bool = false
    /// Quotas by project name on a shared cluster: guaranteed work reclaims borrowed capacity.
    public var quotas: [String: Quota] = [:]
    /// Projects whose jobs all run on the spot tier (cheaper, preemptible by any non-spot work).
    public var spotProjects: Set<String> = []
    /// What allocations cost: every ended allocation is metered as the control plane meters it.
    public var prices = PriceBook(versions: [])
    /// Measure the server's start estimates: at most once per this many milliseconds of simulated
    /// time, a pass also estimates every waiting job's start as `fastgpu server` does (learned run
    /// times for every job, not the ones the policy was given; a shadow run of the same scheduler),
    /// and each job's first estimate is kept to compare with when it started. Nil: not measured.
    public var estimateEveryMilliseconds: Int64?

    public init(nodes: [Node], gpusPerNode: Int, restartPenaltyMilliseconds: Int64 = 30_000, intervalMilliseconds: Int64? = nil, history: [TraceJob] = []) {
        self.nodes = nodes
        self.gpusPerNode = gpusPerNode
        self.restartPenaltyMilliseconds = restartPenaltyMilliseconds
        self.intervalMilliseconds = intervalMilliseconds
        self.history = history
    }

    /// `count` nodes of `gpusPerNode` GPUs of one model, CPU and memory ample.
    public static func uniform(nodes count: Int, gpusPerNode: Int, gpuModel: String) -> SimulationOptions {
        SimulationOptions(nodes: (0..<count).map { uniformNode($0 + 1, gpusPerNode: gpusPerNode, gpuModel: gpuModel, labels: [:]) }, gpusPerNode: gpusPerNode)
    }

    /// One pool of uniform nodes per project (`vcvGl` → 20 nodes), each job confined to its pool.
    public static func pools(_ pools: [(project: String, nodes: Int)], gpusPerNode: Int, gpuModel: String) -> SimulationOptions {
        var nodes: [Node] = []
        for (project, count) in pools {
            for _ in 0..<count {
                nodes.append(uniformNode(nodes.count + 1, gpusPerNode: gpusPerNode, gpuModel: gpuModel, labels: ["pool": project]))
            }
        }
        var options = SimulationOptions(nodes: nodes, gpusPerNode: gpusPerNode)
        options.poolPerProject = true
        return options
    }

    private static func uniformNode(_ number: Int, gpusPerNode: Int, gpuModel: String, labels: [String: String]) -> Node {
        let gpus = (0..<gpusPerNode).map { GPU(index: $0, uuid: "GPU-\(number)-\($0)", model: gpuModel, memoryMiB: 80 * 1024, island: $0 * 2 / max(1, gpusPerNode)) }
        return Node(id: NodeID(UInt64(number)), name: "node-\(number)", gpus: gpus, cpuMillis: 1_000_000, memoryMiB: 16 * 1024 * 1024, labels: labels)
    }
}

/// What happened to one job.
public struct JobOutcome: Hashable, Sendable {
    public var id: Int
    public var project: String
    public var gpus: Int
    public var submitMilliseconds: Int64
    public var firstStartMilliseconds: Int64?
    public var finishMilliseconds: Int64?
    public var durationMilliseconds: Int64
    public var preemptions: Int

    public var completionMilliseconds: Int64? { finishMilliseconds.map { $0 - submitMilliseconds } }
    public var queueingMilliseconds: Int64? { firstStartMilliseconds.map { $0 - submitMilliseconds } }
}

/// One task placed during a run: when, which job, where, on which devices.
public struct PlacementRecord: Hashable, Sendable {
    public var milliseconds: Int64
    public var job: Int
    public var task: Int
    public var node: NodeID
    public var devices: [DeviceAssignment]
}

/// The result of one run.
public struct SimulationResult: Sendable {
    /// Every placement committed, in order.
    public var placements: [PlacementRecord]
    /// What every allocation cost, summed per project name (micro-units), and its GPU time
    /// (milli-GPU × ms): preempted runs included, as they are billed.
    public var costMicrosByProject: [String: Int64] = [:]
    public var gpuMillisecondsByProject: [String: Int64] = [:]
    public var policy: String
    public var oracle: Bool
    public var outcomes: [JobOutcome]
    /// ∫ allocated milli-GPUs dt, in milli-GPU × ms.
    public var allocatedMilliGPUMilliseconds: Int64
    public var capacityMilliGPUs: Int
    public var firstSubmitMilliseconds: Int64
    public var lastFinishMilliseconds: Int64
    public var preemptions: Int
    public var schedulingPasses: Int
    /// Jobs that no node could ever host (never scheduled; left out of the JCT figures).
    public var neverPlaceable: Int
    /// With `estimateEveryMilliseconds`: each job's first estimated start (by job id − 1; nil
    /// where no sampled pass saw it waiting, or the estimate could not say) and when it was made.
    public var firstEstimates: [(madeAt: Int64, start: Int64)?] = []
    /// Jobs a sampled pass saw waiting whose start it could not estimate.
    public var waitedUnestimated = 0
}

/// The discrete-event engine: a virtual clock, arrivals from the trace, completions after each
/// job's true remaining run time, and the very same `Scheduler` + `PlanVerifier` + reducer as the
/// control plane.
///
/// The scheduler sees only `Job` values whose `runtimeEstimate` comes from the policy's
/// `EstimateSource`; true durations stay in `truth`, which only the engine reads (and, for
/// `.oracle` policies alone, copies into the estimate).
public struct Simulation {
    public let trace: Trace
    public let policy: SchedulingPolicy
    public let options: SimulationOptions

    public init(trace: Trace, policy: SchedulingPolicy, options: SimulationOptions) {
        self.trace = trace
        self.policy = policy
        self.options = options
    }

    /// Called with every job as it is handed to the scheduler: lets a test prove what the policy saw.
    public typealias SubmissionObserver = (Job) -> Void

    public func run(observe: SubmissionObserver? = nil) -> SimulationResult {
        var engine = Engine(trace: trace, policy: policy, options: options)
        engine.run(observe: observe)
        return engine.result()
    }
}

struct Engine {
    let trace: Trace
    let policy: SchedulingPolicy
    let options: SimulationOptions
    /// The policy's scheduler; a `.distribution` policy's Gittins settings (measure, weighing)
    /// get the tables learned so far each pass.
    let scheduler: Scheduler

    var state = ClusterState()
    var learned: LearnedRuntimes
    var finishes = Heap<Finish>()
    var now: Int64 = 0
    var nextArrival = 0

    /// Per job (index = trace id − 1): remaining true run time, current run start, finish token.
    var truth: [Int64]
    var runStart: [Int64?]
    var token: [Int]
    var outcomes: [JobOutcome]
    var projectIDs: [String: ProjectID] = [:]

    var allocatedMilli = 0
    var allocatedIntegral: Int64 = 0
    var lastIntegration: Int64 = 0
    var preemptions = 0
    var passes = 0
    var never: Set<Int> = []
    var placementLog: [PlacementRecord] = []
    var ledger = LedgerTotals()
    var gpuTime: [ProjectID: Int64] = [:]
    var firstEstimates: [(madeAt: Int64, start: Int64)?]
    var nextEstimate: Int64 = .min
    /// Jobs seen waiting without an estimate (some get one at a later sample).
    var unestimated: Set<Int> = []

    struct Finish: Comparable {
        var time: Int64
        var job: Int
        var token: Int
        static func < (a: Finish, b: Finish) -> Bool { (a.time, a.job, a.token) < (b.time, b.job, b.token) }
    }

    init(trace: Trace, policy: SchedulingPolicy, options: SimulationOptions) {
        self.trace = trace
        self.policy = policy
        self.options = options
        let restartCost = Duration.milliseconds(options.restartPenaltyMilliseconds)
        self.scheduler = Scheduler(configuration: policy.schedulerConfiguration(restartCost: restartCost))
        self.learned = policy.learner(restartCost: restartCost)
        truth = trace.jobs.map(\.durationMilliseconds)
        firstEstimates = Array(repeating: nil, count: options.estimateEveryMilliseconds == nil ? 0 : trace.jobs.count)
        runStart = Array(repeating: nil, count: trace.jobs.count)
        token = Array(repeating: 0, count: trace.jobs.count)
        outcomes = trace.jobs.map { JobOutcome(id: $0.id, project: $0.project, gpus: $0.gpus, submitMilliseconds: $0.submitMilliseconds,
                                               firstStartMilliseconds: nil, finishMilliseconds: nil, durationMilliseconds: $0.durationMilliseconds, preemptions: 0) }
        for node in options.nodes {
            // The options' nodes are built by the simulator or read from a node list: valid by construction.
            try! state.apply(.registerNode(node))  // swiftlint:disable:this force_try
        }
        for (name, quota) in options.quotas.sorted(by: { $0.key < $1.key }) {
            _ = try? state.apply(.setQuota(project(name), quota))
        }
        now = trace.jobs.first?.submitMilliseconds ?? 0
        lastIntegration = now
        for past in options.history.sorted(by: { $0.submitMilliseconds + $0.durationMilliseconds < $1.submitMilliseconds + $1.durationMilliseconds }) {
            learn(past)
        }
    }

    /// Teaches the predictors one finished job (its true duration: it has ended).
    mutating func learn(_ traceJob: TraceJob) {
        let projectID = project(traceJob.project)
        learned.learn(project: projectID, submitter: traceJob.user, gpus: traceJob.gpus, milliGPUs: traceJob.milliGPUs, milliseconds: traceJob.durationMilliseconds)
    }

    mutating func run(observe: Simulation.SubmissionObserver?) {
        let interval = options.intervalMilliseconds
        var stalled = false
        var nextTick = interval.map { now + $0 }
        // With rounds, waiting work keeps the clock ticking; a round that changes nothing while
        // nothing runs and nothing arrives would repeat forever, so it ends the run.
        while nextArrival < trace.jobs.count || !finishes.isEmpty || (interval != nil && !state.waiting.isEmpty && !stalled) {
            var t = Int64.max
            if nextArrival < trace.jobs.count { t = min(t, trace.jobs[nextArrival].submitMilliseconds) }
            if let finish = finishes.min { t = min(t, finish.time) }
            if let tick = nextTick, !state.waiting.isEmpty { t = min(t, tick) }
            advance(to: t)
            while let finish = finishes.min, finish.time <= now {
                finishes.removeMin()
                complete(finish)
            }
            while nextArrival < trace.jobs.count, trace.jobs[nextArrival].submitMilliseconds <= now {
                submit(trace.jobs[nextArrival], observe: observe)
                nextArrival += 1
            }
            if let interval {
                guard let tick = nextTick, now >= tick else { continue }
                nextTick = tick + interval * max(1, (now - tick) / interval + 1)
            }
            let before = state.index
            schedule()
            stalled = state.index == before && finishes.isEmpty && nextArrival == trace.jobs.count
        }
    }

    mutating func advance(to time: Int64) {
        allocatedIntegral += Int64(allocatedMilli) * (time - lastIntegration)
        lastIntegration = time
        now = time
    }

    mutating func project(_ name: String) -> ProjectID {
        if let id = projectIDs[name] { return id }
        let id = ProjectID(UInt64(projectIDs.count + 1))
        projectIDs[name] = id
        return id
    }

    mutating func submit(_ traceJob: TraceJob, observe: Simulation.SubmissionObserver?) {
        let projectID = project(traceJob.project)
        let estimate: Duration? = switch policy.estimates {
        case .none: nil
        case .oracle: .milliseconds(traceJob.durationMilliseconds)
        case .history, .distribution: .milliseconds(learned.estimateMilliseconds(project: projectID, submitter: traceJob.user, gpus: traceJob.gpus))
        }
        var group = traceJob.taskGroup(gpusPerNode: options.gpusPerNode)
        if options.poolPerProject { group.resources.nodeSelector["pool"] = traceJob.project }
        let job = Job(id: JobID(UInt64(traceJob.id)), name: traceJob.name, project: project(traceJob.project), submitter: traceJob.user,
                      priority: PriorityClass(name: "p\(traceJob.priority)", value: traceJob.priority),
                      spot: options.spotProjects.contains(traceJob.project),
                      taskGroups: [group],
                      runtimeEstimate: estimate, submitTime: Timestamp(millisecondsSinceEpoch: traceJob.submitMilliseconds))
        observe?(job)
        do {
            try state.apply(.submit(job))
        } catch {
            // A trace row the model refuses (it passed the reader's checks) is never placeable.
            never.insert(traceJob.id)
        }
    }

    mutating func complete(_ finish: Finish) {
        guard token[finish.job] == finish.token, let start = runStart[finish.job] else { return }
        let id = JobID(UInt64(finish.job + 1))
        let live = state.jobs[id]?.liveAllocations.values.sorted() ?? []
        for allocation in live {
            if let ended = state.allocations[allocation] {
                allocatedMilli -= ended.milliGPUs
                meter(ended)
            }
            // The allocation is live (just read from the state): ending it cannot fail.
            _ = try? state.apply(.endAllocation(allocation, .succeeded, at: Timestamp(millisecondsSinceEpoch: now)))
        }
        truth[finish.job] -= now - start
        runStart[finish.job] = nil
        outcomes[finish.job].finishMilliseconds = now
        learn(trace.jobs[finish.job])
    }

    mutating func schedule() {
        guard !state.waiting.isEmpty else { return }
        passes += 1
        let at = Timestamp(millisecondsSinceEpoch: now)
        var scheduler = self.scheduler
        if policy.estimates == .distribution {
            learned.buildTables()
            scheduler.configuration = learned.configuring(scheduler.configuration)
        }
        let plan = scheduler.process(state, now: at)
        if let every = options.estimateEveryMilliseconds, now >= nextEstimate {
            nextEstimate = now + every
            estimateStarts(plan, configuration: scheduler.configuration, at: at)
        }
        for pending in plan.pending where pending.reason.isNever {
            // Never placeable: drop it from the queue so that it does not cost every pass.
            never.insert(Int(pending.job.rawValue))
            _ = try? state.apply(.cancel(pending.job, at: at))
        }
        guard !plan.placements.isEmpty || !plan.preemptions.isEmpty else { return }
        let verified = PlanVerifier().verify(plan, against: state)
        let ended: [Allocation]
        do {
            ended = try state.apply(.commit(verified, at: at)).endedAllocations
        } catch {
            // Verified against this very state: a refusal is a scheduler bug, not an input problem.
            preconditionFailure("a verified plan was refused: \(error)")
        }
        var stopped: Set<Int> = []
        for allocation in ended {
            allocatedMilli -= allocation.milliGPUs
            meter(allocation)
            stopped.insert(Int(allocation.task.job.rawValue) - 1)
        }
        for job in stopped.sorted() {
            guard let start = runStart[job] else { continue }
            truth[job] = max(0, truth[job] - (now - start)) + options.restartPenaltyMilliseconds
            runStart[job] = nil
            token[job] += 1
            outcomes[job].preemptions += 1
            preemptions += 1
        }
        var started: Set<Int> = []
        for placement in verified.placements {
            placementLog.append(PlacementRecord(milliseconds: now, job: Int(placement.task.job.rawValue), task: placement.task.index,
                                                node: placement.node, devices: placement.devices))
            allocatedMilli += state.jobs[placement.task.job]?.taskGroups[placement.task.group].milliGPUsPerTask ?? 0
            started.insert(Int(placement.task.job.rawValue) - 1)
        }
        for job in started.sorted() {
            guard let spec = state.jobs[JobID(UInt64(job + 1))], !spec.isWaiting, runStart[job] == nil else { continue }
            runStart[job] = now
            if outcomes[job].firstStartMilliseconds == nil { outcomes[job].firstStartMilliseconds = now }
            token[job] += 1
            finishes.insert(Finish(time: now + truth[job], job: job, token: token[job]))
        }
    }

    /// The server's estimates for the jobs this plan leaves waiting, kept for those that had none:
    /// run times learned from finished jobs for every job (overriding what the policy was given,
    /// which for an oracle is the truth), then the same shadow run as `fastgpu server`.
    mutating func estimateStarts(_ plan: Plan, configuration: SchedulerConfiguration, at: Timestamp) {
        // Jobs waiting for their first start (a preempted job waits again, but its first start was earlier).
        let fresh = plan.pending.filter {
            !$0.reason.isNever && firstEstimates[Int($0.job.rawValue) - 1] == nil && outcomes[Int($0.job.rawValue) - 1].firstStartMilliseconds == nil
        }
        guard !fresh.isEmpty else { return }
        let shadow = learned.filling(state, now: at, overridingEstimates: true).state
        let starts = StartEstimator(configuration: configuration).estimatedStarts(state: shadow, plan: plan, now: at)
        for pending in fresh {
            if let start = starts[pending.job] {
                firstEstimates[Int(pending.job.rawValue) - 1] = (now, start.millisecondsSinceEpoch)
            } else {
                unestimated.insert(Int(pending.job.rawValue))
            }
        }
    }

    /// Charges an allocation that ends now, from its start (the simulated workload starts as it
    /// is placed), with the control plane's metering.
    mutating func meter(_ allocation: Allocation) {
        let model = state.node(allocation.node).flatMap { node in allocation.devices.first.flatMap { d in node.gpus.first { $0.index == d.gpuIndex }?.model } }
        let metered = MeteredAllocation(allocation: allocation.id, job: allocation.task.job, project: allocation.project, tier: allocation.spot ? .spot : .onDemand,
                                        gpuModel: model, milliGPUs: allocation.milliGPUs, cpuMillis: 0, memoryMiB: 0, runningSince: allocation.startTime)
        for charge in Metering.charges(of: metered, fromSegment: 0, until: Timestamp(millisecondsSinceEpoch: now), ended: true, prices: options.prices).charges {
            ledger.add(charge)
        }
        gpuTime[allocation.project, default: 0] += Int64(allocation.milliGPUs) * max(0, now - allocation.startTime.millisecondsSinceEpoch)
    }

    func result() -> SimulationResult {
        let finished = outcomes.compactMap(\.finishMilliseconds)
        var cost: [String: Int64] = [:]
        var gpu: [String: Int64] = [:]
        for (name, id) in projectIDs {
            cost[name] = ledger.byProjectMonth.filter { $0.key.project == id }.values.reduce(Int64(0)) { $0 + LedgerTotals.amountMicros($1) }
            gpu[name] = gpuTime[id] ?? 0
        }
        var result = SimulationResult(
            placements: placementLog, policy: policy.name, oracle: policy.isOracle, outcomes: outcomes.filter { !never.contains($0.id) },
            allocatedMilliGPUMilliseconds: allocatedIntegral, capacityMilliGPUs: options.nodes.reduce(0) { $0 + $1.gpus.count * 1000 },
            firstSubmitMilliseconds: trace.jobs.first?.submitMilliseconds ?? 0, lastFinishMilliseconds: finished.max() ?? 0,
            preemptions: preemptions, schedulingPasses: passes, neverPlaceable: never.count)
        result.costMicrosByProject = cost
        result.firstEstimates = firstEstimates
        result.waitedUnestimated = unestimated.filter { firstEstimates[$0 - 1] == nil }.count
        result.gpuMillisecondsByProject = gpu
        return result
    }
}
