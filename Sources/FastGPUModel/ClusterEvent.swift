/// Something that happened to the cluster, as a value: what `ClusterState.apply(_:)` returns for
/// every change it makes, and what the control plane records, publishes and (later) meters.
///
/// Events are facts, not sentences: text is made from them only at the edge (the API's event
/// list, the CLI). Who asked for a change is not part of the fact; the control plane records it
/// beside the event.
public enum ClusterEvent: Hashable, Sendable {
    // Jobs and their allocations.
    case submitted(JobID, project: ProjectID)
    /// A committed plan created the allocation (task, node, devices, epoch).
    case placed(Allocation)
    /// Its agent is pulling the workload's image onto the node (the allocation holds its devices).
    case pulling(AllocationID, task: TaskRef, node: NodeID, image: String)
    /// Its agent reported the workload's process running.
    case started(AllocationID, task: TaskRef, node: NodeID)
    /// The allocation ended, how, and why.
    case ended(Allocation, AllocationOutcome, cause: EndCause)
    /// A lost task waits for its retry backoff before it may be placed again.
    case requeued(JobID, notBefore: Timestamp)
    case cancelled(JobID)
    /// Every task of the job is done and what is left is uploading outputs (the GPUs are free).
    case uploading(JobID)
    /// An allocation's outputs reached the bucket (manifest written last), or could not.
    case outputsUploaded(JobID, allocation: AllocationID, succeeded: Bool, error: String?)

    // Nodes.
    case nodeRegistered(NodeID, name: String, gpus: Int, again: Bool)
    case nodeStateChanged(NodeID, from: NodeState, to: NodeState)
    /// A cluster admin revoked the node's credential so that another machine may take its name.
    case nodeReplaced(NodeID)
    case gpuHealthChanged(NodeID, gpu: Int, GPUHealth)
    /// An allocation has held the GPU at 0 % utilisation for `seconds` (reported once per idle
    /// run: busy again, then idle again for as long, is reported again): paid-for capacity doing nothing.
    case gpuIdle(AllocationID, task: TaskRef, node: NodeID, gpu: Int, seconds: Int64)

    // Projects.
    case projectChanged(ProjectID, weight: Int, maxPriority: String)
    case secretChanged(ProjectID, name: String, removed: Bool)

    // Money.
    /// A project's month passed its budget's soft threshold (or its limit, `exhausted`).
    case budgetThreshold(ProjectID, spentMicros: Int64, limitMicros: Int64, exhausted: Bool)
    /// A month's invoice was issued (final).
    case invoiceIssued(ProjectID, month: String, totalMicros: Int64)

    /// An event written before events were typed (a database from schema v4 or older): its
    /// kind and sentence as they were stored.
    case recorded(kind: String, message: String)

    /// The job the event is about, for per-job history.
    public var job: JobID? {
        switch self {
        case .submitted(let job, _), .requeued(let job, _), .cancelled(let job), .uploading(let job), .outputsUploaded(let job, _, _, _): job
        case .placed(let allocation), .ended(let allocation, _, _): allocation.task.job
        case .started(_, let task, _), .pulling(_, let task, _, _), .gpuIdle(_, let task, _, _, _): task.job
        default: nil
        }
    }

    public var node: NodeID? {
        switch self {
        case .placed(let allocation), .ended(let allocation, _, _): allocation.node
        case .started(_, _, let node), .pulling(_, _, let node, _), .gpuIdle(_, _, let node, _, _): node
        case .nodeRegistered(let node, _, _, _), .nodeStateChanged(let node, _, _), .nodeReplaced(let node), .gpuHealthChanged(let node, _, _): node
        default: nil
        }
    }

    public var allocation: AllocationID? {
        switch self {
        case .placed(let allocation), .ended(let allocation, _, _): allocation.id
        case .started(let id, _, _), .pulling(let id, _, _, _), .outputsUploaded(_, let id, _, _), .gpuIdle(let id, _, _, _, _): id
        default: nil
        }
    }

    /// A stable, short name for filtering and display (`placed`, `lost`, `node-down`).
    public var kind: String {
        switch self {
        case .submitted: "submitted"
        case .placed: "placed"
        case .pulling: "pulling"
        case .started: "started"
        case .ended(_, let outcome, let cause):
            switch (outcome, cause) {
            case (.succeeded, _), (.failed, .exited): "exited"
            case (.failed, _): "failed"
            case (.lost, _): "lost"
            case (.preempted, _): "preempted"
            case (.cancelled, _): "stopped"
            }
        case .requeued: "requeued"
        case .cancelled: "cancelled"
        case .uploading: "uploading"
        case .outputsUploaded(_, _, let succeeded, _): succeeded ? "outputs-uploaded" : "output-upload-failed"
        case .nodeRegistered: "node-registered"
        case .nodeStateChanged(_, _, let to): "node-\(to.rawValue)"
        case .nodeReplaced: "node-replaced"
        case .gpuHealthChanged: "gpu-health"
        case .gpuIdle: "gpu-idle"
        case .projectChanged: "project-updated"
        case .secretChanged(_, _, let removed): removed ? "secret-removed" : "secret-set"
        case .budgetThreshold(_, _, _, let exhausted): exhausted ? "budget-exhausted" : "budget-warning"
        case .invoiceIssued: "invoice-issued"
        case .recorded(let kind, _): kind
        }
    }
}

/// Why an allocation ended, beside how (`AllocationOutcome`).
public enum EndCause: Hashable, Sendable, Codable {
    /// Its agent reported the process's exit.
    case exited
    /// Its agent no longer runs it (the process died with the agent, say).
    case agentLostIt
    /// Its node went down (missed heartbeats, registered again, or replaced).
    case nodeDown
    /// Lost with no attempt left: the job failed.
    case outOfAttempts
    /// A plan stopped it to make room for this job.
    case preempted(for: JobID)
    /// Its job was cancelled.
    case cancelled
    /// Another allocation of its gang or its job ended, and it cannot go on without it.
    case partnerEnded(partner: AllocationID)
}

extension Array where Element == ClusterEvent {
    /// The allocations these events ended, in order.
    public var endedAllocations: [Allocation] {
        compactMap { if case .ended(let allocation, _, _) = $0 { allocation } else { nil } }
    }
}

/// Events are stored as JSON objects with a `type` and named fields, written out here by hand
/// so that renaming a Swift case or label cannot silently change what is on disk.
extension ClusterEvent: Codable {
    private enum Key: String, CodingKey {
        case type, job, project, allocation, allocationID, task, node, outcome, cause, notBefore, image
        case name, gpus, again, from, to, gpu, health, weight, maxPriority, removed, kind, message, succeeded
        case spentMicros, limitMicros, exhausted, month, totalMicros, seconds
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: Key.self)
        switch self {
        case .submitted(let job, let project):
            try c.encode("submitted", forKey: .type); try c.encode(job, forKey: .job); try c.encode(project, forKey: .project)
        case .placed(let allocation):
            try c.encode("placed", forKey: .type); try c.encode(allocation, forKey: .allocation)
        case .pulling(let id, let task, let node, let image):
            try c.encode("pulling", forKey: .type); try c.encode(id, forKey: .allocationID); try c.encode(task, forKey: .task); try c.encode(node, forKey: .node)
            try c.encode(image, forKey: .image)
        case .started(let id, let task, let node):
            try c.encode("started", forKey: .type); try c.encode(id, forKey: .allocationID); try c.encode(task, forKey: .task); try c.encode(node, forKey: .node)
        case .ended(let allocation, let outcome, let cause):
            try c.encode("ended", forKey: .type); try c.encode(allocation, forKey: .allocation)
            try c.encode(outcome, forKey: .outcome); try c.encode(cause, forKey: .cause)
        case .requeued(let job, let notBefore):
            try c.encode("requeued", forKey: .type); try c.encode(job, forKey: .job); try c.encode(notBefore, forKey: .notBefore)
        case .cancelled(let job):
            try c.encode("cancelled", forKey: .type); try c.encode(job, forKey: .job)
        case .uploading(let job):
            try c.encode("uploading", forKey: .type); try c.encode(job, forKey: .job)
        case .outputsUploaded(let job, let allocation, let succeeded, let error):
            try c.encode("outputsUploaded", forKey: .type); try c.encode(job, forKey: .job)
            try c.encode(allocation, forKey: .allocationID); try c.encode(succeeded, forKey: .succeeded)
            try c.encodeIfPresent(error, forKey: .message)
        case .nodeRegistered(let node, let name, let gpus, let again):
            try c.encode("nodeRegistered", forKey: .type); try c.encode(node, forKey: .node); try c.encode(name, forKey: .name)
            try c.encode(gpus, forKey: .gpus); try c.encode(again, forKey: .again)
        case .nodeStateChanged(let node, let from, let to):
            try c.encode("nodeStateChanged", forKey: .type); try c.encode(node, forKey: .node); try c.encode(from, forKey: .from); try c.encode(to, forKey: .to)
        case .nodeReplaced(let node):
            try c.encode("nodeReplaced", forKey: .type); try c.encode(node, forKey: .node)
        case .gpuHealthChanged(let node, let gpu, let health):
            try c.encode("gpuHealthChanged", forKey: .type); try c.encode(node, forKey: .node); try c.encode(gpu, forKey: .gpu); try c.encode(health, forKey: .health)
        case .gpuIdle(let id, let task, let node, let gpu, let seconds):
            try c.encode("gpuIdle", forKey: .type); try c.encode(id, forKey: .allocationID); try c.encode(task, forKey: .task)
            try c.encode(node, forKey: .node); try c.encode(gpu, forKey: .gpu); try c.encode(seconds, forKey: .seconds)
        case .projectChanged(let project, let weight, let maxPriority):
            try c.encode("projectChanged", forKey: .type); try c.encode(project, forKey: .project)
            try c.encode(weight, forKey: .weight); try c.encode(maxPriority, forKey: .maxPriority)
        case .secretChanged(let project, let name, let removed):
            try c.encode("secretChanged", forKey: .type); try c.encode(project, forKey: .project)
            try c.encode(name, forKey: .name); try c.encode(removed, forKey: .removed)
        case .budgetThreshold(let project, let spent, let limit, let exhausted):
            try c.encode("budgetThreshold", forKey: .type); try c.encode(project, forKey: .project)
            try c.encode(spent, forKey: .spentMicros); try c.encode(limit, forKey: .limitMicros); try c.encode(exhausted, forKey: .exhausted)
        case .invoiceIssued(let project, let month, let total):
            try c.encode("invoiceIssued", forKey: .type); try c.encode(project, forKey: .project)
            try c.encode(month, forKey: .month); try c.encode(total, forKey: .totalMicros)
        case .recorded(let kind, let message):
            try c.encode("recorded", forKey: .type); try c.encode(kind, forKey: .kind); try c.encode(message, forKey: .message)
        }
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: Key.self)
        let type = try c.decode(String.self, forKey: .type)
        switch type {
        case "submitted": self = .submitted(try c.decode(JobID.self, forKey: .job), project: try c.decode(ProjectID.self, forKey: .project))
        case "placed": self = .placed(try c.decode(Allocation.self, forKey: .allocation))
        case "pulling":
            self = .pulling(try c.decode(AllocationID.self, forKey: .allocationID), task: try c.decode(TaskRef.self, forKey: .task),
                            node: try c.decode(NodeID.self, forKey: .node), image: try c.decode(String.self, forKey: .image))
        case "started":
            self = .started(try c.decode(AllocationID.self, forKey: .allocationID), task: try c.decode(TaskRef.self, forKey: .task),
                            node: try c.decode(NodeID.self, forKey: .node))
        case "ended":
            self = .ended(try c.decode(Allocation.self, forKey: .allocation), try c.decode(AllocationOutcome.self, forKey: .outcome),
                          cause: try c.decode(EndCause.self, forKey: .cause))
        case "requeued": self = .requeued(try c.decode(JobID.self, forKey: .job), notBefore: try c.decode(Timestamp.self, forKey: .notBefore))
        case "cancelled": self = .cancelled(try c.decode(JobID.self, forKey: .job))
        case "uploading": self = .uploading(try c.decode(JobID.self, forKey: .job))
        case "outputsUploaded":
            self = .outputsUploaded(try c.decode(JobID.self, forKey: .job), allocation: try c.decode(AllocationID.self, forKey: .allocationID),
                                    succeeded: try c.decode(Bool.self, forKey: .succeeded), error: try c.decodeIfPresent(String.self, forKey: .message))
        case "nodeRegistered":
            self = .nodeRegistered(try c.decode(NodeID.self, forKey: .node), name: try c.decode(String.self, forKey: .name),
                                   gpus: try c.decode(Int.self, forKey: .gpus), again: try c.decode(Bool.self, forKey: .again))
        case "nodeStateChanged":
            self = .nodeStateChanged(try c.decode(NodeID.self, forKey: .node), from: try c.decode(NodeState.self, forKey: .from),
                                     to: try c.decode(NodeState.self, forKey: .to))
        case "nodeReplaced": self = .nodeReplaced(try c.decode(NodeID.self, forKey: .node))
        case "gpuHealthChanged":
            self = .gpuHealthChanged(try c.decode(NodeID.self, forKey: .node), gpu: try c.decode(Int.self, forKey: .gpu),
                                     try c.decode(GPUHealth.self, forKey: .health))
        case "gpuIdle":
            self = .gpuIdle(try c.decode(AllocationID.self, forKey: .allocationID), task: try c.decode(TaskRef.self, forKey: .task),
                            node: try c.decode(NodeID.self, forKey: .node), gpu: try c.decode(Int.self, forKey: .gpu),
                            seconds: try c.decode(Int64.self, forKey: .seconds))
        case "projectChanged":
            self = .projectChanged(try c.decode(ProjectID.self, forKey: .project), weight: try c.decode(Int.self, forKey: .weight),
                                   maxPriority: try c.decode(String.self, forKey: .maxPriority))
        case "secretChanged":
            self = .secretChanged(try c.decode(ProjectID.self, forKey: .project), name: try c.decode(String.self, forKey: .name),
                                  removed: try c.decode(Bool.self, forKey: .removed))
        case "budgetThreshold":
            self = .budgetThreshold(try c.decode(ProjectID.self, forKey: .project), spentMicros: try c.decode(Int64.self, forKey: .spentMicros),
                                    limitMicros: try c.decode(Int64.self, forKey: .limitMicros), exhausted: try c.decode(Bool.self, forKey: .exhausted))
        case "invoiceIssued":
            self = .invoiceIssued(try c.decode(ProjectID.self, forKey: .project), month: try c.decode(String.self, forKey: .month),
                                  totalMicros: try c.decode(Int64.self, forKey: .totalMicros))
        case "recorded": self = .recorded(kind: try c.decode(String.self, forKey: .kind), message: try c.decode(String.self, forKey: .message))
        default:
            // Written by a newer server: kept, shown by its type, never a failed read.
            self = .recorded(kind: type, message: "")
        }
    }
}
