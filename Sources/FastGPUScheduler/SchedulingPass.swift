public import FastGPUModel

/// What the pass decided for one job.
public enum JobDecision: Hashable, Sendable {
    /// `tasks` tasks placed (all that were waiting, or some of a plain group).
    case placed(JobID, tasks: Int, preempting: Int)
    case pending(PendingJob)
}

/// One scheduling pass over the queue: queue → feasibility → score → plan.
///
/// The pass works on scratch copies of the snapshot's nodes: every placement it proposes takes
/// its devices there with the same `Node.reserve` that the state's reducer uses, so later
/// decisions in the pass see earlier ones and the plan never over-commits the snapshot.
/// Gang groups and preemptions run inside a transaction that is rolled back whole on failure.
public struct SchedulingPass {
    public let state: ClusterState
    public let configuration: SchedulerConfiguration
    public let now: Timestamp
    /// The waiting jobs in policy order.
    public let queue: [Job]

    var nodes: [Node]
    var index: CapacityIndex
    let mix: WorkloadMix
    var catalog: NodeShapeCatalog
    private var cursor = 0

    var placements: [Placement] = []
    var preemptions: [Preemption] = []
    var pending: [PendingJob] = []
    /// The demand each pending job was explained with (nil for `never`), to refresh its free fit.
    var pendingDemands: [TaskDemand?] = []
    var reservation: Reservation?
    var reservedSlots: Set<Int> = []
    /// The first blocked job under strict backfill.
    var blockedHead: JobID?

    /// Allocations proposed in this pass, by their tentative ids (from the top of the id space).
    var tentative: [AllocationID: Allocation] = [:]
    var nextTentativeID = UInt64.max - 1
    var preempted: Set<AllocationID> = []
    var preemptionSearches = 0
    /// Preemption ranks of the jobs with running work, computed on the first search.
    var runningRanks: [JobID: PreemptionRank]?
    var lowestRunningRank: PreemptionRank?
    /// Per node slot, the lowest rank among its running work (nil: nothing running).
    var lowestRankBySlot: [PreemptionRank?] = []
    var failedSearches: [FailedSearch] = []
    /// Why candidates failed for the last task that could not be placed.
    var tally = FailureTally()
    /// Milli-GPUs each project holds within its guarantee and in all, placements of this pass
    /// included; filled on first use and only while a project has a quota.
    var quotaUse: [ProjectID: QuotaUse] = [:]
    /// Named cohorts' fences, placements of this pass included; built on first use (nil before,
    /// empty when no named cohort guarantees anything).
    var fences: CohortFences?
    /// The job being placed is borrowed and fences stand: it must respect them, as a project of `placingCohort`.
    var placingFenced = false
    var placingCohort: String?
    /// The cohort whose fence last turned a candidate away (for the pending reason).
    var fencedBy: String?
    /// The job being decided runs on borrowed capacity: its placements say so.
    var placingBorrowed = false
    /// Where the job being decided stands against its quota (its preemption claim uses it).
    var placingStanding = QuotaStanding.unmanaged
    /// Whether any project has a quota (read once: the state does not change within a pass).
    let quotasActive: Bool

    public init(state: ClusterState, configuration: SchedulerConfiguration, now: Timestamp) {
        self.state = state
        self.configuration = configuration
        self.now = now
        let waiting = state.waiting.compactMap { state.jobs[$0] }
        self.queue = configuration.policy.order(waiting, in: state, now: now)
        self.nodes = state.nodes
        self.index = CapacityIndex(nodes: state.nodes)
        self.mix = configuration.workloadMix ?? WorkloadMix.of(waiting)
        self.catalog = NodeShapeCatalog(nodes: state.nodes)
        self.quotasActive = state.quotasActive
    }

    /// The plan so far (the whole plan once `step()` has returned nil).
    ///
    /// A waiting job's largest free fit is given as the plan leaves the cluster, not as it was
    /// when the job was decided: later jobs (backfill) may have taken what was free then.
    public var plan: Plan {
        let explained = zip(pending, pendingDemands).map { parked, demand -> PendingJob in
            guard case .notNow(let shortfall, _, let ahead, let start) = parked.reason, let demand else { return parked }
            var updated = parked
            updated.reason = .notNow(shortfall: shortfall, largestFreeFit: currentFreeFit(for: demand), jobsAhead: ahead, estimatedStart: start)
            return updated
        }
        return Plan(basedOn: state.index, placements: placements, preemptions: preemptions, pending: explained, reservation: reservation)
    }

    /// Decides the next job in the queue; nil when the queue is done.
    public mutating func step() -> JobDecision? {
        guard cursor < queue.count else { return nil }
        let job = queue[cursor]
        // The position counts only jobs ahead that stay pending: placed ones leave the queue.
        let position = pending.count
        cursor += 1
        return decide(job, position: position)
    }

    private mutating func decide(_ job: Job, position: Int) -> JobDecision {
        if let until = job.notBefore, until > now {
            // Backing off is no reason to hold the queue: parked, not blocking.
            return park(job, position: position, reason: .notNow(shortfall: .backoff(until: until), largestFreeFit: nil, jobsAhead: position, estimatedStart: until))
        }
        let unplaced = job.unplacedTasks
        // Groups in order; tasks come sorted by group, so this is one pass and no set.
        var groups: [Int] = []
        for task in unplaced where groups.last != task.group { groups.append(task.group) }
        for group in groups {
            if let never = catalog.neverReason(for: job.taskGroups[group]) {
                return park(job, position: position, reason: .never(never))
            }
        }
        if let head = blockedHead {
            return park(job, position: position, reason: .notNow(shortfall: .reservedFor(head), largestFreeFit: nil, jobsAhead: position, estimatedStart: nil))
        }
        let standing = quotaStanding(of: job, tasks: unplaced)
        if case .exhausted(let guaranteed, let used, let borrowable) = standing {
            return park(job, position: position, reason: .notNow(shortfall: .quotaExhausted(guaranteedMilliGPUs: guaranteed, usedMilliGPUs: used, borrowableMilliGPUs: borrowable),
                                                                 largestFreeFit: nil, jobsAhead: position, estimatedStart: nil))
        }
        placingBorrowed = standing == .borrowing
        placingStanding = standing
        if placingBorrowed {
            if fences == nil { fences = buildFences() }
            if let fences, !fences.isEmpty { (placingFenced, placingCohort) = (true, state.projects[job.project]?.quota?.cohort) }
        }
        defer { placingBorrowed = false; placingStanding = .unmanaged; placingFenced = false }

        var placed = 0
        var failedGroup: Int?
        var gangPlaceable = 0
        for group in groups {
            let tasks = groups.count == 1 ? unplaced : unplaced.filter { $0.group == group }
            let demand = TaskDemand(job: job, group: group, now: now, defaultRuntime: configuration.defaultRuntime)
            if demand.gang {
                let mark = beginTransaction()
                var ok = true
                for (i, task) in tasks.enumerated() where placeTask(task, demand: demand, transaction: mark) == nil {
                    ok = false
                    gangPlaceable = i
                    break
                }
                if ok { placed += tasks.count } else { rollBack(mark); failedGroup = failedGroup ?? group }
            } else {
                for task in tasks {
                    if placeTask(task, demand: demand, transaction: nil) != nil { placed += 1 } else { failedGroup = failedGroup ?? group; break }
                }
            }
        }
        if failedGroup == nil {
            return .placed(job.id, tasks: placed, preempting: 0)
        }
        // The preemption search places tasks too and overwrites the tally; the reason must speak
        // of the plain attempt.
        let failure = tally
        if configuration.preemption, placed == 0, preemptionSearches < configuration.preemptionSearchesPerPass,
           let victims = preempt(for: job, tasks: job.unplacedTasks) {
            return .placed(job.id, tasks: job.unplacedTasks.count, preempting: victims)
        }
        tally = failure

        let group = failedGroup!
        let demand = TaskDemand(job: job, group: group, now: now, defaultRuntime: configuration.defaultRuntime)
        var estimatedStart: Timestamp?
        if placed == 0 {
            switch configuration.backfill {
            case .strict:
                blockedHead = job.id
            case .easy where reservation == nil:
                reserve(job)
                if let reservation, reservation.job == job.id, reservation.start < .distantFuture { estimatedStart = reservation.start }
            case .easy, .greedy:
                break
            }
        }
        let shortfall = shortfall(for: demand, placeableOfGang: gangPlaceable)
        let reason = PendingReason.notNow(shortfall: shortfall, largestFreeFit: currentFreeFit(for: demand), jobsAhead: position, estimatedStart: estimatedStart)
        let parked = PendingJob(job: job.id, position: position, reason: reason)
        pending.append(parked)
        pendingDemands.append(demand)
        return placed > 0 ? .placed(job.id, tasks: placed, preempting: 0) : .pending(parked)
    }

    private mutating func park(_ job: Job, position: Int, reason: PendingReason) -> JobDecision {
        let parked = PendingJob(job: job.id, position: position, reason: reason)
        pending.append(parked)
        pendingDemands.append(nil)
        return .pending(parked)
    }

    // MARK: Placement

    /// Places one task on the best of the first `scoringLimit` feasible candidates; nil when none.
    @discardableResult
    mutating func placeTask(_ task: TaskRef, demand: TaskDemand, transaction: Transaction?) -> Placement? {
        // No ready node has that many free GPUs: nothing to walk (the common case in a full cluster).
        // (The models are fetched first: reading the index inside its own mutating call copies it.)
        let models = index.matchingModels(demand.resources.gpuModel, minMemoryMiB: demand.resources.minGPUMemoryMiB)
        if case .whole(let count) = demand.gpu, (index.largestFreeFit(models: models)?.free ?? 0) < count {
            var failures = FailureTally()
            failures.add(.gpuCount)
            tally = failures
            return nil
        }
        var failures = FailureTally()
        var best: (slot: Int, devices: [DeviceAssignment], score: Int, tie: UInt64)?
        var feasible = 0
        let limit = configuration.scoringLimit
        do {
            // The walk captures only immutable copies (copy-on-write: no data is copied), never
            // the pass itself: a closure over a mutating `self` copies the whole pass per call.
            // The copies end with this block, before `take` writes to the nodes and the index,
            // so that no write finds its buffer shared and copies it.
            let evaluator = CandidateEvaluator(
                nodes: nodes, checks: configuration.checks, scorers: configuration.scorers, reservation: reservation,
                reservedSlots: reservedSlots, mix: mix, seed: configuration.seed,
                sameGroupBySlot: demand.spread ? sameGroupCounts(job: demand.job, group: demand.group) : [:])
            let fenced = placingFences
            var fencedBy: String?
            defer { if fencedBy != nil { self.fencedBy = fencedBy } }
            Self.forEachCandidate(in: index, models: models, for: demand) { slot in
                // Borrowed work stays out of GPUs another cohort's guarantees hold.
                if let fenced, let cohort = fenced.fences.crossed(by: demand.gpu.milliGPUs, cohort: fenced.cohort, nodeModel: evaluator.nodes[slot].gpuModel) {
                    failures.add(.cohortFence)
                    fencedBy = cohort
                    return true
                }
                guard let devices = evaluator.devices(onSlot: slot, for: demand, failures: &failures) else { return true }
                let score = evaluator.score(slot: slot, devices: devices, task: demand)
                let tie = Self.tieBreak(evaluator.seed, evaluator.nodes[slot].id)
                if best == nil || score > best!.score || (score == best!.score && tie < best!.tie) {
                    best = (slot, devices, score, tie)
                }
                feasible += 1
                return feasible < limit
            }
        }
        tally = failures
        guard let best else { return nil }
        return take(task, demand: demand, slot: best.slot, devices: best.devices, transaction: transaction)
    }

    /// Tasks of one job group per node slot, live or placed in this pass (for spread).
    func sameGroupCounts(job: JobID, group: Int) -> [Int: Int] {
        var counts: [Int: Int] = [:]
        for (task, id) in state.jobs[job]?.liveAllocations ?? [:] where task.group == group {
            if let node = state.allocations[id]?.node, let slot = state.slot(of: node) { counts[slot, default: 0] += 1 }
        }
        for placement in placements where placement.task.job == job && placement.task.group == group {
            if let slot = state.slot(of: placement.node) { counts[slot, default: 0] += 1 }
        }
        return counts
    }

    /// Records the placement on the scratch nodes and in the plan.
    mutating func take(_ task: TaskRef, demand: TaskDemand, slot: Int, devices: [DeviceAssignment], transaction: Transaction?) -> Placement? {
        var allocation = Allocation(
            id: AllocationID(nextTentativeID), task: task, node: nodes[slot].id, devices: devices,
            cpuMillis: demand.resources.cpuMillis, memoryMiB: demand.resources.memoryMiB, project: demand.project,
            priority: demand.priority, spot: demand.spot, milliGPUs: demand.gpu.milliGPUs, epoch: Epoch(state.index),
            startTime: now, expectedEnd: demand.expectedEnd)
        if placingBorrowed { allocation.borrowed = true }
        transaction?.remember(slot, nodes[slot])
        if nodes[slot].reserve(allocation) != nil { return nil }
        nextTentativeID -= 1
        tentative[allocation.id] = allocation
        transaction?.tentativeIDs.append(allocation.id)
        index.update(slot, freeWholeGPUs: nodes[slot].freeWholeGPUs)
        let placement = Placement(task: task, node: nodes[slot].id, devices: devices, cpuMillis: demand.resources.cpuMillis,
                                  memoryMiB: demand.resources.memoryMiB, gang: demand.gang, borrowed: placingBorrowed)
        adjustQuotaUse(allocation, by: 1)
        placements.append(placement)
        return placement
    }

    /// Candidate node slots for a task, in the order the index gives (tightest first for whole GPUs).
    static func forEachCandidate(in index: CapacityIndex, models: [Int], for demand: TaskDemand, _ body: (Int) -> Bool) {
        switch demand.gpu {
        case .whole(let count):
            index.forEachCandidate(models: models, minimumFree: count, body)
        case .share:
            index.forEachCandidate(models: models, minimumFree: 0, body)
        case .mig:
            for model in models {
                for slot in index.migNodes[model] ?? [] where index.isIndexed(slot) && !body(slot) { return }
            }
        case .none:
            index.forEachNode(body)
        }
    }

    /// SplitMix64 of seed and node id: a fixed, well-mixed order among equal scores.
    static func tieBreak(_ seed: UInt64, _ node: NodeID) -> UInt64 {
        var z = seed &+ node.rawValue &* 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    // MARK: Transactions

    /// An undo log for scratch changes: node copies taken before their first change.
    final class Transaction {
        let placementsMark: Int
        let preemptionsMark: Int
        /// In the order first touched; restored in reverse. An array, not a dictionary: the index
        /// is updated in this order, and dictionary order differs between runs.
        var saved: [(slot: Int, node: Node)] = []
        var touched: Set<Int> = []
        var preempted: [AllocationID] = []
        var tentativeIDs: [AllocationID] = []

        init(placementsMark: Int, preemptionsMark: Int) {
            self.placementsMark = placementsMark
            self.preemptionsMark = preemptionsMark
        }

        func remember(_ slot: Int, _ node: Node) {
            if touched.insert(slot).inserted { saved.append((slot, node)) }
        }
    }

    func beginTransaction() -> Transaction {
        Transaction(placementsMark: placements.count, preemptionsMark: preemptions.count)
    }

    mutating func rollBack(_ transaction: Transaction) {
        for (slot, node) in transaction.saved.reversed() {
            nodes[slot] = node
            index.update(slot, freeWholeGPUs: node.freeWholeGPUs)
        }
        for id in transaction.tentativeIDs {
            if let allocation = tentative[id] { adjustQuotaUse(allocation, by: -1) }
            tentative[id] = nil
        }
        placements.removeSubrange(transaction.placementsMark...)
        preemptions.removeSubrange(transaction.preemptionsMark...)
        for id in transaction.preempted {
            preempted.remove(id)
            if let allocation = state.allocations[id] { adjustQuotaUse(allocation, by: 1) }
        }
    }

    // MARK: Quotas

    /// Where the job's unplaced tasks would stand against its project's quota, as the pass stands.
    mutating func quotaStanding(of job: Job, tasks: [TaskRef]) -> QuotaStanding {
        guard quotasActive else { return .unmanaged }
        let milli = tasks.reduce(0) { $0 + job.taskGroups[$1.group].milliGPUsPerTask }
        let use = quotaUse[job.project] ?? state.quotaUse(of: job.project)
        quotaUse[job.project] = use
        return state.quotaStanding(of: job, milliGPUs: milli, use: use)
    }

    /// Counts an allocation in (+1) or out (−1) of its project's use.
    mutating func adjustQuotaUse(_ allocation: Allocation, by sign: Int) {
        guard quotasActive else { return }
        var use = quotaUse[allocation.project] ?? state.quotaUse(of: allocation.project)
        use.total += sign * allocation.milliGPUs
        if let job = state.jobs[allocation.task.job], let k = state.guaranteeIndex(of: job), k < use.covered.count { use.covered[k] += sign * allocation.milliGPUs }
        quotaUse[allocation.project] = use
        if fences != nil, let slot = state.slot(of: allocation.node) {
            let cohort = state.projects[allocation.project]?.quota?.cohort
            fences?.add(sign * allocation.milliGPUs, cohort: cohort, nodeModel: nodes[slot].gpuModel)
        }
    }

    /// The fences as the pass stands: the state's, with this pass's placements and preemptions.
    func buildFences() -> CohortFences {
        var built = CohortFences(state: state)
        guard !built.isEmpty else { return built }
        func add(_ allocation: Allocation, _ sign: Int) {
            guard let slot = state.slot(of: allocation.node), state.nodes[slot].state.acceptsWork else { return }
            built.add(sign * allocation.milliGPUs, cohort: state.projects[allocation.project]?.quota?.cohort, nodeModel: nodes[slot].gpuModel)
        }
        for allocation in tentative.values { add(allocation, 1) }
        for id in preempted { if let allocation = state.allocations[id] { add(allocation, -1) } }
        return built
    }

    /// The fences the job being placed must respect, with its cohort (nil: none).
    var placingFences: (cohort: String?, fences: CohortFences)? {
        guard placingFenced, let fences else { return nil }
        return (placingCohort, fences)
    }

    // MARK: Reasons

    /// The most free whole GPUs of a fitting model on one ready node, as the pass stands.
    func currentFreeFit(for demand: TaskDemand) -> FreeFit? {
        guard demand.gpu != .none else { return nil }
        guard let fit = index.largestFreeFit(models: index.lookUpModels(demand.resources.gpuModel, minMemoryMiB: demand.resources.minGPUMemoryMiB)), fit.free > 0 else { return nil }
        return FreeFit(node: nodes[fit.slot].id, freeGPUs: fit.free, gpuModel: index.models[fit.model])
    }

}

/// Everything one candidate walk needs, held immutably: feasibility, device choice and score.
struct CandidateEvaluator {
    let nodes: [Node]
    let checks: [any FeasibilityCheck]
    let scorers: [WeightedScorer]
    let reservation: Reservation?
    let reservedSlots: Set<Int>
    let mix: WorkloadMix
    let seed: UInt64
    let sameGroupBySlot: [Int: Int]

    /// The devices the task would get on the node, or nil (tallying why) when a check fails.
    func devices(onSlot slot: Int, for demand: TaskDemand, failures: inout FailureTally) -> [DeviceAssignment]? {
        let node = nodes[slot]
        for check in checks {
            if let failure = check.failure(of: node, for: demand) {
                failures.add(failure)
                return nil
            }
        }
        // EASY: a reserved node is closed to work that would still run when the reservation starts.
        if let reservation, demand.job != reservation.job, demand.expectedEnd > reservation.start, reservedSlots.contains(slot) {
            failures.add(.reserved)
            return nil
        }
        guard let devices = DeviceSelection.devices(on: node, for: demand) else {
            failures.add(demand.gpu.checkFailure)
            return nil
        }
        return devices
    }

    func score(slot: Int, devices: [DeviceAssignment], task: TaskDemand) -> Int {
        let input = ScoringInput(node: nodes[slot], devices: devices, task: task, sameGroupOnNode: sameGroupBySlot[slot] ?? 0, mix: mix)
        var total = 0
        for weighted in scorers where weighted.weight != 0 {
            total += weighted.weight * weighted.scorer.score(input)
        }
        return total
    }
}
