public import FastGPUModel

/// One task's request as the placement pipeline reads it: the task group's resources with the
/// job's context (project, priority, spot) that checks and scorers need, resolved once per job.
public struct TaskDemand: Hashable, Sendable {
    public var job: JobID
    public var group: Int
    public var project: ProjectID
    public var priority: PriorityClass
    public var spot: Bool
    public var resources: TaskResources
    /// Tasks in the group (for spread and gang reasoning).
    public var groupCount: Int
    public var gang: Bool
    public var spread: Bool
    /// When the task is expected to end if started now; `distantFuture` without an estimate.
    public var expectedEnd: Timestamp

    public init(job: Job, group: Int, now: Timestamp, defaultRuntime: Duration?) {
        let taskGroup = job.taskGroups[group]
        self.job = job.id
        self.group = group
        self.project = job.project
        self.priority = job.priority
        self.spot = job.spot
        self.resources = taskGroup.resources
        self.groupCount = taskGroup.count
        self.gang = taskGroup.gang
        self.spread = taskGroup.placement == .spread
        self.expectedEnd = (job.plannedRuntime ?? defaultRuntime).map { now + $0 } ?? .distantFuture
    }

    public var gpu: GPURequest { resources.gpu }
    public var wholeGPUs: Int { if case .whole(let count) = resources.gpu { count } else { 0 } }
}
