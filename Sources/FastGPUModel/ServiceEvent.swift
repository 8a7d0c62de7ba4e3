/// What happened to a service, with the figures behind each decision (`fastgpu services events NAME`).
public enum ServiceEvent: Hashable, Sendable, Codable {
    case created(revision: Int)
    case revised(revision: Int)
    /// The autoscaler (or a user's `scale`) changed the replica count.
    case scaled(from: Int, to: Int, reason: String, stableMilli: Int, panicMilli: Int, panicking: Bool)
    case replicaStarted(job: JobID, revision: Int)
    case replicaReady(job: JobID, allocation: AllocationID, startupMilliseconds: Int64)
    case replicaUnready(job: JobID, allocation: AllocationID)
    case replicaExited(job: JobID, state: JobState)
    case replicaDraining(job: JobID, inFlight: Int)
    case replicaStopped(job: JobID)
    /// Replicas keep failing: the next starts no earlier than this many milliseconds.
    case restartBackoff(failures: Int, delayMilliseconds: Int64)
    case deleted
}

/// A service event with its time.
public struct ServiceEventRecord: Hashable, Sendable, Codable {
    public var time: Timestamp
    public var event: ServiceEvent
    public init(time: Timestamp, event: ServiceEvent) {
        self.time = time
        self.event = event
    }
}

/// A replica a service started: its job, its revision, and whether it drains.
public struct ReplicaRecord: Hashable, Sendable, Codable {
    public var job: JobID
    public var revision: Int
    public var drainingSince: Timestamp?
    public init(job: JobID, revision: Int, drainingSince: Timestamp? = nil) {
        self.job = job
        self.revision = revision
        self.drainingSince = drainingSince
    }
}

/// A service as stored: its current spec and revision, its replicas, its recent events.
public struct ServiceRecord: Hashable, Sendable, Codable {
    public var name: String
    public var project: ProjectID
    public var createdBy: String
    public var createdAt: Timestamp
    public var updatedAt: Timestamp
    public var revision: Int
    public var spec: ServiceSpec
    /// The count the autoscaler (or a user) asks for now.
    public var desiredReplicas: Int
    public var replicas: [ReplicaRecord]
    /// Replicas that ended without ever serving, in a row; reset by a ready one.
    public var failures: Int
    public var restartNotBefore: Timestamp?
    /// Deleted: every replica drains, then the record goes.
    public var deleting: Bool
    /// The last `maxEvents` events, oldest first.
    public var events: [ServiceEventRecord]

    public static let maxEvents = 200

    public init(name: String, project: ProjectID, createdBy: String, createdAt: Timestamp, spec: ServiceSpec) {
        self.name = name
        self.project = project
        self.createdBy = createdBy
        self.createdAt = createdAt
        self.updatedAt = createdAt
        self.revision = 1
        self.spec = spec
        self.desiredReplicas = spec.replicas.min
        self.replicas = []
        self.failures = 0
        self.restartNotBefore = nil
        self.deleting = false
        self.events = []
    }

    public mutating func append(_ event: ServiceEvent, at time: Timestamp) {
        events.append(ServiceEventRecord(time: time, event: event))
        if events.count > Self.maxEvents { events.removeFirst(events.count - Self.maxEvents) }
    }
}
