public import FastGPUModel

// One record type per table. Records are plain values: the control plane builds them from its
// in-memory `ClusterState` and the store only persists and returns them. Nested values (a job's
// task groups, an allocation's devices) are stored as JSON columns; everything that is filtered,
// joined or ordered on has its own column.

/// A secret of a project's secret store, sealed for `project:ID:NAME`. Jobs of the project
/// refer to it by name (`secretRefs`); its value is never read back through the API.
public struct SecretRecord: Hashable, Sendable, Codable {
    public var projectID: ProjectID
    public var name: String
    public var sealed: String
    public var updatedAt: Timestamp
    public var updatedBy: String

    public init(projectID: ProjectID, name: String, sealed: String, updatedAt: Timestamp, updatedBy: String) {
        self.projectID = projectID
        self.name = name
        self.sealed = sealed
        self.updatedAt = updatedAt
        self.updatedBy = updatedBy
    }
}

/// A storage backend: a bucket of an S3-compatible service (or the control plane's own `local`
/// one) that projects save results to and read inputs from. Its credentials are sealed for
/// `storage:NAME` (access key id, secret and session token together): a copy of the database
/// alone reveals none of them.
public struct StorageBackendRecord: Hashable, Sendable, Codable {
    public var name: String
    /// `s3`, or `local` for the control plane's own (its endpoint is the server itself).
    public var kind: String
    public var endpoint: String
    public var region: String
    public var bucket: String
    /// `path` or `virtual-host`.
    public var addressing: String
    public var sealedCredentials: String
    /// The backend presigning uses when a request names none; at most one is.
    public var isDefault: Bool
    public var createdAt: Timestamp
    public var createdBy: String

    public init(name: String, kind: String, endpoint: String, region: String, bucket: String, addressing: String,
                sealedCredentials: String, isDefault: Bool, createdAt: Timestamp, createdBy: String) {
        self.name = name
        self.kind = kind
        self.endpoint = endpoint
        self.region = region
        self.bucket = bucket
        self.addressing = addressing
        self.sealedCredentials = sealedCredentials
        self.isDefault = isDefault
        self.createdAt = createdAt
        self.createdBy = createdBy
    }
}

public struct ProjectRecord: Hashable, Sendable, Codable {
    public var id: ProjectID
    public var name: String
    public var weight: Int
    public var usage: ResourceUsage
    public var createdAt: Timestamp
    /// The highest priority class (`low`, `normal`, `high`) the project's members may submit
    /// with, and so preempt with; set by a cluster admin.
    public var maxPriority: String
    /// Guaranteed GPUs and the borrowing limit; nil: none guaranteed.
    public var quota: Quota?

    public init(id: ProjectID, name: String, weight: Int, usage: ResourceUsage = ResourceUsage(), createdAt: Timestamp, maxPriority: String = PriorityClass.normal.name) {
        self.id = id
        self.name = name
        self.weight = weight
        self.usage = usage
        self.createdAt = createdAt
        self.maxPriority = maxPriority
    }
}

public struct MemberRecord: Hashable, Sendable, Codable {
    public var projectID: ProjectID
    /// Who: the subject of that person's tokens.
    public var subject: String
    public var role: MemberRole

    public init(projectID: ProjectID, subject: String, role: MemberRole) {
        self.projectID = projectID
        self.subject = subject
        self.role = role
    }
}

public struct TokenRecord: Hashable, Sendable, Codable {
    public var id: UInt64
    public var name: String
    /// Hex SHA-256 of the whole token; the token itself is never stored.
    public var secretHash: String
    /// The first characters of the token, for people to recognise it in a listing.
    public var displayPrefix: String
    public var kind: TokenKind
    public var subject: String
    /// Cluster-wide rights: every project, nodes, projects and tokens.
    public var clusterAdmin: Bool
    public var nodeID: NodeID?
    public var createdAt: Timestamp
    public var expiresAt: Timestamp?
    public var revokedAt: Timestamp?

    public init(id: UInt64, name: String, secretHash: String, displayPrefix: String, kind: TokenKind, subject: String,
                clusterAdmin: Bool = false, nodeID: NodeID? = nil, createdAt: Timestamp, expiresAt: Timestamp? = nil, revokedAt: Timestamp? = nil) {
        self.id = id
        self.name = name
        self.secretHash = secretHash
        self.displayPrefix = displayPrefix
        self.kind = kind
        self.subject = subject
        self.clusterAdmin = clusterAdmin
        self.nodeID = nodeID
        self.createdAt = createdAt
        self.expiresAt = expiresAt
        self.revokedAt = revokedAt
    }
}

public struct NodeRecord: Hashable, Sendable, Codable {
    public var id: NodeID
    public var name: String
    public var state: NodeState
    public var cpuMillis: Int
    public var memoryMiB: Int
    public var labels: [String: String]
    public var allowsCrossProjectSharing: Bool
    public var registeredAt: Timestamp
    public var lastHeartbeatAt: Timestamp?

    public init(id: NodeID, name: String, state: NodeState, cpuMillis: Int, memoryMiB: Int, labels: [String: String],
                allowsCrossProjectSharing: Bool, registeredAt: Timestamp, lastHeartbeatAt: Timestamp?) {
        self.id = id
        self.name = name
        self.state = state
        self.cpuMillis = cpuMillis
        self.memoryMiB = memoryMiB
        self.labels = labels
        self.allowsCrossProjectSharing = allowsCrossProjectSharing
        self.registeredAt = registeredAt
        self.lastHeartbeatAt = lastHeartbeatAt
    }
}

public struct GPURecord: Hashable, Sendable, Codable {
    public var nodeID: NodeID
    public var index: Int
    public var uuid: String
    public var model: String
    public var memoryMiB: Int
    public var island: Int
    public var health: GPUHealth
    public var migEnabled: Bool

    public init(nodeID: NodeID, gpu: GPU) {
        self.nodeID = nodeID
        self.index = gpu.index
        self.uuid = gpu.uuid
        self.model = gpu.model
        self.memoryMiB = gpu.memoryMiB
        self.island = gpu.island
        self.health = gpu.health
        self.migEnabled = gpu.migEnabled
    }

    public var gpu: GPU {
        GPU(index: index, uuid: uuid, model: model, memoryMiB: memoryMiB, island: island, health: health, migEnabled: migEnabled)
    }
}

public struct JobRecord: Hashable, Sendable, Codable {
    public var id: JobID
    public var projectID: ProjectID
    public var name: String
    public var submitter: String
    public var state: JobState
    public var submitTime: Timestamp
    public var finishedAt: Timestamp?
    /// The model's job: spec and lifecycle (its live allocations are re-derived on load).
    public var spec: Job
    public var launch: JobLaunch

    public init(job: Job, launch: JobLaunch) {
        self.id = job.id
        self.projectID = job.project
        self.name = job.name
        self.submitter = job.submitter
        self.state = job.state
        self.submitTime = job.submitTime
        self.finishedAt = job.finishedAt
        self.spec = job
        self.launch = launch
    }
}

public struct AllocationRecord: Hashable, Sendable, Codable {
    public var id: AllocationID
    public var jobID: JobID
    public var nodeID: NodeID
    public var epoch: Epoch
    public var live: Bool
    public var report: AllocationReport
    public var outcome: AllocationOutcome?
    public var startedAt: Timestamp
    public var endedAt: Timestamp?
    public var allocation: Allocation

    public init(allocation: Allocation, live: Bool, report: AllocationReport, outcome: AllocationOutcome?, endedAt: Timestamp?) {
        self.id = allocation.id
        self.jobID = allocation.task.job
        self.nodeID = allocation.node
        self.epoch = allocation.epoch
        self.live = live
        self.report = report
        self.outcome = outcome
        self.startedAt = allocation.startTime
        self.endedAt = endedAt
        self.allocation = allocation
    }
}

/// One event of the cluster's history: what happened (typed), when, and who asked for it.
public struct EventRecord: Hashable, Sendable {
    /// Assigned by the store, increasing; nil before it is written.
    public var sequence: Int64?
    public var time: Timestamp
    public var event: ClusterEvent
    /// The subject of the token whose request caused it; nil for the control plane's own
    /// decisions (a scheduling pass, liveness).
    public var actor: String?

    public init(sequence: Int64? = nil, time: Timestamp, event: ClusterEvent, actor: String? = nil) {
        self.sequence = sequence
        self.time = time
        self.event = event
        self.actor = actor
    }

    public var kind: String { event.kind }
    public var jobID: JobID? { event.job }
    public var nodeID: NodeID? { event.node }
    public var allocationID: AllocationID? { event.allocation }
}

public struct IdempotencyRecord: Hashable, Sendable, Codable {
    public var subject: String
    public var key: String
    /// Hex SHA-256 of the request body: the same key with another body is a client error.
    public var requestHash: String
    public var jobID: JobID
    public var createdAt: Timestamp

    public init(subject: String, key: String, requestHash: String, jobID: JobID, createdAt: Timestamp) {
        self.subject = subject
        self.key = key
        self.requestHash = requestHash
        self.jobID = jobID
        self.createdAt = createdAt
    }
}

public struct LogChunkRecord: Hashable, Sendable, Codable {
    public var allocationID: AllocationID
    /// The agent's sequence number within the allocation, from 0; a repeated upload is ignored.
    public var sequence: Int64
    public var jobID: JobID
    public var stream: LogStream
    public var time: Timestamp
    public var text: String

    public init(allocationID: AllocationID, sequence: Int64, jobID: JobID, stream: LogStream, time: Timestamp, text: String) {
        self.allocationID = allocationID
        self.sequence = sequence
        self.jobID = jobID
        self.stream = stream
        self.time = time
        self.text = text
    }
}

/// Counters the cluster state needs beyond its rows.
public struct StoreMeta: Hashable, Sendable, Codable {
    public var stateIndex: UInt64
    public var nextAllocationID: UInt64

    public init(stateIndex: UInt64, nextAllocationID: UInt64) {
        self.stateIndex = stateIndex
        self.nextAllocationID = nextAllocationID
    }
}

/// Who did what to which object, when, from where, and the outcome: one mutating request or one
/// refused credential. Append-only; never holds a secret (no bodies, no headers, no tokens).
public struct AuditRecord: Hashable, Sendable, Codable {
    /// Assigned by the store, increasing; nil before it is written.
    public var sequence: Int64?
    public var time: Timestamp
    /// The token's subject (`alice`, `node:gpu-7`); empty when no valid token came.
    public var subject: String
    /// The token's id; nil when no valid token came.
    public var tokenID: UInt64?
    /// `POST /v1/jobs/{id}/cancel`: the method and the route as documented.
    public var action: String
    /// The path as requested (`/v1/jobs/42/cancel`): the object acted on.
    public var target: String
    /// The caller's IP address.
    public var remoteAddress: String
    /// The HTTP status answered.
    public var status: Int
    /// Why a credential was refused (`expired`, `revoked`, ...); nil otherwise.
    public var failure: String?
    public var requestID: String

    public init(sequence: Int64? = nil, time: Timestamp, subject: String, tokenID: UInt64?, action: String, target: String,
                remoteAddress: String, status: Int, failure: String?, requestID: String) {
        self.sequence = sequence
        self.time = time
        self.subject = subject
        self.tokenID = tokenID
        self.action = action
        self.target = target
        self.remoteAddress = remoteAddress
        self.status = status
        self.failure = failure
        self.requestID = requestID
    }
}
