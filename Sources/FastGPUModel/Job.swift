/// A named priority level. Higher `value` goes first and may preempt lower values.
public struct PriorityClass: Hashable, Comparable, Sendable, CustomStringConvertible, Codable {
    public var name: String
    public var value: Int

    public init(name: String, value: Int) {
        self.name = name
        self.value = value
    }

    public static let low = PriorityClass(name: "low", value: 0)
    public static let normal = PriorityClass(name: "normal", value: 100)
    /// A service's replicas: above batch, so batch work never preempts a replica serving traffic.
    public static let service = PriorityClass(name: "service", value: 500)
    public static let high = PriorityClass(name: "high", value: 1000)

    /// The classes a batch job may ask for, lowest first (`service` is for replicas).
    public static let all: [PriorityClass] = [.low, .normal, .high]

    public static func named(_ name: String) -> PriorityClass? { all.first { $0.name == name } }

    public static func < (lhs: PriorityClass, rhs: PriorityClass) -> Bool { lhs.value < rhs.value }
    public var description: String { name }
}

/// How the tasks of a group prefer to be laid out.
public enum PlacementPreference: String, Hashable, Sendable, Codable {
    /// Pack tightly (batch work: leaves whole nodes free for large jobs).
    case pack
    /// Spread over nodes (replicas: one node's loss takes few of them).
    case spread
}

/// `count` tasks with the same per-task resources. A gang group starts all its tasks together or
/// none; a plain group's tasks start as capacity allows (an array job).
public struct TaskGroup: Hashable, Sendable, Codable {
    public var name: String
    public var count: Int
    public var resources: TaskResources
    public var gang: Bool
    public var placement: PlacementPreference

    public init(name: String = "main", count: Int = 1, resources: TaskResources, gang: Bool = false, placement: PlacementPreference = .pack) {
        self.name = name
        self.count = count
        self.resources = resources
        self.gang = gang
        self.placement = placement
    }

    public var milliGPUsPerTask: Int { resources.gpu.milliGPUs }
}

/// When a task's output directory is uploaded, against how its process exited.
public enum OutputWhen: String, Hashable, Sendable, Codable, CaseIterable {
    case always
    case success
    case failure

    public func applies(to outcome: AllocationOutcome) -> Bool {
        switch (self, outcome) {
        case (.always, .succeeded), (.always, .failed), (.success, .succeeded), (.failure, .failed): true
        default: false
        }
    }
}

/// Where a job is in its life.
public enum JobState: String, Hashable, Sendable, CaseIterable, Codable {
    case pending
    case running
    /// Its processes are done (the GPUs are free) and its outputs are being uploaded; it ends
    /// as its tasks did once they are in the bucket, or fails when they cannot be.
    case uploading
    case succeeded
    case failed
    case cancelled

    public var isFinished: Bool { self == .succeeded || self == .failed || self == .cancelled }
}

/// A unit of batch work.
///
/// The submitted spec (`project` … `submitTime`) never changes; the lifecycle part below it is
/// written only by `ClusterState.apply(_:)`.
public struct Job: Hashable, Sendable, Identifiable, Codable {
    public var id: JobID
    public var name: String
    public var project: ProjectID
    /// Who submitted it (a project member's name); history-based policies learn per submitter.
    public var submitter: String
    public var priority: PriorityClass
    /// Spot work is preemptible by any non-spot work, and sold cheaper.
    public var spot: Bool
    public var taskGroups: [TaskGroup]
    /// The user's (or a predictor's) guess of the run time; drives SJF and backfill.
    public var runtimeEstimate: Duration?
    /// The run time after which the agent stops the job; backfill trusts it over the estimate.
    public var runtimeLimit: Duration?
    public var submitTime: Timestamp
    /// When each of its outputs is uploaded (the paths and buckets are in its launch): an
    /// allocation that exits with outputs to upload keeps the job from finishing until they are in.
    public var outputs: [OutputWhen] = []

    public internal(set) var state: JobState = .pending
    /// Allocations started for this job over its life (a preempted or lost gang counts each task).
    public internal(set) var attempts: Int = 0
    /// GPU time of ended allocations, in milli-GPU × milliseconds (Tiresias' attained service).
    public internal(set) var attainedMilliGPUMilliseconds: Int64 = 0
    /// The allocation running each task now.
    public internal(set) var liveAllocations: [TaskRef: AllocationID] = [:]
    /// Tasks of plain groups that ended successfully and must not run again.
    public internal(set) var completedTasks: Set<TaskRef> = []
    /// Requeued work waits until then before the scheduler considers it again (retry backoff).
    public internal(set) var notBefore: Timestamp?
    /// When it reached a finished state (succeeded, failed, cancelled).
    public internal(set) var finishedAt: Timestamp?
    /// Every allocation of the job that ended, oldest first. Rows written before the history
    /// existed have none: their ended allocations are in the store only.
    public internal(set) var history: [Attempt] = []
    /// Allocations that exited and whose outputs their agent has yet to upload.
    public internal(set) var pendingUploads: Set<AllocationID> = []
    /// Allocations whose outputs could not be uploaded (what a retry uploads again).
    public internal(set) var failedUploads: Set<AllocationID> = []
    /// What the job ends as once its outputs are in (while `uploading`).
    public internal(set) var stateAfterUploads: JobState?
    /// How many times its uploads were tried again: an agent tells a retry from the try it
    /// already reported on by this.
    public internal(set) var uploadRetries: Int = 0

    public init(id: JobID, name: String? = nil, project: ProjectID, submitter: String = "", priority: PriorityClass = .normal, spot: Bool = false,
                taskGroups: [TaskGroup], runtimeEstimate: Duration? = nil, runtimeLimit: Duration? = nil, submitTime: Timestamp) {
        self.id = id
        self.name = name ?? id.description
        self.project = project
        self.submitter = submitter
        self.priority = priority
        self.spot = spot
        self.taskGroups = taskGroups
        self.runtimeEstimate = runtimeEstimate
        self.runtimeLimit = runtimeLimit
        self.submitTime = submitTime
    }

    enum CodingKeys: String, CodingKey {
        case id, name, project, submitter, priority, spot, taskGroups, runtimeEstimate, runtimeLimit, submitTime
        case state, attempts, attainedMilliGPUMilliseconds, liveAllocations, completedTasks, notBefore, finishedAt, history
        case outputs, pendingUploads, failedUploads, stateAfterUploads, uploadRetries
    }

    /// Written out so that fields added later (`finishedAt`, `history`) read as absent from rows
    /// that predate them.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        id = try c.decode(JobID.self, forKey: .id)
        name = try c.decode(String.self, forKey: .name)
        project = try c.decode(ProjectID.self, forKey: .project)
        submitter = try c.decode(String.self, forKey: .submitter)
        priority = try c.decode(PriorityClass.self, forKey: .priority)
        spot = try c.decode(Bool.self, forKey: .spot)
        taskGroups = try c.decode([TaskGroup].self, forKey: .taskGroups)
        runtimeEstimate = try c.decodeIfPresent(Duration.self, forKey: .runtimeEstimate)
        runtimeLimit = try c.decodeIfPresent(Duration.self, forKey: .runtimeLimit)
        submitTime = try c.decode(Timestamp.self, forKey: .submitTime)
        state = try c.decode(JobState.self, forKey: .state)
        attempts = try c.decode(Int.self, forKey: .attempts)
        attainedMilliGPUMilliseconds = try c.decode(Int64.self, forKey: .attainedMilliGPUMilliseconds)
        liveAllocations = try c.decode([TaskRef: AllocationID].self, forKey: .liveAllocations)
        completedTasks = try c.decode(Set<TaskRef>.self, forKey: .completedTasks)
        notBefore = try c.decodeIfPresent(Timestamp.self, forKey: .notBefore)
        finishedAt = try c.decodeIfPresent(Timestamp.self, forKey: .finishedAt)
        history = try c.decodeIfPresent([Attempt].self, forKey: .history) ?? []
        // And before outputs.
        outputs = try c.decodeIfPresent([OutputWhen].self, forKey: .outputs) ?? []
        pendingUploads = try c.decodeIfPresent(Set<AllocationID>.self, forKey: .pendingUploads) ?? []
        failedUploads = try c.decodeIfPresent(Set<AllocationID>.self, forKey: .failedUploads) ?? []
        stateAfterUploads = try c.decodeIfPresent(JobState.self, forKey: .stateAfterUploads)
        uploadRetries = try c.decodeIfPresent(Int.self, forKey: .uploadRetries) ?? 0
    }

    /// It failed because outputs could not be uploaded (`output_upload_failed`).
    public var outputUploadFailed: Bool { state == .failed && !failedUploads.isEmpty }

    public var taskCount: Int { taskGroups.reduce(0) { $0 + $1.count } }

    /// Every task of the job, in group then index order.
    public var tasks: [TaskRef] {
        taskGroups.indices.flatMap { group in (0..<taskGroups[group].count).map { TaskRef(job: id, group: group, index: $0) } }
    }

    /// Tasks that still need an allocation.
    public var unplacedTasks: [TaskRef] {
        guard !state.isFinished, state != .uploading else { return [] }
        return tasks.filter { liveAllocations[$0] == nil && !completedTasks.contains($0) }
    }

    /// Tasks of a group that run now or already succeeded: a gang group holds all or none of them.
    public func heldTaskCount(group: Int) -> Int {
        liveAllocations.keys.count { $0.group == group } + completedTasks.count { $0.group == group }
    }

    /// Whether the job has tasks waiting for the scheduler.
    public var isWaiting: Bool {
        guard !state.isFinished, state != .uploading else { return false }
        return liveAllocations.count + completedTasks.count < taskCount
    }

    /// The GPU milli-units of all tasks (for accounting and fair share).
    public var milliGPUs: Int { taskGroups.reduce(0) { $0 + $1.count * $1.milliGPUsPerTask } }

    /// The run time that backfill plans with: the limit when given (the agent enforces it), else the estimate.
    /// Since when it waits: its submission, or the end of its last attempt when it waits again
    /// (requeued after a lost node, preempted).
    public var waitingSince: Timestamp { history.last.map { max($0.endedAt, submitTime) } ?? submitTime }

    public var plannedRuntime: Duration? { runtimeLimit.map { l in runtimeEstimate.map { min($0, l) } ?? l } ?? runtimeEstimate }
}
