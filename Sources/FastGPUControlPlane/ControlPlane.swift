public import FastGPUModel
public import FastGPUScheduler
public import FastGPUStore
public import Logging

/// The control plane's memory: the cluster state the scheduler reads, plus projects, members,
/// tokens, launches and the queue as the last pass left it.
///
/// Every change is applied here, then written through to the store; callers are answered only
/// once the store has committed it (group commit: changes that arrive while a transaction is on
/// its way share the next one). Agents see only durable state. If the store fails, the control
/// plane refuses further writes (`unavailable`) — a restart rebuilds memory from what was
/// committed, and nothing acknowledged was lost.
public actor ControlPlane {
    public nonisolated let tokens = TokenTable()
    /// Durable jobs, the queue and memberships for readers; see `ReadModel`.
    public nonisolated let reads: ReadModel
    /// Who did what: the API appends a record for every mutating request and refused credential.
    public nonisolated let audit: AuditLog
    /// Seals jobs' and projects' secrets for the store; opens them for assignments.
    public nonisolated let secretBox: SecretBox
    public nonisolated let configuration: ControlPlaneConfiguration
    let store: any ClusterStore
    nonisolated let clock: any WallClock
    let logger: Logger

    var state = ClusterState()
    var projects: [ProjectID: ProjectRecord] = [:]
    var projectIDs: [String: ProjectID] = [:]
    var members: [ProjectID: [String: MemberRole]] = [:]
    var tokenRecords: [UInt64: TokenRecord] = [:]
    var nodeRecords: [NodeID: NodeRecord] = [:]
    var nodeIDs: [String: NodeID] = [:]
    var lastHeartbeat: [NodeID: Timestamp] = [:]
    /// What an operator had set (cordoned, draining) on a node that then went down: it comes back so.
    var stateBeforeDown: [NodeID: NodeState] = [:]
    /// Ended allocations whose agents may still be stopping them: their GPUs' next work waits.
    var stopping = StoppingAllocations()
    /// Each node's GPUs' last power and energy readings (memory only: the next heartbeat brings them back).
    var gpuTelemetry: [NodeID: [Int: GPUTelemetry]] = [:]
    /// GPUs held by running allocations and read at 0 % since, by node and index (memory only).
    var idleGPUs: [NodeID: [Int: IdleRun]] = [:]
    /// Run times learned from the jobs that finished (fed from the store at start-up and by every
    /// finish since): the Gittins tables of the `fastgpu` policy and the run times of start estimates.
    var learned: LearnedRuntimes
    /// Jobs already learned from (a job teaches once).
    var learnedJobs: Set<JobID> = []
    /// How long each job waited from submission to its first placement, per project.
    var queueWaits: [ProjectID: WaitHistogram] = [:]
    /// When a wake-up for the earliest retry backoff is due (nil: none pending).
    var backoffWake: Timestamp?
    var idempotency: [String: IdempotencyRecord] = [:]
    /// Prices, budgets, credits, invoices, the ledger's totals and metering cursors.
    var billing = BillingTable(stored: StoredBilling())
    /// Services, their replicas' readiness and the gateways' load.
    var services = ServiceTable()
    /// Steps run in running jobs' allocations (memory only).
    var steps = StepTable()
    /// Each project's secret store, and the sealing of jobs' secrets.
    var projectSecrets: ProjectSecrets
    /// Storage backends, credentials sealed.
    var storage: StorageBackends
    var nextJobID: UInt64 = 1
    var nextNodeID: UInt64 = 1
    var nextProjectID: UInt64 = 1
    var nextTokenID: UInt64 = 1

    // The queue as the last pass left it.
    var queue: [QueueEntry] = []
    /// Waiting jobs per project as of the last pass, plus submissions since: never below the
    /// truth, so it can refuse only after an exact count (`waitingJobs(of:)`) agrees.
    var waitingEstimate: [ProjectID: Int] = [:]

    // Durability.
    var pending = PendingWrites()
    var waiters: [CheckedContinuation<Void, any Error>] = []
    var flushing = false
    var storeFailure: String?
    public internal(set) var durableIndex: UInt64 = 0

    // Blocking queries.
    /// Blocking queries on nodes' assignments and jobs' state and logs.
    var watchers = Watchers<Watched>()

    /// Yields whenever there may be something to schedule; buffered to one, so wakes that come
    /// while a pass runs coalesce into the next pass.
    public nonisolated let wakeups: AsyncStream<Void>
    nonisolated let wakeContinuation: AsyncStream<Void>.Continuation
    /// When liveness may first judge a node late.
    var livenessNotBefore: Timestamp

    /// Rebuilds the control plane from the store (empty on first start).
    /// `secretBox` holds the key secrets are sealed with: the same key must come back after a
    /// restart (`SecretBox.loadOrCreate`), or stored secrets no longer open.
    public init(store: any ClusterStore, secretBox: SecretBox, clock: any WallClock = SystemWallClock(),
                configuration: ControlPlaneConfiguration = ControlPlaneConfiguration(),
                logger: Logger = Logger(label: "fastgpu.control-plane")) async throws {
        self.store = store
        self.secretBox = secretBox
        projectSecrets = ProjectSecrets(box: secretBox, stored: [])
        storage = StorageBackends(box: secretBox, stored: [])
        self.clock = clock
        self.configuration = configuration
        self.logger = logger
        learned = configuration.learner
        reads = ReadModel(maxPageSize: configuration.maxPageSize)
        audit = AuditLog(store: store, logger: logger)
        (wakeups, wakeContinuation) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        livenessNotBefore = clock.now() + configuration.startupGrace
        let stored = try await store.load()
        try restore(stored)
        logger.info("scheduling policy \(configuration.policyName); run times learned from \(learned.finishedJobs) finished jobs")
    }

    func restore(_ stored: StoredState) throws {
        for project in stored.projects {
            projects[project.id] = project
            projectIDs[project.name] = project.id
            nextProjectID = max(nextProjectID, project.id.rawValue + 1)
        }
        for member in stored.members { members[member.projectID, default: [:]][member.subject] = member.role }
        for token in stored.tokens {
            tokenRecords[token.id] = token
            nextTokenID = max(nextTokenID, token.id + 1)
        }
        tokens.replaceAll(stored.tokens)
        var gpusByNode: [NodeID: [GPU]] = [:]
        for gpu in stored.gpus { gpusByNode[gpu.nodeID, default: []].append(gpu.gpu) }
        var nodes: [Node] = []
        let now = clock.now()
        for record in stored.nodes {
            nodeRecords[record.id] = record
            nodeIDs[record.name] = record.id
            nextNodeID = max(nextNodeID, record.id.rawValue + 1)
            // Every node gets a fresh start: its agent could not reach a stopped control plane.
            lastHeartbeat[record.id] = now
            nodes.append(Node(id: record.id, name: record.name, gpus: (gpusByNode[record.id] ?? []).sorted { $0.index < $1.index },
                              cpuMillis: record.cpuMillis, memoryMiB: record.memoryMiB, labels: record.labels, state: record.state,
                              allowsCrossProjectSharing: record.allowsCrossProjectSharing))
        }
        for job in stored.jobs {
            nextJobID = max(nextJobID, job.id.rawValue + 1)
        }
        for record in stored.idempotencyKeys { idempotency[Self.idempotencySlot(record.subject, record.key)] = record }
        projectSecrets = ProjectSecrets(box: secretBox, stored: stored.secrets)
        storage = StorageBackends(box: secretBox, stored: stored.storageBackends)
        restoreServices(stored.services)
        let snapshot = ClusterSnapshot(
            index: stored.meta?.stateIndex ?? 0, nextAllocationID: stored.meta?.nextAllocationID ?? 1, nodes: nodes,
            jobs: stored.jobs.map { $0.spec.restoringFinishedAt($0.finishedAt) },
            allocations: stored.liveAllocations.map { $0.allocation.restoringRunning($0.report == .running).restoringPulling($0.report == .pulling) },
            projects: stored.projects.map { ProjectAccount(id: $0.id, weight: $0.weight, usage: $0.usage, quota: $0.quota) },
            launches: Dictionary(stored.jobs.map { ($0.id, $0.launch) }, uniquingKeysWith: { first, _ in first }))
        do {
            state = try ClusterState(restoring: snapshot)
        } catch {
            throw StoreError("the stored state does not add up: \(error)")
        }
        durableIndex = state.index
        // What finished before the restart teaches the learner again, in the order it finished.
        for job in state.jobs.values.filter({ $0.finishedAt != nil }).sorted(by: { ($0.finishedAt!, $0.id) < ($1.finishedAt!, $1.id) }) {
            learn(from: job.id)
        }
        billing = BillingTable(stored: stored.billing)
        // What admission reserved is a function of each unfinished job and the prices at its submission.
        // Service replicas are metered but not admitted against budgets (they have no run-time limit).
        let replicas = Set(services.records.values.flatMap { $0.replicas.map(\.job) })
        for job in state.jobs.values where (job.state == .pending || job.state == .running) && billing.budgets[job.project] != nil && !replicas.contains(job.id) {
            var priced = job
            if priced.runtimeLimit == nil, let budget = billing.budgets[job.project] { priced.runtimeLimit = .seconds(budget.defaultMaxRuntimeSeconds) }
            let attempt = costEstimate(of: priced, runtime: priced.runtimeLimit, now: job.submitTime).forRuntimeMicros ?? 0
            // Its charges so far plus a whole attempt: for a running job that over-holds what this
            // attempt already spent (the safe side: it refuses sooner, never overspends).
            let charged = billing.totals.costMicros(job: job.id)
            billing.reservations[job.id] = BillingTable.Reservation(project: job.project, micros: Money.sum(charged, attempt), attemptMicros: attempt)
        }
        for id in nodeRecords.keys { watchers.changed(.node(id), to: state.index) }
        reads.publish(jobs: state.jobs.keys.sorted().compactMap { try? view(of: $0) }, queue: [], members: members, projectIDs: projectIDs)
        recountWaiting()
        if !state.waiting.isEmpty { wake() }
    }


    // MARK: - Bootstrap

    /// On an empty store: creates the `default` project and a cluster-admin token, and returns
    /// the token (shown once). Nil when the store already holds tokens.
    public func bootstrapIfEmpty(adminSubject: String = "admin") async throws -> String? {
        guard tokenRecords.isEmpty else { return nil }
        let now = clock.now()
        let project = createProjectRecord(name: "default", weight: 1, now: now)
        setMember(project: project.id, subject: adminSubject, role: .admin)
        let secret = issueToken(name: "bootstrap admin", kind: .user, subject: adminSubject, clusterAdmin: true, nodeID: nil, expiresAt: nil, now: now)
        try await awaitDurable()
        return secret
    }

    // MARK: - Authorization

    /// Writes authorise against the actor's memberships (they include changes not yet durable);
    /// the rule itself is the read model's, so reads and writes cannot disagree on it.
    func role(of principal: Principal, in project: ProjectID) -> MemberRole? {
        ReadModel.role(of: principal, in: project, members: members)
    }

    func requireUser(_ principal: Principal) throws(ControlPlaneError) {
        guard principal.kind == .user else { throw .forbidden("this token is for an agent, not for the API") }
    }

    func requireClusterAdmin(_ principal: Principal) throws(ControlPlaneError) {
        guard principal.clusterAdmin else { throw .forbidden("only a cluster admin may do this") }
    }


    func visibleJob(_ id: JobID, by principal: Principal) throws(ControlPlaneError) -> Job {
        guard principal.kind == .user, let job = state.jobs[id], role(of: principal, in: job.project) != nil else {
            throw .notFound("\(id) not found")
        }
        return job
    }

    func visibleProject(_ name: String, by principal: Principal) throws(ControlPlaneError) -> ProjectID {
        guard principal.kind == .user, let id = projectIDs[name], role(of: principal, in: id) != nil else {
            throw .notFound("project \(name) not found")
        }
        return id
    }


    // MARK: - Stats

    /// The in-memory state as plain lists (what a restart must rebuild exactly).
    public func snapshot() -> ClusterSnapshot { state.snapshot }

    public func stats() -> ControlPlaneStats {
        var jobsByState: [JobState: Int] = [:]
        for job in state.jobs.values { jobsByState[job.state, default: 0] += 1 }
        var nodesByState: [NodeState: Int] = [:]
        var total = 0, allocated = 0
        var gpus: [GPUStat] = []
        for node in state.nodes {
            nodesByState[node.state, default: 0] += 1
            total += node.gpus.count
            for gpu in node.gpus {
                allocated += 1000 - gpu.freeMilli
                let holders = gpu.holders.compactMap { id -> GPUStat.Holder? in
                    guard let allocation = state.allocations[id], let job = state.jobs[allocation.task.job] else { return nil }
                    return GPUStat.Holder(job: job.id.rawValue, project: projects[job.project]?.name ?? "\(job.project)")
                }
                // A run of other holders (the GPU changed hands since the last heartbeat) or of a node
                // that went down says nothing about now.
                let idle = idleGPUs[node.id]?[gpu.index].flatMap { $0.holders == gpu.holders && node.state != .down ? $0 : nil }
                gpus.append(GPUStat(node: node.name, index: gpu.index, model: gpu.model, healthy: gpu.isHealthy, allocatedMilli: 1000 - gpu.freeMilli,
                                    telemetry: gpuTelemetry[node.id]?[gpu.index], holders: holders,
                                    idleSeconds: idle.map { max(0, clock.now().milliseconds(since: $0.since) / 1000) },
                                    idleReported: idle?.reported ?? false))
            }
        }
        let services = self.services.records.values.sorted { $0.name < $1.name }.map { record in
            var byState: [ReplicaState: Int] = [:]
            for replica in record.replicas { byState[replicaState(replica), default: 0] += 1 }
            return ServiceStat(name: record.name, project: projects[record.project]?.name ?? "\(record.project)", desired: record.desiredReplicas, replicas: byState)
        }
        var stats = ControlPlaneStats(jobsByState: jobsByState, queueLength: state.waiting.count, nodesByState: nodesByState, gpusTotal: total,
                                 gpusAllocatedMilli: allocated, stateIndex: state.index, durableIndex: durableIndex, storeFailed: storeFailure != nil,
                                 gpus: gpus, services: services)
        stats.spend = spendStats()
        stats.nodes = state.nodes.map { node in
            NodeStat(name: node.name, state: node.state, heartbeatAgeSeconds: lastHeartbeat[node.id].map { Double(clock.now().milliseconds(since: $0)) / 1000 })
        }
        var pendingByProject: [ProjectID: (count: Int, oldest: Timestamp)] = [:]
        for id in state.waiting {
            guard let job = state.jobs[id] else { continue }
            let entry = pendingByProject[job.project] ?? (0, job.waitingSince)
            pendingByProject[job.project] = (entry.count + 1, min(entry.oldest, job.waitingSince))
        }
        var allocatedByProject: [ProjectID: Int] = [:]
        for allocation in state.allocations.values {
            allocatedByProject[allocation.project, default: 0] += allocation.milliGPUs
        }
        let now = clock.now()
        stats.projects = projects.values.sorted { $0.name < $1.name }.map { project in
            let pending = pendingByProject[project.id]
            return ProjectStat(name: project.name, allocatedMilli: allocatedByProject[project.id] ?? 0, pendingJobs: pending?.count ?? 0,
                               oldestPendingSeconds: pending.map { Double(now.milliseconds(since: $0.oldest)) / 1000 },
                               queueWait: queueWaits[project.id] ?? WaitHistogram())
        }
        return stats
    }


    nonisolated func wake() { wakeContinuation.yield() }

    /// Ends the wake-up stream: the scheduling loop returns.
    public nonisolated func stopWakeups() { wakeContinuation.finish() }
}
