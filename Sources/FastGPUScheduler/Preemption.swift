import FastGPUModel

extension SchedulingPass {
    /// Tries to place every waiting task of `job` by preempting work its policy says yields to it.
    /// Returns the number of allocations preempted, or nil (with nothing changed) when it cannot.
    ///
    /// Per task, every ready node of a fitting model is tried: its yielding allocations are
    /// released on a copy, cheapest first (spot, then lower class, then the least work lost), until
    /// the task fits. The node whose victims hold the fewest milli-GPUs wins, then the fewest
    /// victims, then the least work lost, then the seed's tie-break. A victim in a gang takes its
    /// whole gang with it, and counts so.
    ///
    /// Kubernetes picks the fewest victims first. Capacity first keeps a narrow claim from stopping
    /// a wide job whose other GPUs it leaves to whoever comes next, while the wide job waits for a
    /// whole free node again: on the Philly week (README), fewest-victims-first with capacity as
    /// the second key gives the default policy 13,934 s average JCT, capacity first 13,521 s.
    mutating func preempt(for job: Job, tasks: [TaskRef]) -> Int? {
        if runningRanks == nil { rankRunningJobs() }
        var rank = configuration.policy.claimRank(of: job, in: state, now: now)
        // A claim reclaims only within its guarantee (a CPU-only claim, with quotas, never does).
        rank.guaranteed = quotasActive ? placingStanding == .guaranteed : true
        // Nothing running ranks below this job: no search can find a victim.
        guard let lowest = lowestRunningRank, lowest < rank else { return nil }
        // A search that failed in this pass fails again for the same tasks at an equal or lower
        // rank: within a pass victims only go and capacity only shrinks.
        let shape = job.taskGroups.map { FailedSearch.Group(resources: $0.resources, count: $0.count) }
        if failedSearches.contains(where: { $0.groups == shape && rank <= $0.rank && $0.project == (quotasActive ? job.project : nil) }) { return nil }
        preemptionSearches += 1
        let transaction = beginTransaction()
        var victimsTotal = 0
        for task in tasks {
            let demand = TaskDemand(job: job, group: task.group, now: now, defaultRuntime: configuration.defaultRuntime)
            if placeTask(task, demand: demand, transaction: transaction) != nil { continue }
            guard let choice = cheapestVictims(for: demand, rank: rank, project: job.project) else {
                rollBack(transaction)
                failedSearches.append(FailedSearch(groups: shape, rank: rank, project: quotasActive ? job.project : nil))
                return nil
            }
            for victim in choice.victims { evict(victim, for: job.id, transaction: transaction) }
            victimsTotal += choice.victims.count
            guard let devices = DeviceSelection.devices(on: nodes[choice.slot], for: demand),
                  take(task, demand: demand, slot: choice.slot, devices: devices, transaction: transaction) != nil
            else {
                rollBack(transaction)
                return nil
            }
        }
        var victimJobs: [JobID] = []
        for id in transaction.preempted {
            if let victim = state.allocations[id]?.task.job, !victimJobs.contains(victim) { victimJobs.append(victim) }
        }
        if !configuration.policy.preemptionPays(victims: victimJobs.compactMap { state.jobs[$0] }, for: job, in: state, now: now) {
            rollBack(transaction)
            return nil
        }
        return victimsTotal
    }

    private struct VictimChoice {
        var slot: Int
        var victims: [Allocation]
        var count: Int
        /// Milli-GPUs of victims outside the claim's named cohort: a cohort reclaims what it
        /// lent to its own projects before it touches what outsiders hold beside its fence.
        var foreign: Int
        /// Milli-GPUs of the claim's own project's work, with quotas: a guaranteed claim takes
        /// back what others borrowed before it stops its own project's work (Kueue orders
        /// borrowing workloads of other queues first). Else a wide claim would stop one of its
        /// own wide jobs rather than several narrow borrowed ones, and its own work would churn.
        var own: Int
        /// Milli-GPUs the victims hold, gang partners on other nodes included.
        var disturbed: Int
        var lostWork: Int64
        var tie: UInt64

        func isCheaper(than other: VictimChoice) -> Bool {
            if own != other.own { return own < other.own }
            if foreign != other.foreign { return foreign < other.foreign }
            if disturbed != other.disturbed { return disturbed < other.disturbed }
            if count != other.count { return count < other.count }
            if lostWork != other.lostWork { return lostWork < other.lostWork }
            return tie < other.tie
        }
    }

    /// Ranks every job with running work once per pass (the rank of LAS changes with time, not
    /// within a pass).
    private mutating func rankRunningJobs() {
        var ranks: [JobID: PreemptionRank] = [:]
        let within = quotasActive ? state.jobsWithinGuarantee() : []
        for allocation in state.allocations.values where ranks[allocation.task.job] == nil {
            guard let job = state.jobs[allocation.task.job] else { continue }
            var rank = configuration.policy.preemptionRank(of: job, in: state, now: now)
            // Work on borrowed capacity yields to any work within a guarantee.
            if quotasActive { rank.guaranteed = within.contains(job.id) }
            ranks[job.id] = rank
        }
        runningRanks = ranks
        // Lower bounds: within its own project a claim ignores the guarantee (below), so with
        // quotas the bounds leave it out too.
        if quotasActive { for id in Array(ranks.keys) { ranks[id]?.guaranteed = false } }
        lowestRunningRank = ranks.values.min()
        var lowestBySlot = [PreemptionRank?](repeating: nil, count: nodes.count)
        for (slot, node) in state.nodes.enumerated() {
            for id in node.allocations {
                guard let job = state.allocations[id]?.task.job, let rank = ranks[job] else { continue }
                if lowestBySlot[slot].map({ rank < $0 }) ?? true { lowestBySlot[slot] = rank }
            }
        }
        lowestRankBySlot = lowestBySlot
    }

    private func cheapestVictims(for demand: TaskDemand, rank: PreemptionRank, project: ProjectID) -> VictimChoice? {
        var best: VictimChoice?
        let checks = configuration.checks
        let staticChecks: [any FeasibilityCheck] = [GPUModelCheck(), NodeSelectorCheck()]
        let cohort = quotasActive ? state.projects[project]?.quota?.cohort : nil
        let isForeign = { (victim: Allocation) in cohort != nil && state.projects[victim.project]?.quota?.cohort != cohort }
        for slot in nodes.indices where index.isIndexed(slot) {
            // Nothing on this node ranks below the job (a lower bound: victims only go in a pass).
            guard let lowest = lowestRankBySlot[slot], lowest < rank else { continue }
            let node = nodes[slot]
            if staticChecks.contains(where: { $0.failure(of: node, for: demand) != nil }) { continue }
            if let fenced = placingFences, fenced.fences.crossed(by: demand.gpu.milliGPUs, cohort: fenced.cohort, nodeModel: node.gpuModel) != nil { continue }
            if case .whole(let k) = demand.gpu, node.gpus.count < k { continue }
            var yielding: [Allocation] = []
            for id in node.allocations where tentative[id] == nil && !preempted.contains(id) {
                guard let allocation = state.allocations[id], var victimRank = runningRanks?[allocation.task.job] else { continue }
                // Quotas decide between projects; within one, its own policy does (Kueue's reclaim
                // within the cohort beside preemption within the queue).
                if allocation.project == project {
                    victimRank.guaranteed = rank.guaranteed
                } else if quotasActive && victimRank.guaranteed {
                    // Another project's work within its guarantee is never a victim, whatever the priorities.
                    continue
                }
                guard victimRank < rank else { continue }
                // Work that only ranks lower by the policy's own level (same tier and class) keeps
                // a grace after it starts: a restart costs more than a short wait.
                if victimRank.guaranteed == rank.guaranteed, victimRank.nonSpot == rank.nonSpot, victimRank.priority == rank.priority,
                   now.milliseconds(since: allocation.startTime) < configuration.preemptionGrace.wholeMilliseconds { continue }
                yielding.append(allocation)
            }
            guard !yielding.isEmpty else { continue }
            yielding.sort(by: Self.cheaperVictim)
            if quotasActive {
                // Within a node too: what others borrowed (the cohort's own projects first, then
                // outsiders) before the claim's own project's work.
                let key = { (victim: Allocation) in victim.project == project ? 2 : (isForeign(victim) ? 1 : 0) }
                yielding = (0...2).flatMap { k in yielding.filter { key($0) == k } }
            }
            var copy = node
            var victims: [Allocation] = []
            var count = 0
            var disturbed = 0
            var foreign = 0
            var own = 0
            var lost: Int64 = 0
            for victim in yielding {
                copy.release(victim)
                victims.append(victim)
                let gang = gangSize(of: victim)
                count += gang
                disturbed += victim.milliGPUs * gang
                if isForeign(victim) { foreign += victim.milliGPUs * gang }
                if quotasActive && victim.project == project { own += victim.milliGPUs * gang }
                lost += Int64(victim.milliGPUs) * now.milliseconds(since: victim.startTime)
                if checks.allSatisfy({ $0.failure(of: copy, for: demand) == nil }), DeviceSelection.devices(on: copy, for: demand) != nil {
                    let choice = VictimChoice(slot: slot, victims: victims, count: count, foreign: foreign, own: own, disturbed: disturbed, lostWork: lost, tie: Self.tieBreak(configuration.seed, node.id))
                    if best.map({ choice.isCheaper(than: $0) }) ?? true { best = choice }
                    break
                }
            }
        }
        return best
    }

    /// Spot before non-spot, lower class before higher, later start (less work lost) first.
    static func cheaperVictim(_ a: Allocation, _ b: Allocation) -> Bool {
        if a.spot != b.spot { return a.spot }
        if a.priority.value != b.priority.value { return a.priority.value < b.priority.value }
        if a.startTime != b.startTime { return a.startTime > b.startTime }
        return a.id < b.id
    }

    private func gangSize(of allocation: Allocation) -> Int {
        guard let job = state.jobs[allocation.task.job], job.taskGroups[allocation.task.group].gang else { return 1 }
        return job.liveAllocations.keys.count { $0.group == allocation.task.group }
    }

    /// Releases the victim, and its gang partners, on the scratch nodes and records the preemptions.
    private mutating func evict(_ victim: Allocation, for beneficiary: JobID, transaction: Transaction) {
        var victims = [victim]
        if let job = state.jobs[victim.task.job], job.taskGroups[victim.task.group].gang {
            victims = job.liveAllocations.filter { $0.key.group == victim.task.group }.values.sorted().compactMap { state.allocations[$0] }
        }
        for allocation in victims where !preempted.contains(allocation.id) {
            guard let slot = state.slot(of: allocation.node) else { continue }
            transaction.remember(slot, nodes[slot])
            nodes[slot].release(allocation)
            index.update(slot, freeWholeGPUs: nodes[slot].freeWholeGPUs)
            preempted.insert(allocation.id)
            adjustQuotaUse(allocation, by: -1)
            transaction.preempted.append(allocation.id)
            preemptions.append(Preemption(allocation: allocation.id, epoch: allocation.epoch, victim: allocation.task, beneficiary: beneficiary))
        }
    }
}

/// A victim search that found nothing, remembered for the rest of the pass.
struct FailedSearch {
    struct Group: Equatable {
        var resources: TaskResources
        var count: Int
    }

    var groups: [Group]
    var rank: PreemptionRank
    /// With quotas, a search is its project's (its own work ranks differently to it); else nil.
    var project: ProjectID?
}
