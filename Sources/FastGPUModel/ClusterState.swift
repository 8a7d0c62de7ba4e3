/// Resource use over time, summed per project for fair share.
public struct ResourceUsage: Hashable, Sendable, Codable {
    /// milli-GPU × milliseconds.
    public var milliGPUMilliseconds: Int64 = 0
    /// CPU millicores × milliseconds.
    public var cpuMilliMilliseconds: Int64 = 0
    /// Memory MiB × milliseconds.
    public var memoryMiBMilliseconds: Int64 = 0

    public init(milliGPUMilliseconds: Int64 = 0, cpuMilliMilliseconds: Int64 = 0, memoryMiBMilliseconds: Int64 = 0) {
        self.milliGPUMilliseconds = milliGPUMilliseconds
        self.cpuMilliMilliseconds = cpuMilliMilliseconds
        self.memoryMiBMilliseconds = memoryMiBMilliseconds
    }
}

extension ResourceUsage {
    /// Adds `milliseconds` of use at these rates. Saturates instead of trapping: a year of a
    /// terabyte-node's memory in MiB × ms is near Int64's range, and usage only ranks projects.
    public mutating func add(milliGPUs: Int, cpuMillis: Int, memoryMiB: Int, milliseconds: Int64) {
        milliGPUMilliseconds = Self.saturating(milliGPUMilliseconds, plus: Int64(milliGPUs), times: milliseconds)
        cpuMilliMilliseconds = Self.saturating(cpuMilliMilliseconds, plus: Int64(cpuMillis), times: milliseconds)
        memoryMiBMilliseconds = Self.saturating(memoryMiBMilliseconds, plus: Int64(memoryMiB), times: milliseconds)
    }

    /// `a + b × c`, clamped to Int64's range.
    public static func saturating(_ a: Int64, plus b: Int64, times c: Int64) -> Int64 {
        let (product, overflow) = b.multipliedReportingOverflow(by: c)
        if overflow { return (b < 0) != (c < 0) ? .min : .max }
        let (sum, overflowed) = a.addingReportingOverflow(product)
        if overflowed { return product < 0 ? .min : .max }
        return sum
    }
}

/// A project as the scheduler sees it: its fair-share weight and what it has used.
public struct ProjectAccount: Hashable, Sendable, Codable {
    public var id: ProjectID
    /// Relative share of the cluster (≥ 1); twice the weight, twice the share.
    public var weight: Int
    /// Use by ended allocations, decayed by `ClusterChange.decayUsage`.
    public var usage: ResourceUsage
    /// Guaranteed GPUs and what it may borrow beyond them; nil: none guaranteed.
    public var quota: Quota?

    public init(id: ProjectID, weight: Int = 1, usage: ResourceUsage = ResourceUsage(), quota: Quota? = nil) {
        self.id = id
        self.weight = weight
        self.usage = usage
        self.quota = quota
    }
}

/// Every change the cluster state knows. The store, the control plane and the simulator all
/// mutate a `ClusterState` only through `apply(_:)` with one of these.
public enum ClusterChange: Sendable, Codable {
    case registerNode(Node)
    case setNodeState(NodeID, NodeState, at: Timestamp)
    case setGPUHealth(NodeID, gpu: Int, GPUHealth)
    case setProject(ProjectID, weight: Int)
    /// A project's quota, or none.
    case setQuota(ProjectID, Quota?)
    /// A new job, with what it runs (the simulator's jobs run nothing and have no launch).
    case submit(Job, launch: JobLaunch? = nil)
    case commit(VerifiedPlan, at: Timestamp)
    /// The agent reported the allocation's workload running (once; later reports change nothing).
    case allocationStarted(AllocationID, epoch: Epoch, at: Timestamp)
    /// The agent reported it pulling the job's image (once, and never after it started).
    case allocationPulling(AllocationID, epoch: Epoch, at: Timestamp)
    case endAllocation(AllocationID, AllocationOutcome, at: Timestamp, cause: EndCause = .exited)
    case cancel(JobID, at: Timestamp)
    /// Holds a waiting job back until `until` (the control plane's retry backoff after a loss).
    case deferJob(JobID, until: Timestamp)
    /// Its node or agent no longer runs the allocation: the task is retried after the policy's
    /// backoff, or, once the job's attempts (`JobLaunch.maxAttempts`) are used up, fails its job.
    case loseAllocation(AllocationID, at: Timestamp, cause: EndCause, retry: RetryPolicy)
    /// Multiplies every project's usage by `keepPermille`/1000 (a half-life step for fair share).
    case decayUsage(keepPermille: Int)
    /// The agent uploaded an exited allocation's outputs (or could not): an `uploading` job
    /// whose uploads are all settled ends as its tasks did, or fails when one could not upload.
    case settleUpload(JobID, AllocationID, succeeded: Bool, error: String? = nil, at: Timestamp)
    /// A job that failed because its outputs could not be uploaded tries those uploads again.
    case retryUploads(JobID)
}

/// A change that cannot apply: bad input, reported with what was wrong. Nothing was changed.
public enum ClusterChangeError: Error, Hashable, Sendable, CustomStringConvertible {
    case duplicateNode(NodeID)
    case unknownNode(NodeID)
    case duplicateJob(JobID)
    case unknownJob(JobID)
    case unknownAllocation(AllocationID)
    case invalidJob(JobID, String)
    case invalidNode(NodeID, String)
    case invalidWeight(Int)
    /// The plan was verified against another state index.
    case stalePlan(verifiedAt: UInt64, current: UInt64)
    case placementRefused(TaskRef, String)
    case staleEpoch(AllocationID, Epoch)

    public var description: String {
        switch self {
        case .duplicateNode(let n): "\(n) is already registered"
        case .unknownNode(let n): "\(n) is unknown"
        case .duplicateJob(let j): "\(j) already exists"
        case .unknownJob(let j): "\(j) is unknown"
        case .unknownAllocation(let a): "\(a) is unknown or ended"
        case .invalidJob(let j, let why): "\(j) is invalid: \(why)"
        case .invalidNode(let n, let why): "\(n) is invalid: \(why)"
        case .invalidWeight(let w): "weight \(w) must be at least 1"
        case .stalePlan(let at, let current): "plan verified at index \(at), state is at \(current)"
        case .placementRefused(let task, let why): "placement of \(task) refused: \(why)"
        case .staleEpoch(let id, let epoch): "\(id) is not at epoch \(epoch.rawValue)"
        }
    }
}

/// The whole cluster as the scheduler sees it: nodes with their device usage, jobs, live
/// allocations and project accounts.
///
/// A value type: a snapshot is a copy, and the scheduler may mutate a scratch copy freely.
/// Invariants: every live allocation is recorded on its node's GPUs and counters and in its job's
/// `liveAllocations`; `waiting` holds exactly the jobs with `isWaiting`, `awaitingUploads` exactly
/// those with `pendingUploads`; `index` grows by one with
/// every applied change and is the epoch of the allocations a commit creates.
public struct ClusterState: Sendable {
    public internal(set) var index: UInt64 = 0
    public internal(set) var nodes: [Node] = []
    private var nodeSlots: [NodeID: Int] = [:]
    public internal(set) var jobs: [JobID: Job] = [:]
    /// What each job runs; the scheduler never reads it.
    public internal(set) var launches: [JobID: JobLaunch] = [:]
    public internal(set) var allocations: [AllocationID: Allocation] = [:]
    public internal(set) var projects: [ProjectID: ProjectAccount] = [:]
    /// Jobs with tasks that need an allocation: the scheduler's input queue, unordered.
    public internal(set) var waiting: Set<JobID> = []
    /// Jobs with outputs an agent has yet to upload: what the nodes' assignments look at.
    public internal(set) var awaitingUploads: Set<JobID> = []
    public internal(set) var nextAllocationID: UInt64 = 1

    public init() {}

    public func node(_ id: NodeID) -> Node? { nodeSlots[id].map { nodes[$0] } }
    public func slot(of id: NodeID) -> Int? { nodeSlots[id] }

    /// The weight of a project; 1 for a project the state has not been told about.
    public func weight(of project: ProjectID) -> Int { projects[project]?.weight ?? 1 }

    /// Applies one change, all or nothing, and returns what happened: the allocations it
    /// created, started and ended (with how and why), the jobs it queued, requeued or cancelled,
    /// the nodes and GPUs whose state changed. Nothing happened when it throws.
    @discardableResult
    public mutating func apply(_ change: ClusterChange) throws(ClusterChangeError) -> [ClusterEvent] {
        var events: [ClusterEvent] = []
        switch change {
        case .registerNode(let node):
            guard nodeSlots[node.id] == nil else { throw .duplicateNode(node.id) }
            guard node.allocations.isEmpty, node.allocatedCPUMillis == 0 else { throw .invalidNode(node.id, "a new node holds no allocations") }
            guard node.cpuMillis >= 0, node.memoryMiB >= 0 else { throw .invalidNode(node.id, "negative capacity") }
            guard node.gpus.enumerated().allSatisfy({ $0.offset == $0.element.index }) else {
                throw .invalidNode(node.id, "GPU indices must be 0..<count in order")
            }
            nodeSlots[node.id] = nodes.count
            nodes.append(node)
            events.append(.nodeRegistered(node.id, name: node.name, gpus: node.gpus.count, again: false))

        case .setNodeState(let id, let state, let now):
            guard let slot = nodeSlots[id] else { throw .unknownNode(id) }
            if state == .down {
                // A down node holds nothing: its allocations are lost and their tasks requeued.
                for allocationID in nodes[slot].allocations.sorted() {
                    if let allocation = allocations[allocationID] {
                        events += end(allocation, outcome: .lost, at: now, cause: .nodeDown)
                    }
                }
            }
            let before = nodes[slot].state
            nodes[slot].state = state
            if before != state { events.append(.nodeStateChanged(id, from: before, to: state)) }

        case .setGPUHealth(let id, let gpu, let health):
            guard let slot = nodeSlots[id] else { throw .unknownNode(id) }
            guard nodes[slot].gpus.indices.contains(gpu) else { throw .invalidNode(id, "no gpu\(gpu)") }
            if nodes[slot].gpus[gpu].health != health { events.append(.gpuHealthChanged(id, gpu: gpu, health)) }
            nodes[slot].setHealth(health, ofGPU: gpu)

        case .setProject(let id, let weight):
            guard weight >= 1 else { throw .invalidWeight(weight) }
            projects[id, default: ProjectAccount(id: id)].weight = weight

        case .setQuota(let id, let quota):
            projects[id, default: ProjectAccount(id: id)].quota = quota

        case .submit(let job, let launch):
            guard jobs[job.id] == nil else { throw .duplicateJob(job.id) }
            if let why = Self.validate(job) { throw .invalidJob(job.id, why) }
            if let launch {
                guard !launch.command.isEmpty else { throw .invalidJob(job.id, "a job needs a command") }
                guard launch.maxAttempts >= 1 else { throw .invalidJob(job.id, "maxAttempts must be at least 1") }
                guard launch.network != .isolated || launch.image != nil else {
                    throw .invalidJob(job.id, "network isolated needs an image (a host process has none or host)")
                }
                launches[job.id] = launch
            }
            var fresh = job
            fresh.state = .pending
            fresh.liveAllocations = [:]
            fresh.completedTasks = []
            fresh.notBefore = nil
            fresh.finishedAt = nil
            fresh.history = []
            jobs[job.id] = fresh
            events.append(.submitted(job.id, project: job.project))
            waiting.insert(job.id)
            if projects[job.project] == nil { projects[job.project] = ProjectAccount(id: job.project) }

        case .commit(let plan, let now):
            guard plan.verifiedAt == index else { throw .stalePlan(verifiedAt: plan.verifiedAt, current: index) }
            try checkGangsComplete(plan)
            events += try commit(plan, at: now)

        case .allocationStarted(let id, let epoch, let now):
            guard var allocation = allocations[id] else { throw .unknownAllocation(id) }
            guard allocation.epoch == epoch else { throw .staleEpoch(id, epoch) }
            if allocation.runningSince == nil {
                allocation.runningSince = now
                allocations[id] = allocation
                events.append(.started(id, task: allocation.task, node: allocation.node))
            }

        case .allocationPulling(let id, let epoch, let now):
            guard var allocation = allocations[id] else { throw .unknownAllocation(id) }
            guard allocation.epoch == epoch else { throw .staleEpoch(id, epoch) }
            if allocation.runningSince == nil && allocation.pullingSince == nil {
                allocation.pullingSince = now
                allocations[id] = allocation
                events.append(.pulling(id, task: allocation.task, node: allocation.node, image: launches[allocation.task.job]?.image ?? ""))
            }

        case .endAllocation(let id, let outcome, let now, let cause):
            guard let allocation = allocations[id] else { throw .unknownAllocation(id) }
            events += end(allocation, outcome: outcome, at: now, cause: cause)

        case .cancel(let id, let now):
            guard var job = jobs[id] else { throw .unknownJob(id) }
            guard !job.state.isFinished else { break }
            job.state = .cancelled
            job.finishedAt = now
            jobs[id] = job
            waiting.remove(id)
            events.append(.cancelled(id))
            for allocationID in job.liveAllocations.values.sorted() {
                if let allocation = allocations[allocationID] { events += end(allocation, outcome: .cancelled, at: now, cause: .cancelled) }
            }

        case .loseAllocation(let id, let now, let cause, let retry):
            guard let allocation = allocations[id], let job = jobs[allocation.task.job] else { throw .unknownAllocation(id) }
            let tries = job.attempts / max(1, job.taskCount)
            if tries >= launches[job.id]?.maxAttempts ?? .max {
                events += end(allocation, outcome: .failed(exitCode: -1), at: now, cause: .outOfAttempts)
            } else {
                events += end(allocation, outcome: .lost, at: now, cause: cause)
                let backoff = retry.backoff(attempt: tries)
                if var requeued = jobs[job.id], requeued.isWaiting, backoff > .zero {
                    requeued.notBefore = now + backoff
                    jobs[job.id] = requeued
                    events.append(.requeued(job.id, notBefore: now + backoff))
                }
            }

        case .settleUpload(let id, let allocation, let succeeded, let error, let now):
            guard var job = jobs[id], job.pendingUploads.contains(allocation) else { throw .unknownAllocation(allocation) }
            job.pendingUploads.remove(allocation)
            if !succeeded { job.failedUploads.insert(allocation) }
            if job.pendingUploads.isEmpty { awaitingUploads.remove(id) }
            events.append(.outputsUploaded(id, allocation: allocation, succeeded: succeeded, error: error))
            if job.state == .uploading && job.pendingUploads.isEmpty {
                job.state = job.failedUploads.isEmpty ? job.stateAfterUploads ?? .succeeded : .failed
                job.finishedAt = now
            }
            jobs[id] = job

        case .retryUploads(let id):
            guard var job = jobs[id] else { throw .unknownJob(id) }
            guard job.outputUploadFailed else { throw .invalidJob(id, "only a job whose outputs could not be uploaded tries them again") }
            job.pendingUploads = job.failedUploads
            job.failedUploads = []
            job.uploadRetries += 1
            if !job.pendingUploads.isEmpty { awaitingUploads.insert(id) }
            job.state = .uploading
            job.finishedAt = nil
            jobs[id] = job
            events.append(.uploading(id))

        case .deferJob(let id, let until):
            guard var job = jobs[id] else { throw .unknownJob(id) }
            guard !job.state.isFinished else { break }
            job.notBefore = until
            jobs[id] = job
            events.append(.requeued(id, notBefore: until))

        case .decayUsage(let keep):
            let keep = Int64(max(0, min(1000, keep)))
            for id in projects.keys {
                projects[id]!.usage.milliGPUMilliseconds = projects[id]!.usage.milliGPUMilliseconds / 1000 * keep
                projects[id]!.usage.cpuMilliMilliseconds = projects[id]!.usage.cpuMilliMilliseconds / 1000 * keep
                projects[id]!.usage.memoryMiBMilliseconds = projects[id]!.usage.memoryMiBMilliseconds / 1000 * keep
            }
        }
        index += 1
        return events
    }

    /// Why a submitted job can never be accepted as written, or nil.
    public static func validate(_ job: Job) -> String? {
        if job.taskGroups.isEmpty { return "a job needs at least one task group" }
        for group in job.taskGroups {
            if group.count < 1 { return "task group \(group.name) needs a count of at least 1" }
            let r = group.resources
            if r.cpuMillis < 0 || r.memoryMiB < 0 { return "task group \(group.name) asks negative CPU or memory" }
            switch r.gpu {
            case .none: break
            case .whole(let count) where count < 1: return "task group \(group.name) asks \(count) GPUs"
            case .share(let milli, let memory) where milli < 1 || milli > 1000 || memory < 0:
                return "a GPU share needs 1...1000 milli-GPUs and non-negative memory"
            case .share(let milli, _) where milli == 1000:
                return "a share of 1000 milli-GPUs is a whole GPU: ask for whole GPUs"
            default: break
            }
        }
        if let estimate = job.runtimeEstimate, estimate < .zero { return "negative runtime estimate" }
        if let limit = job.runtimeLimit, limit <= .zero { return "runtime limit must be positive" }
        return nil
    }

    private func checkGangsComplete(_ plan: VerifiedPlan) throws(ClusterChangeError) {
        var placedPerGang: [TaskRef: Int] = [:]
        for placement in plan.placements where placement.gang {
            placedPerGang[TaskRef(job: placement.task.job, group: placement.task.group, index: 0), default: 0] += 1
        }
        for (gang, placed) in placedPerGang {
            guard let job = jobs[gang.job] else { throw .unknownJob(gang.job) }
            let group = job.taskGroups[gang.group]
            let held = job.heldTaskCount(group: gang.group)
            if held + placed != group.count {
                throw .placementRefused(gang, "gang group \(group.name) needs all \(group.count) tasks, plan and state hold \(held + placed)")
            }
        }
    }

    private mutating func commit(_ plan: VerifiedPlan, at now: Timestamp) throws(ClusterChangeError) -> [ClusterEvent] {
        // Check everything before changing anything: placements are staged per touched node on
        // copies after the preemptions' releases, and written back only when all of them fit.
        var staged: [Int: Node] = [:]
        var releasing: [(victim: Allocation, beneficiary: JobID)] = []
        for preemption in plan.preemptions {
            guard let victim = allocations[preemption.allocation], victim.epoch == preemption.epoch else { continue }
            releasing.append((victim, preemption.beneficiary))
            guard let slot = nodeSlots[victim.node] else { continue }
            var node = staged[slot] ?? nodes[slot]
            node.release(victim)
            staged[slot] = node
        }
        var created: [Allocation] = []
        var nextID = nextAllocationID
        var seen: Set<TaskRef> = []
        for placement in plan.placements {
            guard let job = jobs[placement.task.job] else { throw .unknownJob(placement.task.job) }
            guard job.isWaiting, job.taskGroups.indices.contains(placement.task.group),
                  (0..<job.taskGroups[placement.task.group].count).contains(placement.task.index),
                  job.liveAllocations[placement.task] == nil, !job.completedTasks.contains(placement.task),
                  seen.insert(placement.task).inserted
            else { throw .placementRefused(placement.task, "task is not waiting") }
            guard let slot = nodeSlots[placement.node] else { throw .unknownNode(placement.node) }
            var allocation = Allocation(
                id: AllocationID(nextID), task: placement.task, node: placement.node, devices: placement.devices,
                cpuMillis: placement.cpuMillis, memoryMiB: placement.memoryMiB, project: job.project,
                priority: job.priority, spot: job.spot, milliGPUs: job.taskGroups[placement.task.group].milliGPUsPerTask,
                epoch: Epoch(index + 1), startTime: now,
                expectedEnd: job.plannedRuntime.map { now + $0 } ?? .distantFuture)
            var node = staged[slot] ?? nodes[slot]
            if placement.borrowed { allocation.borrowed = true }
            if let shortage = node.reserve(allocation) { throw .placementRefused(placement.task, shortage.description) }
            staged[slot] = node
            created.append(allocation)
            nextID += 1
        }
        // Everything fits: end the victims (and the gang partners they take along) on the real
        // state, then take the new allocations' devices. Ending only frees capacity, so every
        // reservation checked above still fits.
        var events: [ClusterEvent] = []
        for (victim, beneficiary) in releasing where allocations[victim.id] != nil {
            events += end(victim, outcome: .preempted, at: now, cause: .preempted(for: beneficiary))
        }
        for allocation in created {
            let shortage = nodes[nodeSlots[allocation.node]!].reserve(allocation)
            // Checked on the staged copy above, and releases since only added capacity.
            precondition(shortage == nil, "staged reservation no longer fits: \(shortage!)")
        }
        for allocation in created {
            allocations[allocation.id] = allocation
            var job = jobs[allocation.task.job]!
            job.liveAllocations[allocation.task] = allocation.id
            job.attempts += 1
            job.state = .running
            jobs[job.id] = job
            if !job.isWaiting { waiting.remove(job.id) }
            events.append(.placed(allocation))
        }
        nextAllocationID = nextID
        return events
    }

    /// Ends one allocation and, where the job cannot go on without it, its gang partners.
    private mutating func end(_ allocation: Allocation, outcome: AllocationOutcome, at now: Timestamp, cause: EndCause) -> [ClusterEvent] {
        guard let allocation = allocations.removeValue(forKey: allocation.id) else { return [] }
        if let slot = nodeSlots[allocation.node] { nodes[slot].release(allocation) }
        var events: [ClusterEvent] = [.ended(allocation, outcome, cause: cause)]
        let runMilliseconds = now.milliseconds(since: allocation.startTime)
        var account = projects[allocation.project] ?? ProjectAccount(id: allocation.project)
        account.usage.add(milliGPUs: allocation.milliGPUs, cpuMillis: allocation.cpuMillis, memoryMiB: allocation.memoryMiB, milliseconds: runMilliseconds)
        projects[allocation.project] = account

        guard var job = jobs[allocation.task.job] else { return events }
        job.liveAllocations[allocation.task] = nil
        job.history.append(Attempt(allocation: allocation, outcome: outcome, cause: cause, endedAt: now))
        job.attainedMilliGPUMilliseconds = ResourceUsage.saturating(job.attainedMilliGPUMilliseconds, plus: Int64(allocation.milliGPUs), times: runMilliseconds)
        let gang = job.taskGroups[allocation.task.group].gang
        var partnersOutcome: AllocationOutcome?
        switch outcome {
        case .succeeded:
            job.completedTasks.insert(allocation.task)
        case .failed:
            if !job.state.isFinished { job.state = .failed }
            partnersOutcome = .cancelled
        case .lost, .preempted:
            // The task is requeued; a gang cannot go on with a member missing, so the rest of
            // its group is stopped and the whole group, finished members included, runs again.
            if gang {
                partnersOutcome = outcome
                job.completedTasks = job.completedTasks.filter { $0.group != allocation.task.group }
            }
        case .cancelled:
            break
        }
        // What an exited process left in its output directory is uploaded by its agent; the
        // job waits for it (without its GPUs), whatever its tasks' fate.
        if cause == .exited, job.outputs.contains(where: { $0.applies(to: outcome) }) { job.pendingUploads.insert(allocation.id) }
        if !job.state.isFinished && job.state != .uploading {
            if job.completedTasks.count == job.taskCount {
                job.state = .succeeded
            } else {
                job.state = job.liveAllocations.isEmpty ? .pending : .running
            }
        }
        if (job.state == .succeeded || job.state == .failed), job.finishedAt == nil, !job.pendingUploads.isEmpty {
            job.stateAfterUploads = job.state
            job.state = .uploading
            events.append(.uploading(job.id))
        }
        if job.state.isFinished && job.finishedAt == nil { job.finishedAt = now }
        jobs[job.id] = job
        if job.isWaiting { waiting.insert(job.id) } else { waiting.remove(job.id) }
        if !job.pendingUploads.isEmpty { awaitingUploads.insert(job.id) }

        if let partnersOutcome {
            // A failure stops the whole job; a lost or preempted gang member stops its group.
            let partners = job.liveAllocations
                .filter { partnersOutcome == .cancelled || $0.key.group == allocation.task.group }
                .values.sorted()
            for partner in partners {
                if let other = allocations[partner] { events += end(other, outcome: partnersOutcome, at: now, cause: .partnerEnded(partner: allocation.id)) }
            }
        }
        return events
    }
}

extension ClusterState {
    /// For a copy the scheduler decides or estimates on, never for the control plane's state: gives
    /// a job a run time (as if it had been estimated) and its live allocations the expected end
    /// `ending`. Not a change: nothing records it and `index` stays.
    public mutating func assumeRuntime(_ runtime: Duration, of id: JobID, ending: Timestamp) {
        guard var job = jobs[id] else { return }
        job.runtimeEstimate = runtime
        jobs[id] = job
        for allocation in job.liveAllocations.values where allocations[allocation] != nil {
            allocations[allocation]?.expectedEnd = ending
        }
    }
}
