/// One attempt of one task on one node, with its devices and its epoch.
public struct Allocation: Hashable, Sendable, Identifiable, Codable {
    public var id: AllocationID
    public var task: TaskRef
    public var node: NodeID
    public var devices: [DeviceAssignment]
    public var cpuMillis: Int
    public var memoryMiB: Int
    public var project: ProjectID
    public var priority: PriorityClass
    public var spot: Bool
    /// The allocation's GPU weight in milli-GPUs (1000 per whole GPU).
    public var milliGPUs: Int
    public var epoch: Epoch
    public var startTime: Timestamp
    /// When backfill and preemption expect it to end; `distantFuture` when the job gave no estimate.
    public var expectedEnd: Timestamp
    /// When its agent reported the workload running (`startTime` is when the plan committed);
    /// nil until then. Written by `ClusterState.apply(.allocationStarted)`.
    public internal(set) var runningSince: Timestamp?
    /// When its agent began pulling the job's image; nil for a job without one, or one whose
    /// image the node had. Written by `ClusterState.apply(.allocationPulling)`.
    public internal(set) var pullingSince: Timestamp?
    /// Placed beyond its project's guaranteed quota (its standing when placed, for people and
    /// metrics; the scheduler re-derives standing each pass from its project's use, oldest work
    /// first: `ClusterState.jobsWithinGuarantee`). Nil (stored before quotas) means false.
    public var borrowed: Bool?

    public init(id: AllocationID, task: TaskRef, node: NodeID, devices: [DeviceAssignment], cpuMillis: Int, memoryMiB: Int,
                project: ProjectID, priority: PriorityClass, spot: Bool, milliGPUs: Int, epoch: Epoch, startTime: Timestamp, expectedEnd: Timestamp) {
        self.id = id
        self.task = task
        self.node = node
        self.devices = devices
        self.cpuMillis = cpuMillis
        self.memoryMiB = memoryMiB
        self.project = project
        self.priority = priority
        self.spot = spot
        self.milliGPUs = milliGPUs
        self.epoch = epoch
        self.startTime = startTime
        self.expectedEnd = expectedEnd
    }
}

/// How an allocation ended.
public enum AllocationOutcome: Hashable, Sendable, Codable {
    /// The process exited 0.
    case succeeded
    /// The process exited non-zero or could not start.
    case failed(exitCode: Int32)
    /// Its node went down or its agent lost it: not the job's fault, so the task is requeued.
    case lost
    /// Stopped by a plan's preemption: requeued.
    case preempted
    /// Stopped because the user cancelled the job.
    case cancelled
}

/// What the agent last said about an allocation.
public enum AllocationReport: String, Hashable, Sendable, Codable {
    /// Committed; the agent has not confirmed it yet.
    case assigned
    /// Its agent is pulling the job's image.
    case pulling
    case running
    case exited
    /// The control plane ended it (preempted, cancelled, lost) and told the agent to stop.
    case stopping
}
