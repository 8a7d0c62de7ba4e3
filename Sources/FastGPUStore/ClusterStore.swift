public import FastGPUModel

/// One durable write, named for what happened. Rows are whole records (upserts): writing the
/// same record twice leaves one row, so a batch can carry the latest version of every row a
/// group of changes touched.
public enum StoreWrite: Hashable, Sendable {
    case saveProject(ProjectRecord)
    case saveMember(MemberRecord)
    case removeMember(ProjectID, subject: String)
    case saveToken(TokenRecord)
    /// A node and its GPUs, as registered or as changed (state, health, heartbeat).
    case saveNode(NodeRecord, gpus: [GPURecord])
    /// A new job, with the idempotency key it was submitted under.
    case submitJob(JobRecord, idempotency: IdempotencyRecord?)
    /// A job's lifecycle moved (placed, requeued, finished, cancelled).
    case saveJob(JobRecord)
    /// An allocation was created by a committed plan, reported on by its agent, or ended.
    case saveAllocation(AllocationRecord)
    case appendEvent(EventRecord)
    case appendLog(LogChunkRecord)
    case appendAudit(AuditRecord)
    case saveSecret(SecretRecord)
    case removeSecret(ProjectID, name: String)
    case saveStorageBackend(StorageBackendRecord)
    case removeStorageBackend(name: String)
    /// A service as it is now: spec, revision, replicas, recent events.
    case saveService(ServiceRecord)
    /// A deleted service whose replicas have all stopped.
    case removeService(name: String)
    /// Idempotency keys older than the retention are forgotten: a retry after that is a new job.
    case expireIdempotencyKeys(before: Timestamp)
    /// Ledger entries; one whose source id is already there is ignored (a replay).
    case appendCharges([Charge])
    case savePriceVersion(PriceVersionRecord)
    /// A project's budget, or none.
    case saveBudget(ProjectID, Budget?)
    /// A project's monthly package, or none (on-demand).
    case savePackage(ProjectID, BillingPackage?)
    case saveCredit(CreditRecord)
    /// A month's invoice, final: refused if that project's month has one already.
    case finaliseInvoice(InvoiceRecord)
    case setMeta(StoreMeta)
}

/// The writes of one or more changes, committed in one transaction: all or none.
public struct StoreBatch: Hashable, Sendable {
    public var writes: [StoreWrite]

    public init(_ writes: [StoreWrite] = []) { self.writes = writes }

    public var isEmpty: Bool { writes.isEmpty }
    public mutating func append(_ write: StoreWrite) { writes.append(write) }
    public mutating func append(contentsOf other: StoreBatch) { writes.append(contentsOf: other.writes) }
}

/// Everything a control plane needs to start: the rows of every table but the logs and events.
public struct StoredState: Hashable, Sendable {
    public var meta: StoreMeta?
    public var projects: [ProjectRecord]
    public var members: [MemberRecord]
    public var tokens: [TokenRecord]
    public var nodes: [NodeRecord]
    public var gpus: [GPURecord]
    public var jobs: [JobRecord]
    /// Live allocations only; ended ones stay in the store for history.
    public var liveAllocations: [AllocationRecord]
    public var idempotencyKeys: [IdempotencyRecord]
    public var secrets: [SecretRecord]
    public var services: [ServiceRecord] = []
    public var storageBackends: [StorageBackendRecord] = []
    public var billing = StoredBilling()

    public init(meta: StoreMeta? = nil, projects: [ProjectRecord] = [], members: [MemberRecord] = [], tokens: [TokenRecord] = [], nodes: [NodeRecord] = [],
                gpus: [GPURecord] = [], jobs: [JobRecord] = [], liveAllocations: [AllocationRecord] = [], idempotencyKeys: [IdempotencyRecord] = [],
                secrets: [SecretRecord] = []) {
        self.secrets = secrets
        self.meta = meta
        self.projects = projects
        self.members = members
        self.tokens = tokens
        self.nodes = nodes
        self.gpus = gpus
        self.jobs = jobs
        self.liveAllocations = liveAllocations
        self.idempotencyKeys = idempotencyKeys
    }

    /// True for a store that has never been written.
    public var isEmpty: Bool { meta == nil && projects.isEmpty && tokens.isEmpty && nodes.isEmpty && jobs.isEmpty }
}

/// Where the control plane's state lives. SQLite (`SQLiteClusterStore`) is the embedded default;
/// every adapter passes the same conformance suite (`ClusterStoreConformance` in the tests).
///
/// Writes are batches of intent-named `StoreWrite`s committed atomically and durably before the
/// call returns; reads of history (events, logs, ended allocations) page by sequence.
public protocol ClusterStore: Sendable {
    /// Everything needed to rebuild the control plane's memory.
    func load() async throws -> StoredState
    /// Commits every write of the batch in one transaction, durably, or none of them.
    func commit(_ batch: StoreBatch) async throws
    /// A job's events after `sequence`, oldest first.
    func events(job: JobID, after sequence: Int64, limit: Int) async throws -> [EventRecord]
    /// A job's log chunks in the order they were stored, after `position` (0: from the start).
    /// Allocations of one job write concurrently, so the order is the store's, not theirs.
    func logs(job: JobID, after position: Int64, limit: Int) async throws -> [StoredLogChunk]
    /// Every allocation the job ever had, live or ended, oldest first.
    func allocations(job: JobID) async throws -> [AllocationRecord]
    /// One allocation, live or ended.
    func allocation(_ id: AllocationID) async throws -> AllocationRecord?
    /// Audit records after `sequence`, oldest first; only `subject`'s when given.
    func audit(after sequence: Int64, limit: Int, subject: String?) async throws -> [AuditRecord]
    /// A project's charges that began in `[from, to)`, summed per job and line.
    func usage(project: ProjectID, from: Timestamp, to: Timestamp) async throws -> [LineUsage]
    /// A job's charges summed per line (its cost, once it is no longer in memory).
    func charges(of job: JobID, limit: Int) async throws -> [Charge]
}

/// A log chunk with its position in the store, which only grows: a reader passes the last
/// position it read to get what came after, whichever allocation wrote it.
public struct StoredLogChunk: Hashable, Sendable {
    public var position: Int64
    public var chunk: LogChunkRecord

    public init(position: Int64, chunk: LogChunkRecord) {
        self.position = position
        self.chunk = chunk
    }
}

/// A store failed in a way the caller cannot repair: the message is for operators' logs.
public struct StoreError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}
