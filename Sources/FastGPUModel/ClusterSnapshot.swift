/// Everything a `ClusterState` holds, in plain lists: what a store persists and what a restarted
/// control plane rebuilds the state from.
///
/// Nodes are kept without their usage (it is derived: restoring replays every live allocation
/// onto its node), jobs with their lifecycle except `liveAllocations` (derived from the
/// allocations). Restoring checks everything it derives, so a snapshot that does not add up is
/// refused instead of becoming a state that over-commits a GPU.
public struct ClusterSnapshot: Hashable, Sendable, Codable {
    public var index: UInt64
    public var nextAllocationID: UInt64
    public var nodes: [Node]
    public var jobs: [Job]
    public var allocations: [Allocation]
    public var projects: [ProjectAccount]
    public var launches: [JobID: JobLaunch]

    public init(index: UInt64, nextAllocationID: UInt64, nodes: [Node], jobs: [Job], allocations: [Allocation], projects: [ProjectAccount],
                launches: [JobID: JobLaunch] = [:]) {
        self.launches = launches
        self.index = index
        self.nextAllocationID = nextAllocationID
        self.nodes = nodes
        self.jobs = jobs
        self.allocations = allocations
        self.projects = projects
    }
}

extension ClusterState {
    /// The state as plain lists, in a stable order (nodes as registered, jobs and allocations by id).
    public var snapshot: ClusterSnapshot {
        ClusterSnapshot(
            index: index, nextAllocationID: nextAllocationID,
            nodes: nodes.map { Node(id: $0.id, name: $0.name, gpus: $0.gpus.map(\.withoutUsage), cpuMillis: $0.cpuMillis, memoryMiB: $0.memoryMiB,
                                     labels: $0.labels, state: $0.state, allowsCrossProjectSharing: $0.allowsCrossProjectSharing) },
            jobs: jobs.values.sorted { $0.id < $1.id },
            allocations: allocations.values.sorted { $0.id < $1.id },
            projects: projects.values.sorted { $0.id < $1.id },
            launches: launches)
    }

    /// Rebuilds a state from a snapshot, re-deriving node usage and each job's live allocations.
    public init(restoring snapshot: ClusterSnapshot) throws(ClusterChangeError) {
        self.init()
        for node in snapshot.nodes {
            let fresh = Node(id: node.id, name: node.name, gpus: node.gpus.map(\.withoutUsage), cpuMillis: node.cpuMillis, memoryMiB: node.memoryMiB,
                             labels: node.labels, state: node.state, allowsCrossProjectSharing: node.allowsCrossProjectSharing)
            try apply(.registerNode(fresh))
        }
        for project in snapshot.projects {
            guard project.weight >= 1 else { throw .invalidWeight(project.weight) }
            projects[project.id] = project
        }
        for job in snapshot.jobs {
            guard jobs[job.id] == nil else { throw .duplicateJob(job.id) }
            if let why = Self.validate(job) { throw .invalidJob(job.id, why) }
            var restored = job
            restored.liveAllocations = [:]
            jobs[job.id] = restored
            if projects[job.project] == nil { projects[job.project] = ProjectAccount(id: job.project) }
        }
        for allocation in snapshot.allocations.sorted(by: { $0.id < $1.id }) {
            guard allocation.id.rawValue < snapshot.nextAllocationID else {
                throw .placementRefused(allocation.task, "\(allocation.id) is not below the next allocation id")
            }
            guard allocations[allocation.id] == nil else { throw .placementRefused(allocation.task, "\(allocation.id) appears twice") }
            guard var job = jobs[allocation.task.job], !job.state.isFinished, job.liveAllocations[allocation.task] == nil,
                  job.taskGroups.indices.contains(allocation.task.group) else {
                throw .placementRefused(allocation.task, "no running task for \(allocation.id)")
            }
            guard let slot = slot(of: allocation.node) else { throw .unknownNode(allocation.node) }
            guard nodes[slot].state != .down else { throw .placementRefused(allocation.task, "\(allocation.node) is down") }
            if let shortage = nodes[slot].reserve(allocation, existing: true) { throw .placementRefused(allocation.task, shortage.description) }
            allocations[allocation.id] = allocation
            job.liveAllocations[allocation.task] = allocation.id
            jobs[job.id] = job
        }
        for job in jobs.values {
            for (group, taskGroup) in job.taskGroups.enumerated() where taskGroup.gang {
                let live = job.liveAllocations.keys.count { $0.group == group }
                if live > 0 && job.heldTaskCount(group: group) != taskGroup.count {
                    throw .placementRefused(TaskRef(job: job.id, group: group, index: 0), "gang runs \(live) of \(taskGroup.count) tasks")
                }
            }
            if job.isWaiting { waiting.insert(job.id) }
            if !job.pendingUploads.isEmpty { awaitingUploads.insert(job.id) }
        }
        for (id, launch) in snapshot.launches where jobs[id] != nil { launches[id] = launch }
        index = snapshot.index
        nextAllocationID = snapshot.nextAllocationID
    }
}

extension Job {
    /// The job with its finish time filled in where a row from before that field had none
    /// (the store knew it from its own column). A finish time already set wins.
    public func restoringFinishedAt(_ time: Timestamp?) -> Job {
        var job = self
        if job.finishedAt == nil && job.state.isFinished { job.finishedAt = time }
        return job
    }
}

extension Allocation {
    /// The allocation with its running time filled in where a row from before that field had
    /// none but its agent had confirmed it running: `startTime` is the best that is known.
    public func restoringRunning(_ confirmed: Bool) -> Allocation {
        var allocation = self
        if confirmed && allocation.runningSince == nil { allocation.runningSince = allocation.startTime }
        return allocation
    }

    /// The allocation as stored while its image was being pulled.
    public func restoringPulling(_ pulling: Bool) -> Allocation {
        var allocation = self
        if pulling && allocation.runningSince == nil && allocation.pullingSince == nil { allocation.pullingSince = allocation.startTime }
        return allocation
    }
}

extension GPU {
    /// The device as the probe reports it: no allocation on it (MIG mode kept, empty).
    var withoutUsage: GPU {
        GPU(index: index, uuid: uuid, model: model, memoryMiB: memoryMiB, island: island, health: health, migEnabled: migEnabled)
    }
}

extension ClusterState {
    /// The state with `held` allocations' devices, CPU and memory still taken on their nodes:
    /// work that ended here but whose processes may still run (their agents are stopping them).
    /// A scheduling pass on it places nothing on what they hold. They are not in `allocations`,
    /// so nothing preempts them or plans with their end; an allocation whose devices another
    /// has taken since (work a preemption placed there) adds nothing.
    public func holding(_ held: [Allocation]) -> ClusterState {
        guard !held.isEmpty else { return self }
        var copy = self
        for allocation in held {
            guard let slot = copy.slot(of: allocation.node), copy.allocations[allocation.id] == nil else { continue }
            _ = copy.nodes[slot].reserve(allocation, existing: true)
        }
        return copy
    }
}
