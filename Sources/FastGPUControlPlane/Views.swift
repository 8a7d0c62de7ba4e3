public import FastGPUModel
public import FastGPUStore

/// What a caller asks to run, after the API has mapped and checked its wire form.
public struct JobSubmission: Hashable, Sendable {
    public var project: String
    public var name: String?
    public var taskGroups: [TaskGroup]
    public var priority: PriorityClass
    public var spot: Bool
    public var runtimeEstimate: Duration?
    public var runtimeLimit: Duration?
    public var launch: JobLaunch
    /// Secret environment values as given (sealed before anything is stored).
    public var secrets: [String: String]
    /// Environment names taken from the project's secret store: env name → secret name.
    public var secretRefs: [String: String]
    /// Directories to upload after the process exits, to `s3://BACKEND/PREFIX/` (`{job_id}` in
    /// the prefix becomes the job's id).
    public var outputs: [OutputRequest]
    /// Objects to download before the command starts: `s3://BACKEND/KEY` (or `…/PREFIX/`) → path.
    public var inputs: [InputRequest] = []

    public struct InputRequest: Hashable, Sendable {
        public var from: String
        public var path: String

        public init(from: String, path: String) {
            self.from = from
            self.path = path
        }
    }

    public struct OutputRequest: Hashable, Sendable {
        public var path: String
        public var to: String
        public var when: OutputWhen

        public init(path: String, to: String, when: OutputWhen) {
            self.path = path
            self.to = to
            self.when = when
        }
    }

    public init(project: String, name: String? = nil, taskGroups: [TaskGroup], priority: PriorityClass = .normal, spot: Bool = false,
                runtimeEstimate: Duration? = nil, runtimeLimit: Duration? = nil, launch: JobLaunch,
                secrets: [String: String] = [:], secretRefs: [String: String] = [:], outputs: [OutputRequest] = [], inputs: [InputRequest] = []) {
        self.outputs = outputs
        self.inputs = inputs
        self.secrets = secrets
        self.secretRefs = secretRefs
        self.project = project
        self.name = name
        self.taskGroups = taskGroups
        self.priority = priority
        self.spot = spot
        self.runtimeEstimate = runtimeEstimate
        self.runtimeLimit = runtimeLimit
        self.launch = launch
    }
}

/// A pending job's place in the queue as of the last scheduling pass.
public struct QueueEntry: Hashable, Sendable {
    public var job: JobID
    public var project: ProjectID
    /// 1-based, over the whole queue (other projects' jobs count, though they are not shown).
    public var position: Int
    /// Nil for a job submitted after the last pass.
    public var reason: PendingReason?
    public var estimatedStart: Timestamp?
    /// The estimate used run times learned from finished jobs (for this job or work it waits
    /// for), not only the estimates and limits users gave.
    public var estimatedStartLearned: Bool = false
}

public struct AllocationView: Hashable, Sendable {
    public var allocation: Allocation
    public var live: Bool
    public var report: AllocationReport
    public var outcome: AllocationOutcome?
    public var endedAt: Timestamp?

    public init(allocation: Allocation, live: Bool, report: AllocationReport, outcome: AllocationOutcome?, endedAt: Timestamp?) {
        self.allocation = allocation
        self.live = live
        self.report = report
        self.outcome = outcome
        self.endedAt = endedAt
    }
}

public struct JobView: Hashable, Sendable {
    public var job: Job
    public var projectName: String
    public var launch: JobLaunch
    public var finishedAt: Timestamp?
    public var allocations: [AllocationView]
    public var queue: QueueEntry?
    /// What it was charged so far, in micro-units (live while it runs).
    public var costMicros: Int64 = 0
}

public struct NodeView: Hashable, Sendable {
    public var record: NodeRecord
    /// The node with its current usage.
    public var node: Node
    public var lastHeartbeatAt: Timestamp?
    /// Each GPU's last power and energy reading, by index.
    public var telemetry: [Int: GPUTelemetry] = [:]
    /// When each idle held GPU was first read at 0 %, by index.
    public var idleSince: [Int: Timestamp] = [:]
}

/// What an agent last read from a GPU beyond its health. Not scheduling input: kept beside the
/// cluster state, in memory, and exported (`nodes show`, `/metrics`).
public struct GPUTelemetry: Hashable, Sendable {
    public var powerWatts: Double?
    /// Energy since the driver loaded, in millijoules.
    public var energyMillijoules: Int64?
    /// 0–100 over the driver's last sample period.
    public var utilizationPercent: Int?
    public var memoryUsedMiB: Int?
    public var temperatureCelsius: Int?
    /// ECC errors since the driver loaded.
    public var eccCorrected: Int64?
    public var eccUncorrected: Int64?
    /// XID errors logged since the agent started, and the last one's code.
    public var xidErrors: Int?
    public var lastXid: Int?
    /// Made up by the agent for a simulated GPU.
    public var simulated = false

    public init(powerWatts: Double? = nil, energyMillijoules: Int64? = nil, utilizationPercent: Int? = nil, memoryUsedMiB: Int? = nil,
                temperatureCelsius: Int? = nil, eccCorrected: Int64? = nil, eccUncorrected: Int64? = nil, xidErrors: Int? = nil,
                lastXid: Int? = nil, simulated: Bool = false) {
        self.powerWatts = powerWatts
        self.energyMillijoules = energyMillijoules
        self.utilizationPercent = utilizationPercent
        self.memoryUsedMiB = memoryUsedMiB
        self.temperatureCelsius = temperatureCelsius
        self.eccCorrected = eccCorrected
        self.eccUncorrected = eccUncorrected
        self.xidErrors = xidErrors
        self.lastXid = lastXid
        self.simulated = simulated
    }

    /// Anything was read.
    public var isEmpty: Bool { self == GPUTelemetry() }
}

/// One allocation as its agent must run it.
public struct Assignment: Sendable {
    public var allocation: Allocation
    public var jobName: String
    public var launch: JobLaunch
    /// For a task group of several tasks: how many there are, and which node runs each rank.
    public var groupSize: Int
    public var rank: Int
    public var peers: [NodeID]
    /// The job's runtime limit, which the agent enforces.
    public var runtimeLimit: Duration?
    /// For a group of several tasks: where rank 0 runs (its node's `fastgpu.io/address` label,
    /// else its name) and a port derived from the job, what torchrun's rendezvous needs.
    public var masterAddress: String?
    public var masterPort: Int?
    /// The job's project: the agent runs the workload as that project's user.
    public var project: ProjectID
    /// The launch's inputs with their connections, credentials opened (for this agent only);
    /// an input whose backend was removed since submission is left out (the job then fails on it).
    public var inputs: [(source: InputSource, backend: ResolvedObject)] = []
    /// Steps to run in the allocation.
    public var steps: [StepView] = []
}

/// Outputs an agent must upload: those of an allocation of its node that exited, with the
/// backends' connections (credentials opened for the agent only).
public struct UploadAssignment: Sendable {
    public struct Output: Sendable {
        public var target: OutputTarget
        public var backend: ResolvedObject
    }

    public var job: JobID
    public var allocation: AllocationID
    /// The task's place in the job, for a job of several tasks: each uploads under `task-G.I/`.
    public var task: TaskRef
    public var taskCount: Int
    /// The job's upload retries so far: the agent uploads again when this moves.
    public var generation: Int
    public var outputs: [Output]
}

/// A node's whole desired set of allocations at a state index: the agent starts what is new
/// and stops what is gone, and uploads the outputs of what exited.
public struct Assignments: Sendable {
    public var index: UInt64
    public var allocations: [Assignment]
    public var uploads: [UploadAssignment] = []
}

/// A page of jobs, ordered by id.
public struct JobPage: Hashable, Sendable {
    public var jobs: [JobView]
    /// Pass as `after` to read the next page; nil on the last page.
    public var next: JobID?
}

/// What went wrong, in words safe to show the caller. The API maps each case to a status.
public enum ControlPlaneError: Error, Hashable, Sendable, CustomStringConvertible {
    /// 404: absent, or not visible to the caller (the two are indistinguishable on purpose).
    case notFound(String)
    /// 403: visible, but the caller's role does not allow it.
    case forbidden(String)
    /// 422: well-formed but not acceptable.
    case invalid(String)
    /// 409: conflicts with the current state (a stale epoch, a reused idempotency key).
    case conflict(String)
    /// 503: the store failed; nothing was acknowledged.
    case unavailable(String)
    /// 429: a limit of the caller's (waiting jobs, long polls) is reached; retry later.
    case tooMany(String)
    /// 402: the project's budget cannot hold the job's reservation (`budgetExhausted`).
    case budgetExhausted(String)

    public var description: String {
        switch self {
        case .notFound(let m), .forbidden(let m), .invalid(let m), .conflict(let m), .unavailable(let m), .tooMany(let m), .budgetExhausted(let m): m
        }
    }
}

/// Counts for `/metrics` and `/readyz`.
public struct ControlPlaneStats: Hashable, Sendable {
    /// Each project's spend this month against its budget.
    public var spend: [ProjectSpend] = []
    public var jobsByState: [JobState: Int]
    public var queueLength: Int
    public var nodesByState: [NodeState: Int]
    public var gpusTotal: Int
    /// In milli-GPUs, so that shares count.
    public var gpusAllocatedMilli: Int
    public var stateIndex: UInt64
    public var durableIndex: UInt64
    public var storeFailed: Bool
    /// Every GPU of every node, for per-GPU metrics.
    public var gpus: [GPUStat] = []
    /// Every service's replicas by state, for per-service metrics.
    public var services: [ServiceStat] = []
    public var nodes: [NodeStat] = []
    public var projects: [ProjectStat] = []
}

/// One node as `/metrics` exports it.
public struct NodeStat: Hashable, Sendable {
    public var name: String
    public var state: NodeState
    public var heartbeatAgeSeconds: Double?
}

/// One project as `/metrics` exports it.
public struct ProjectStat: Hashable, Sendable {
    public var name: String
    public var allocatedMilli: Int
    public var pendingJobs: Int
    public var oldestPendingSeconds: Double?
    /// How long its jobs waited from submission to their first placement (since the server started).
    public var queueWait: WaitHistogram
}

/// Counts of waits by upper bound in seconds, Prometheus-style (cumulative when exported).
public struct WaitHistogram: Hashable, Sendable {
    public static let bounds: [Double] = [1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400]
    /// One count per bound, then the count above the last.
    public private(set) var counts = [Int](repeating: 0, count: WaitHistogram.bounds.count + 1)
    public private(set) var sum: Double = 0
    public var count: Int { counts.reduce(0, +) }

    public init() {}

    public mutating func observe(_ seconds: Double) {
        counts[Self.bounds.firstIndex { seconds <= $0 } ?? Self.bounds.count] += 1
        sum += seconds
    }
}

/// A GPU held by running allocations and read at 0 % utilisation since `since`.
struct IdleRun: Hashable, Sendable {
    var since: Timestamp
    var holders: [AllocationID]
    /// Its `gpu-idle` events are recorded.
    var reported = false
}

/// One service as `/metrics` exports it.
public struct ServiceStat: Hashable, Sendable {
    public var name: String
    public var project: String
    public var desired: Int
    public var replicas: [ReplicaState: Int]
}

/// One GPU as `/metrics` exports it.
public struct GPUStat: Hashable, Sendable {
    public var node: String
    public var index: Int
    public var model: String
    public var healthy: Bool
    /// Milli-GPUs allocated (1000: all of it).
    public var allocatedMilli: Int
    public var telemetry: GPUTelemetry?
    /// The jobs holding it (several for a shared GPU or MIG instances).
    public var holders: [Holder] = []
    /// Held and at 0 % for this long (nil: not idle, or not held).
    public var idleSeconds: Int64?
    /// Idle for longer than the control plane's `idleGPUAfter`.
    public var idleReported = false

    public struct Holder: Hashable, Sendable {
        public var job: UInt64
        public var project: String
    }
}

extension Allocation {
    /// What its agent last said about a live allocation: nothing yet, or that it runs.
    var report: AllocationReport { runningSince != nil ? .running : pullingSince != nil ? .pulling : .assigned }
}
