public import FastGPUModel
public import FastGPUScheduler
public import FastGPUStore
public import Logging

public struct ControlPlaneConfiguration: Sendable {
    public var scheduler: SchedulerConfiguration
    /// A node that has not sent a heartbeat for `heartbeatTTL + heartbeatGrace` goes down.
    public var heartbeatTTL: Duration
    public var heartbeatGrace: Duration
    /// After the control plane starts (or finds it was paused), nodes get this long before
    /// anyone is judged late: their agents could not have reached a stopped server.
    public var startupGrace: Duration
    /// Start estimates are computed in every pass while at most this many jobs wait.
    public var estimateLimit: Int
    /// Largest page of `GET /v1/jobs`.
    public var maxPageSize: Int
    /// A task lost with its node is retried after `retryBackoff`, doubled per attempt, at most `retryBackoffCap`.
    public var retryBackoff: Duration = .seconds(10)
    /// How long a retried submission with the same Idempotency-Key returns the first job.
    public var idempotencyRetention: Duration = .seconds(24 * 3600)
    public var retryBackoffCap: Duration = .seconds(300)
    /// Jobs one project may have waiting at once; a submission beyond it is refused (429), so
    /// one project's flood cannot fill the server's memory or the others' queue.
    public var maxPendingJobsPerProject = 10_000

    public init(scheduler: SchedulerConfiguration = SchedulerConfiguration(), heartbeatTTL: Duration = .seconds(5), heartbeatGrace: Duration = .seconds(5),
                startupGrace: Duration = .seconds(30), estimateLimit: Int = 2_000, maxPageSize: Int = 500) {
        self.scheduler = scheduler
        self.heartbeatTTL = heartbeatTTL
        self.heartbeatGrace = heartbeatGrace
        self.startupGrace = startupGrace
        self.estimateLimit = estimateLimit
        self.maxPageSize = maxPageSize
    }
}

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

    private(set) var state = ClusterState()
    private var projects: [ProjectID: ProjectRecord] = [:]
    private var projectIDs: [String: ProjectID] = [:]
    private var members: [ProjectID: [String: MemberRole]] = [:]
    private var tokenRecords: [UInt64: TokenRecord] = [:]
    private var nodeRecords: [NodeID: NodeRecord] = [:]
    private var nodeIDs: [String: NodeID] = [:]
    private var lastHeartbeat: [NodeID: Timestamp] = [:]
    /// What an operator had set (cordoned, draining) on a node that then went down: it comes back so.
    private var stateBeforeDown: [NodeID: NodeState] = [:]
    /// When a wake-up for the earliest retry backoff is due (nil: none pending).
    private var backoffWake: Timestamp?
    private var launches: [JobID: JobLaunch] = [:]
    private var finishedAt: [JobID: Timestamp] = [:]
    private var reports: [AllocationID: AllocationReport] = [:]
    private var jobOrder: [JobID] = []
    private var idempotency: [String: IdempotencyRecord] = [:]
    /// Each project's secret store, and the sealing of jobs' secrets.
    private var projectSecrets: ProjectSecrets
    private var nextJobID: UInt64 = 1
    private var nextNodeID: UInt64 = 1
    private var nextProjectID: UInt64 = 1
    private var nextTokenID: UInt64 = 1

    // The queue as the last pass left it.
    private var queue: [QueueEntry] = []
    /// Waiting jobs per project as of the last pass, plus submissions since: never below the
    /// truth, so it can refuse only after an exact count (`waitingJobs(of:)`) agrees.
    private var waitingEstimate: [ProjectID: Int] = [:]

    // Durability.
    private var pending = PendingWrites()
    private var waiters: [CheckedContinuation<Void, any Error>] = []
    private var flushing = false
    private var storeFailure: String?
    public private(set) var durableIndex: UInt64 = 0

    // Blocking queries.
    private var nodeVersions: [NodeID: UInt64] = [:]
    private var nodeWatchers: [NodeID: [UInt64: CheckedContinuation<Void, Never>]] = [:]
    private var jobWatchers: [JobID: [UInt64: CheckedContinuation<Void, Never>]] = [:]
    private var jobVersions: [JobID: UInt64] = [:]
    private var releasingWaiters = false
    private var nextWatcherID: UInt64 = 1

    /// Yields whenever there may be something to schedule; buffered to one, so wakes that come
    /// while a pass runs coalesce into the next pass.
    public nonisolated let wakeups: AsyncStream<Void>
    private nonisolated let wakeContinuation: AsyncStream<Void>.Continuation
    /// When liveness may first judge a node late.
    private(set) var livenessNotBefore: Timestamp

    /// Rebuilds the control plane from the store (empty on first start).
    /// `secretBox` holds the key secrets are sealed with: the same key must come back after a
    /// restart (`SecretBox.loadOrCreate`), or stored secrets no longer open.
    public init(store: any ClusterStore, secretBox: SecretBox, clock: any WallClock = SystemWallClock(),
                configuration: ControlPlaneConfiguration = ControlPlaneConfiguration(),
                logger: Logger = Logger(label: "fastgpu.control-plane")) async throws {
        self.store = store
        self.secretBox = secretBox
        projectSecrets = ProjectSecrets(box: secretBox, stored: [])
        self.clock = clock
        self.configuration = configuration
        self.logger = logger
        reads = ReadModel(maxPageSize: configuration.maxPageSize)
        audit = AuditLog(store: store, logger: logger)
        (wakeups, wakeContinuation) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        livenessNotBefore = clock.now() + configuration.startupGrace
        let stored = try await store.load()
        try restore(stored)
    }

    private func restore(_ stored: StoredState) throws {
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
            launches[job.id] = job.launch
            if let at = job.finishedAt { finishedAt[job.id] = at }
            jobOrder.append(job.id)
            nextJobID = max(nextJobID, job.id.rawValue + 1)
        }
        for allocation in stored.liveAllocations { reports[allocation.id] = allocation.report }
        for record in stored.idempotencyKeys { idempotency[Self.idempotencySlot(record.subject, record.key)] = record }
        projectSecrets = ProjectSecrets(box: secretBox, stored: stored.secrets)
        let snapshot = ClusterSnapshot(
            index: stored.meta?.stateIndex ?? 0, nextAllocationID: stored.meta?.nextAllocationID ?? 1, nodes: nodes,
            jobs: stored.jobs.map(\.spec), allocations: stored.liveAllocations.map(\.allocation),
            projects: stored.projects.map { ProjectAccount(id: $0.id, weight: $0.weight, usage: $0.usage) })
        do {
            state = try ClusterState(restoring: snapshot)
        } catch {
            throw StoreError("the stored state does not add up: \(error)")
        }
        durableIndex = state.index
        for id in nodeRecords.keys { nodeVersions[id] = state.index }
        reads.publish(jobs: jobOrder.compactMap { try? view(of: $0) }, queue: [], members: members, projectIDs: projectIDs)
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

    private func requireUser(_ principal: Principal) throws(ControlPlaneError) {
        guard principal.kind == .user else { throw .forbidden("this token is for an agent, not for the API") }
    }

    private func requireClusterAdmin(_ principal: Principal) throws(ControlPlaneError) {
        guard principal.clusterAdmin else { throw .forbidden("only a cluster admin may do this") }
    }

    // MARK: - Secrets

    /// The names of a project's secrets, for its members.
    public func secrets(of projectName: String, by principal: Principal) throws -> [SecretView] {
        projectSecrets.names(of: try visibleProject(projectName, by: principal))
    }

    /// Sets (or, with nil, removes) a secret of a project's store: project admins.
    @discardableResult
    public func setSecret(project projectName: String, name: String, value: String?, by principal: Principal) async throws -> SecretView? {
        try checkWritable()
        let id = try visibleProject(projectName, by: principal)
        guard let role = role(of: principal, in: id), role >= .admin else { throw ControlPlaneError.forbidden("only a project admin may change its secrets") }
        let now = clock.now()
        var stored: SecretRecord?
        if let value {
            let record = try projectSecrets.set(name, to: value, in: id, by: principal.subject, now: now)
            pending.direct.append(.saveSecret(record))
            stored = record
        } else {
            try projectSecrets.remove(name, from: id)
            pending.direct.append(.removeSecret(id, name: name))
        }
        pending.events.append(EventRecord(time: now, kind: value == nil ? "secret-removed" : "secret-set",
                                          message: "secret \(name) of project \(projectName) \(value == nil ? "removed" : "set") by \(principal.subject)"))
        try await awaitDurable()
        return stored.map(ProjectSecrets.view)
    }

    /// The job, if the caller may see it; a job of another project is "not found", not "forbidden".
    private func visibleJob(_ id: JobID, by principal: Principal) throws(ControlPlaneError) -> Job {
        guard principal.kind == .user, let job = state.jobs[id], role(of: principal, in: job.project) != nil else {
            throw .notFound("\(id) not found")
        }
        return job
    }

    private func visibleProject(_ name: String, by principal: Principal) throws(ControlPlaneError) -> ProjectID {
        guard principal.kind == .user, let id = projectIDs[name], role(of: principal, in: id) != nil else {
            throw .notFound("project \(name) not found")
        }
        return id
    }

    // MARK: - Jobs

    /// Accepts a job (or, for a retried request with the same idempotency key, returns the job
    /// the first one created) once it is durable. `created` is false for a retry.
    public func submit(_ submission: JobSubmission, by principal: Principal, idempotencyKey: String? = nil, requestHash: String = "") async throws -> (view: JobView, created: Bool) {
        try checkWritable()
        try requireUser(principal)
        let project = try visibleProject(submission.project, by: principal)
        guard let role = role(of: principal, in: project), role >= .member else {
            throw ControlPlaneError.forbidden("a viewer of project \(submission.project) cannot submit jobs")
        }
        // A priority above the project's ceiling would preempt other projects' work: that is
        // the cluster admin's to allow, per project.
        let ceiling = projects[project].flatMap { PriorityClass.named($0.maxPriority) } ?? .normal
        if submission.priority > ceiling && !principal.clusterAdmin {
            throw ControlPlaneError.forbidden("project \(submission.project) may submit at priority \(ceiling.name) at most; a cluster admin raises it with `fastgpu projects set \(submission.project) --max-priority \(submission.priority.name)`")
        }
        if let key = idempotencyKey {
            if let previous = idempotency[Self.idempotencySlot(principal.subject, key)],
               clock.now().milliseconds(since: previous.createdAt) < configuration.idempotencyRetention.wholeMilliseconds {
                guard previous.requestHash == requestHash else {
                    throw ControlPlaneError.conflict("Idempotency-Key \(key) was used for a different request")
                }
                try await awaitDurable()
                return (try reads.job(previous.jobID, by: principal), false)
            }
        }
        if waitingEstimate[project, default: 0] >= configuration.maxPendingJobsPerProject {
            let exact = waitingJobs(of: project)
            waitingEstimate[project] = exact
            guard exact < configuration.maxPendingJobsPerProject else {
                throw ControlPlaneError.tooMany("project \(submission.project) has \(exact) jobs waiting, its limit; submit more as they start")
            }
        }
        guard !submission.launch.command.isEmpty else { throw ControlPlaneError.invalid("a job needs a command") }
        guard submission.launch.maxAttempts >= 1 else { throw ControlPlaneError.invalid("maxAttempts must be at least 1") }
        let now = clock.now()
        let id = JobID(nextJobID)
        var launch = submission.launch
        launch.sealedSecrets = try projectSecrets.seal(submission, job: id, project: project)
        let job = Job(id: id, name: submission.name, project: project, submitter: principal.subject, priority: submission.priority,
                      spot: submission.spot, taskGroups: submission.taskGroups, runtimeEstimate: submission.runtimeEstimate,
                      runtimeLimit: submission.runtimeLimit, submitTime: now)
        if let why = ClusterState.validate(job) { throw ControlPlaneError.invalid(why) }
        do { try apply(.submit(job), now: now) } catch { throw ControlPlaneError.invalid(error.description) }
        nextJobID += 1
        waitingEstimate[project, default: 0] += 1
        launches[id] = launch
        jobOrder.append(id)
        var record: IdempotencyRecord?
        if let key = idempotencyKey {
            let stored = IdempotencyRecord(subject: principal.subject, key: key, requestHash: requestHash, jobID: id, createdAt: now)
            idempotency[Self.idempotencySlot(principal.subject, key)] = stored
            record = stored
        }
        pending.submitted[id] = record
        pending.events.append(EventRecord(time: now, kind: "submitted", jobID: id, message: "submitted by \(principal.subject) to project \(submission.project)"))
        wake()
        try await awaitDurable()
        return (try reads.job(id, by: principal), true)
    }

    /// The job as last committed, if the caller may see it. Reads the read model: no turn on the actor.
    public nonisolated func job(_ id: JobID, by principal: Principal) throws -> JobView {
        try reads.job(id, by: principal)
    }

    /// The job with its ended allocations too (read from the store when there are any).
    public nonisolated func jobWithHistory(_ id: JobID, by principal: Principal) async throws -> JobView {
        var view = try reads.job(id, by: principal)
        if view.job.attempts > view.allocations.count {
            let records = try await store.allocations(job: id)
            var byID: [AllocationID: AllocationView] = [:]
            for record in records {
                byID[record.id] = AllocationView(allocation: record.allocation, live: record.live, report: record.report, outcome: record.outcome, endedAt: record.endedAt)
            }
            for live in view.allocations { byID[live.allocation.id] = live }
            view.allocations = byID.values.sorted { $0.allocation.id < $1.allocation.id }
        }
        return view
    }

    public nonisolated func jobs(by principal: Principal, project: String?, states: Set<JobState>, after: JobID?, limit: Int) throws -> JobPage {
        try reads.jobs(by: principal, project: project, states: states, after: after, limit: limit)
    }

    public func cancel(_ id: JobID, by principal: Principal) async throws -> JobView {
        try checkWritable()
        let job = try visibleJob(id, by: principal)
        guard let role = role(of: principal, in: job.project), role >= .member else {
            throw ControlPlaneError.forbidden("a viewer cannot cancel jobs")
        }
        if !job.state.isFinished {
            let now = clock.now()
            try apply(.cancel(id, at: now), now: now)
            pending.events.append(EventRecord(time: now, kind: "cancelled", jobID: id, message: "cancelled by \(principal.subject)"))
            wake()
        }
        try await awaitDurable()
        return try reads.job(id, by: principal)
    }

    public nonisolated func events(of id: JobID, by principal: Principal, after sequence: Int64, limit: Int) async throws -> [EventRecord] {
        _ = try reads.job(id, by: principal)
        return try await store.events(job: id, after: sequence, limit: max(1, min(limit, configuration.maxPageSize)))
    }

    /// Log chunks after `position`, and whether the job had finished before they were read.
    public nonisolated func logs(of id: JobID, by principal: Principal, after position: Int64, limit: Int) async throws -> (chunks: [StoredLogChunk], finished: Bool) {
        // Whether the job had finished is read before the chunks: lines that arrive between
        // the two reads are then still returned before the stream ends.
        let job = try reads.job(id, by: principal).job
        let chunks = try await store.logs(job: id, after: position, limit: max(1, min(limit, 10_000)))
        return (chunks, job.state.isFinished)
    }

    /// How many committed changes (state, logs) the job has seen; read it before reading the
    /// job, then wait with it, and no change between the read and the wait is missed.
    public func jobVersion(_ id: JobID) -> UInt64 { jobVersions[id] ?? 0 }

    /// Waits until the job's version passes `version` (it changed state or got new log lines),
    /// or `timeout` passes.
    public func waitForJobChange(_ id: JobID, after version: UInt64, timeout: Duration) async {
        guard (jobVersions[id] ?? 0) <= version, !releasingWaiters else { return }
        let watcher = nextWatcherID
        nextWatcherID += 1
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            jobWatchers[id, default: [:]][watcher] = continuation
            Task { [weak self] in
                try? await Task.sleep(for: timeout)
                await self?.expireJobWatcher(id, watcher)
            }
        }
    }

    private func expireJobWatcher(_ id: JobID, _ watcher: UInt64) {
        jobWatchers[id]?.removeValue(forKey: watcher)?.resume()
    }

    /// The pending jobs the caller may see, in queue order.
    public nonisolated func queue(by principal: Principal, project: String?) throws -> [(entry: QueueEntry, view: JobView)] {
        try reads.queue(by: principal, project: project)
    }

    /// The job as the read model keeps it; its queue place is added at read time.
    private func view(of id: JobID) throws(ControlPlaneError) -> JobView {
        guard let job = state.jobs[id], let launch = launches[id] else { throw .notFound("\(id) not found") }
        let live = job.liveAllocations.values.sorted().compactMap { allocationID -> AllocationView? in
            guard let allocation = state.allocations[allocationID] else { return nil }
            return AllocationView(allocation: allocation, live: true, report: reports[allocationID] ?? .assigned, outcome: nil, endedAt: nil)
        }
        return JobView(job: job, projectName: projects[job.project]?.name ?? "\(job.project)", launch: launch, finishedAt: finishedAt[id], allocations: live, queue: nil)
    }

    // MARK: - Scheduling

    /// A copy of the state for one scheduling pass, and the time of the pass.
    public func schedulingInput() -> (state: ClusterState, now: Timestamp) { (state, clock.now()) }

    /// Verifies a plan against the current state, commits what still holds, records the queue,
    /// and returns once the commit is durable. Returns how many placements were committed.
    @discardableResult
    public func commit(_ plan: Plan, estimates: [JobID: Timestamp], now: Timestamp) async throws -> Int {
        try checkWritable()
        let verified = PlanVerifier().verify(plan, against: state)
        var committed = 0
        if !verified.isEmpty {
            try apply(.commit(verified, at: now), now: now)
            committed = verified.placements.count
            for placement in verified.placements {
                pending.events.append(EventRecord(time: now, kind: "placed", jobID: placement.task.job, nodeID: placement.node,
                                                  message: "task \(placement.task.group)/\(placement.task.index) placed on \(nodeRecords[placement.node]?.name ?? "\(placement.node)") with \(placement.devices.map(\.description).joined(separator: ", "))"))
            }
            for preemption in verified.preemptions {
                pending.events.append(EventRecord(time: now, kind: "preempted", jobID: preemption.victim.job, allocationID: preemption.allocation,
                                                  message: "preempted for \(preemption.beneficiary)"))
            }
        }
        if !verified.rejected.isEmpty { wake() }
        scheduleWakeForBackoffs(plan, now: now)
        queue = []
        for pendingJob in plan.pending.sorted(by: { $0.position < $1.position }) {
            guard let job = state.jobs[pendingJob.job], job.isWaiting else { continue }
            var start = estimates[pendingJob.job]
            if start == nil, case .notNow(_, _, _, let reasonStart) = pendingJob.reason { start = reasonStart }
            queue.append(QueueEntry(job: pendingJob.job, project: job.project, position: queue.count + 1, reason: pendingJob.reason,
                                    estimatedStart: start))
        }
        pending.queueChanged = true
        recountWaiting()
        try await awaitDurable()
        return committed
    }

    private func waitingJobs(of project: ProjectID) -> Int {
        state.waiting.reduce(0) { count, id in count + (state.jobs[id]?.project == project ? 1 : 0) }
    }

    private func recountWaiting() {
        waitingEstimate = [:]
        for id in state.waiting { if let job = state.jobs[id] { waitingEstimate[job.project, default: 0] += 1 } }
    }

    /// A job backing off becomes placeable at a time, not on an event: wake the scheduler then.
    private func scheduleWakeForBackoffs(_ plan: Plan, now: Timestamp) {
        let earliest = plan.pending.compactMap { pending -> Timestamp? in
            if case .notNow(.backoff(let until), _, _, _) = pending.reason { return until }
            return nil
        }.min()
        guard let earliest, earliest < (backoffWake ?? .distantFuture) else { return }
        backoffWake = earliest
    }

    /// Wakes the scheduler when the earliest retry backoff has run out; the liveness service
    /// asks every tick, on the injected clock. True when it woke it.
    @discardableResult
    public func wakeIfBackoffDue() -> Bool {
        guard let due = backoffWake, clock.now() >= due else { return false }
        backoffWake = nil
        wake()
        return true
    }

    // MARK: - Nodes and agents

    /// Registers a node (or re-registers one by name, keeping its id) and issues its credential.
    ///
    /// A name already registered is taken only by the node itself (its own node credential), by
    /// a cluster admin, or with a join token once an admin has revoked the node's credential
    /// (`replaceNode`): a join token alone must not take over a running node, its work and
    /// its jobs' environment.
    public func registerNode(name: String, gpus: [GPU], cpuMillis: Int, memoryMiB: Int, labels: [String: String], by principal: Principal) async throws -> (node: NodeView, token: String) {
        try checkWritable()
        guard principal.kind == .join || principal.kind == .node || principal.clusterAdmin else {
            throw ControlPlaneError.forbidden("registering a node needs a join token")
        }
        if let existing = nodeIDs[name] {
            let own = principal.kind == .node && principal.nodeID == existing
            let credentialRevoked = !tokenRecords.values.contains { $0.kind == .node && $0.nodeID == existing && $0.revokedAt == nil }
            guard own || principal.clusterAdmin || (principal.kind == .join && credentialRevoked) else {
                throw ControlPlaneError.conflict("node \(name) is already registered; a cluster admin replaces it with `fastgpu nodes replace \(name)` (POST /v1/nodes/\(existing.rawValue)/replace)")
            }
        } else if principal.kind == .node {
            throw ControlPlaneError.forbidden("a node credential registers only its own node")
        }
        if let why = InputText.problem(name, field: "a node's name", maxBytes: 253) { throw ControlPlaneError.invalid(why) }
        guard cpuMillis >= 0, memoryMiB >= 0 else { throw ControlPlaneError.invalid("negative CPU or memory") }
        let now = clock.now()
        let id: NodeID
        if let existing = nodeIDs[name] {
            // The agent's machine came back: same node, new credential, devices as probed now.
            id = existing
            guard let node = state.node(id) else { throw ControlPlaneError.notFound("\(id) not found") }
            if node.state != .down { try apply(.setNodeState(id, .down, at: now), now: now) }
            guard node.gpus.count == gpus.count else {
                throw ControlPlaneError.conflict("\(name) is registered with \(node.gpus.count) GPUs; a node's GPU count cannot change")
            }
            try apply(.setNodeState(id, .ready, at: now), now: now)
            pending.events.append(EventRecord(time: now, kind: "node-registered", nodeID: id, message: "\(name) registered again"))
        } else {
            id = NodeID(nextNodeID)
            let gpus = gpus.enumerated().map { offset, gpu in
                GPU(index: offset, uuid: gpu.uuid, model: gpu.model, memoryMiB: gpu.memoryMiB, island: gpu.island, health: gpu.health, migEnabled: gpu.migEnabled)
            }
            let node = Node(id: id, name: name, gpus: gpus, cpuMillis: cpuMillis, memoryMiB: memoryMiB, labels: labels)
            do { try apply(.registerNode(node), now: now) } catch { throw ControlPlaneError.invalid(error.description) }
            nextNodeID += 1
            nodeIDs[name] = id
            nodeRecords[id] = NodeRecord(id: id, name: name, state: .ready, cpuMillis: cpuMillis, memoryMiB: memoryMiB, labels: labels,
                                         allowsCrossProjectSharing: false, registeredAt: now, lastHeartbeatAt: now)
            pending.events.append(EventRecord(time: now, kind: "node-registered", nodeID: id, message: "\(name) registered with \(gpus.count) GPUs"))
        }
        lastHeartbeat[id] = now
        nodeRecords[id]?.lastHeartbeatAt = now
        pending.nodes.insert(id)
        // One credential per node: a new registration revokes the old one (a copy left on a
        // reinstalled machine, or a leaked one, stops working).
        revokeCredentials(of: id, now: now)
        let secret = issueToken(name: "node \(name)", kind: .node, subject: "node:\(name)", clusterAdmin: false, nodeID: id, expiresAt: nil, now: now)
        wake()
        try await awaitDurable()
        return (try nodeView(id), secret)
    }

    /// Lets another machine take the node's name: revokes its credential (its agent is refused
    /// from the next request on) and takes it down, so its allocations are lost and requeued.
    /// The next registration of the name with a join token then gets the node.
    public func replaceNode(_ id: NodeID, by principal: Principal) async throws -> NodeView {
        try checkWritable()
        try requireClusterAdmin(principal)
        guard let node = state.node(id) else { throw ControlPlaneError.notFound("\(id) not found") }
        let now = clock.now()
        revokeCredentials(of: id, now: now)
        if node.state != .down {
            try takeDown(node, why: "\(node.name) is being replaced", now: now)
            wake()
        }
        pending.nodes.insert(id)
        pending.events.append(EventRecord(time: now, kind: "node-replaced", nodeID: id, message: "\(node.name)'s credential revoked by \(principal.subject); it awaits a new registration"))
        try await awaitDurable()
        return try nodeView(id)
    }

    /// An agent's heartbeat: liveness, device health, and what it runs. Returns the node's
    /// assignment index so that the agent knows whether to fetch its assignments.
    ///
    /// `running`, when the agent sends it, is every allocation it runs with its epoch: an
    /// allocation the agent confirmed running and no longer lists is lost (its process died
    /// with the agent, say) and its task requeued.
    public func heartbeat(node id: NodeID, gpuHealth: [Int: GPUHealth], running: [AllocationID: Epoch]? = nil, by principal: Principal) async throws -> UInt64 {
        try checkWritable()
        try requireNode(id, principal)
        guard let node = state.node(id) else { throw ControlPlaneError.notFound("\(id) not found") }
        let now = clock.now()
        lastHeartbeat[id] = now
        var changed = false
        for (index, health) in gpuHealth.sorted(by: { $0.key < $1.key }) {
            guard node.gpus.indices.contains(index) else { throw ControlPlaneError.invalid("\(node.name) has no gpu\(index)") }
            if node.gpus[index].health != health {
                try apply(.setGPUHealth(id, gpu: index, health), now: now)
                pending.events.append(EventRecord(time: now, kind: "gpu-health", nodeID: id, message: "gpu\(index) is \(health == .healthy ? "healthy" : "unhealthy")"))
                changed = true
            }
        }
        if let running {
            for allocationID in node.allocations.sorted() where reports[allocationID] == .running {
                guard let allocation = state.allocations[allocationID], running[allocationID] != allocation.epoch else { continue }
                try lose(allocationID, why: "the agent on \(node.name) no longer runs it", now: now)
                changed = true
            }
        }
        if node.state == .down {
            // Back after being judged dead: its old allocations were lost and requeued; it
            // takes new work again.
            let back = stateBeforeDown.removeValue(forKey: id) ?? .ready
            try apply(.setNodeState(id, back, at: now), now: now)
            pending.events.append(EventRecord(time: now, kind: "node-\(back.rawValue)", nodeID: id, message: "\(node.name) is back (\(back.rawValue))"))
            changed = true
        }
        if changed {
            nodeRecords[id]?.lastHeartbeatAt = now
            pending.nodes.insert(id)
            wake()
            try await awaitDurable()
        }
        return nodeVersions[id] ?? 0
    }

    /// The node's durable assignments; blocks while they are at `index` or older, up to `wait`.
    public func assignments(node id: NodeID, after index: UInt64, wait: Duration, by principal: Principal) async throws -> Assignments {
        try requireNode(id, principal)
        guard state.node(id) != nil else { throw ControlPlaneError.notFound("\(id) not found") }
        if (nodeVersions[id] ?? 0) <= index && wait > .zero && !releasingWaiters {
            let watcher = nextWatcherID
            nextWatcherID += 1
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                nodeWatchers[id, default: [:]][watcher] = continuation
                Task { [weak self] in
                    try? await Task.sleep(for: wait)
                    await self?.expireNodeWatcher(id, watcher)
                }
            }
        }
        return durableAssignments(of: id)
    }

    private func expireNodeWatcher(_ id: NodeID, _ watcher: UInt64) {
        nodeWatchers[id]?.removeValue(forKey: watcher)?.resume()
    }

    private func durableAssignments(of id: NodeID) -> Assignments {
        // Memory may be ahead of the store by the batch in flight; allocations newer than the
        // durable index are held back so that no agent starts work the store could still lose.
        guard let node = state.node(id) else { return Assignments(index: nodeVersions[id] ?? 0, allocations: []) }
        var result: [Assignment] = []
        for allocationID in node.allocations.sorted() {
            guard let allocation = state.allocations[allocationID], allocation.epoch.rawValue <= durableIndex,
                  let job = state.jobs[allocation.task.job], let launch = launches[job.id] else { continue }
            let group = job.taskGroups[allocation.task.group]
            var peers: [NodeID] = []
            if group.count > 1 {
                peers = (0..<group.count).map { index in
                    let task = TaskRef(job: job.id, group: allocation.task.group, index: index)
                    return job.liveAllocations[task].flatMap { state.allocations[$0]?.node } ?? allocation.node
                }
            }
            var masterAddress: String?
            var masterPort: Int?
            if let leader = peers.first, let node = state.node(leader) {
                masterAddress = node.labels[Self.addressLabel] ?? node.name
                masterPort = 20_000 + Int(job.id.rawValue % 20_000)
            }
            result.append(Assignment(allocation: allocation, jobName: job.name, launch: projectSecrets.opened(launch, job: job.id, logger: logger), groupSize: group.count,
                                     rank: allocation.task.index, peers: peers,
                                     runtimeLimit: job.runtimeLimit, masterAddress: masterAddress, masterPort: masterPort))
        }
        return Assignments(index: nodeVersions[id] ?? 0, allocations: result)
    }

    /// An agent reports on an allocation. A report for an older epoch than the allocation's is
    /// refused: it comes from a copy the control plane has already replaced.
    public func report(node id: NodeID, allocation allocationID: AllocationID, epoch: Epoch, running: Bool, exitCode: Int32?, by principal: Principal) async throws {
        try checkWritable()
        try requireNode(id, principal)
        let now = clock.now()
        guard let allocation = state.allocations[allocationID] else {
            // Already ended here (cancelled, preempted, lost): the agent's news is late, not wrong.
            throw ControlPlaneError.conflict("\(allocationID) is no longer live")
        }
        guard allocation.node == id else { throw ControlPlaneError.notFound("\(allocationID) not found on \(id)") }
        guard allocation.epoch == epoch else {
            throw ControlPlaneError.conflict("stale epoch \(epoch.rawValue): \(allocationID) is at epoch \(allocation.epoch.rawValue)")
        }
        if running {
            guard reports[allocationID] != .running else { return }
            reports[allocationID] = .running
            pending.allocations.insert(allocationID)
            pending.events.append(EventRecord(time: now, kind: "started", jobID: allocation.task.job, nodeID: id, allocationID: allocationID, message: "\(allocationID) started"))
            notifyJob(allocation.task.job)
        } else {
            let code = exitCode ?? -1
            reports[allocationID] = .exited
            try apply(.endAllocation(allocationID, code == 0 ? .succeeded : .failed(exitCode: code), at: now), now: now)
            pending.events.append(EventRecord(time: now, kind: "exited", jobID: allocation.task.job, nodeID: id, allocationID: allocationID, message: "\(allocationID) exited with code \(code)"))
            wake()
        }
        try await awaitDurable()
    }

    /// Appends log lines an agent shipped. Chunks are keyed by (allocation, sequence), so a
    /// retried upload does not duplicate lines.
    public func appendLogs(node id: NodeID, allocation allocationID: AllocationID, chunks: [(sequence: Int64, stream: LogStream, text: String)], by principal: Principal) async throws {
        try checkWritable()
        try requireNode(id, principal)
        let now = clock.now()
        let jobID: JobID
        if let allocation = state.allocations[allocationID] {
            guard allocation.node == id else { throw ControlPlaneError.notFound("\(allocationID) not found on \(id)") }
            jobID = allocation.task.job
        } else {
            // The last lines of an allocation arrive after its exit was reported.
            guard let record = try await store.allocation(allocationID), record.nodeID == id else { throw ControlPlaneError.notFound("\(allocationID) not found on \(id)") }
            jobID = record.jobID
        }
        for chunk in chunks {
            guard chunk.sequence >= 0 else { throw ControlPlaneError.invalid("log sequence numbers start at 0") }
            pending.logs.append(LogChunkRecord(allocationID: allocationID, sequence: chunk.sequence, jobID: jobID, stream: chunk.stream, time: now, text: chunk.text))
        }
        pending.jobsChanged.insert(jobID)
        try await awaitDurable()
    }

    private func requireNode(_ id: NodeID, _ principal: Principal) throws(ControlPlaneError) {
        guard principal.clusterAdmin || (principal.kind == .node && principal.nodeID == id) else {
            throw .forbidden("only the node's own credential may do this")
        }
    }

    public func nodes(by principal: Principal) throws -> [NodeView] {
        try requireUser(principal)
        return try state.nodes.map { node throws(ControlPlaneError) in try nodeView(node.id) }
    }

    public func node(_ id: NodeID, by principal: Principal) throws -> NodeView {
        try requireUser(principal)
        return try nodeView(id)
    }

    /// Cordon (no new work), drain (no new work; running work finishes) or ready again.
    public func setNodeState(_ id: NodeID, to target: NodeState, by principal: Principal) async throws -> NodeView {
        try checkWritable()
        try requireClusterAdmin(principal)
        guard let node = state.node(id) else { throw ControlPlaneError.notFound("\(id) not found") }
        guard target != .down else { throw ControlPlaneError.invalid("a node goes down by missing heartbeats, not by request") }
        guard node.state != .down else { throw ControlPlaneError.conflict("\(node.name) is down") }
        if node.state != target {
            let now = clock.now()
            try apply(.setNodeState(id, target, at: now), now: now)
            pending.events.append(EventRecord(time: now, kind: "node-\(target.rawValue)", nodeID: id, message: "\(node.name) is \(target.rawValue) (by \(principal.subject))"))
            wake()
        }
        try await awaitDurable()
        return try nodeView(id)
    }

    private func nodeView(_ id: NodeID) throws(ControlPlaneError) -> NodeView {
        guard let node = state.node(id), var record = nodeRecords[id] else { throw .notFound("\(id) not found") }
        record.state = node.state
        return NodeView(record: record, node: node, lastHeartbeatAt: lastHeartbeat[id])
    }

    /// Marks down every node whose agent has been silent past TTL + grace; their allocations
    /// are lost and their jobs requeued (or failed, once out of attempts). Returns those nodes.
    @discardableResult
    public func checkLiveness() async throws -> [NodeID] {
        try checkWritable()
        let now = clock.now()
        guard now >= livenessNotBefore else { return [] }
        let deadline = configuration.heartbeatTTL + configuration.heartbeatGrace
        var downed: [NodeID] = []
        for node in state.nodes where node.state != .down {
            let last = lastHeartbeat[node.id] ?? .zero
            guard now.milliseconds(since: last) > deadline.wholeMilliseconds else { continue }
            try takeDown(node, why: "\(node.name) missed its heartbeats", now: now)
            pending.events.append(EventRecord(time: now, kind: "node-down", nodeID: node.id,
                                              message: "\(node.name) missed heartbeats for \(now.milliseconds(since: last)) ms"))
            downed.append(node.id)
        }
        if !downed.isEmpty {
            wake()
            try await awaitDurable()
        }
        return downed
    }

    /// Marks a node down: its allocations are lost (requeued after their backoff) and what an
    /// operator had set on it (cordoned, draining) comes back with it.
    private func takeDown(_ node: Node, why: String, now: Timestamp) throws {
        for allocationID in node.allocations.sorted() { try lose(allocationID, why: why, now: now) }
        stateBeforeDown[node.id] = node.state
        try apply(.setNodeState(node.id, .down, at: now), now: now)
    }

    /// Revokes every credential of the node: its agent is refused from the next request on,
    /// even before the store has it (revoking errs on the safe side).
    private func revokeCredentials(of node: NodeID, now: Timestamp) {
        for var old in tokenRecords.values.sorted(by: { $0.id < $1.id }) where old.kind == .node && old.nodeID == node && old.revokedAt == nil {
            old.revokedAt = now
            tokenRecords[old.id] = old
            pending.direct.append(.saveToken(old))
            tokens.put(old)
        }
    }

    /// Ends an allocation its node no longer runs. The task is requeued after a backoff that
    /// doubles with each attempt, or, once out of attempts, fails its job.
    private func lose(_ allocationID: AllocationID, why: String, now: Timestamp) throws {
        guard let allocation = state.allocations[allocationID], let job = state.jobs[allocation.task.job], let launch = launches[job.id] else { return }
        let tries = job.attempts / max(1, job.taskCount)
        if tries >= launch.maxAttempts {
            try apply(.endAllocation(allocationID, .failed(exitCode: -1), at: now), now: now)
            pending.events.append(EventRecord(time: now, kind: "failed", jobID: job.id, nodeID: allocation.node, allocationID: allocationID,
                                              message: "\(allocationID) lost (\(why)) after \(tries) attempts: out of attempts (maxAttempts \(launch.maxAttempts))"))
            return
        }
        try apply(.endAllocation(allocationID, .lost, at: now), now: now)
        let backoff = Self.backoff(attempt: tries, base: configuration.retryBackoff, cap: configuration.retryBackoffCap)
        pending.events.append(EventRecord(time: now, kind: "lost", jobID: job.id, nodeID: allocation.node, allocationID: allocationID,
                                          message: "\(allocationID) lost (\(why)); requeued, retried in \(backoff.wholeMilliseconds / 1000) s"))
        if state.jobs[job.id]?.isWaiting == true, backoff > .zero {
            try apply(.deferJob(job.id, until: now + backoff), now: now)
        }
    }

    /// `base × 2^(attempt − 1)`, at most `cap`.
    static func backoff(attempt: Int, base: Duration, cap: Duration) -> Duration {
        var delay = base
        for _ in 1..<max(1, attempt) where delay < cap { delay = delay * 2 }
        return min(delay, cap)
    }

    /// Forgets idempotency keys past their retention, in memory and in the store.
    public func expireIdempotencyKeys() async throws {
        try checkWritable()
        let cutoff = Timestamp(millisecondsSinceEpoch: clock.now().millisecondsSinceEpoch - configuration.idempotencyRetention.wholeMilliseconds)
        let before = idempotency.count
        idempotency = idempotency.filter { $0.value.createdAt >= cutoff }
        guard idempotency.count < before else { return }
        pending.direct.append(.expireIdempotencyKeys(before: cutoff))
        try await awaitDurable()
    }

    /// Called when the liveness loop finds that it itself was paused: nobody is judged on the gap.
    public func forgiveHeartbeatGap() {
        let now = clock.now()
        for id in lastHeartbeat.keys { lastHeartbeat[id] = now }
        livenessNotBefore = max(livenessNotBefore, now + configuration.heartbeatGrace)
    }

    // MARK: - Projects, members, tokens

    public struct ProjectView: Hashable, Sendable {
        public var record: ProjectRecord
        public var members: [MemberRecord]
    }

    public func projects(by principal: Principal) throws -> [ProjectView] {
        try requireUser(principal)
        return projects.values.sorted { $0.id < $1.id }.filter { role(of: principal, in: $0.id) != nil }.map(projectView)
    }

    public func project(_ name: String, by principal: Principal) throws -> ProjectView {
        let id = try visibleProject(name, by: principal)
        return projectView(projects[id]!)
    }

    private func projectView(_ record: ProjectRecord) -> ProjectView {
        var record = record
        if let account = state.projects[record.id] { record.usage = account.usage; record.weight = account.weight }
        let list = (members[record.id] ?? [:]).map { MemberRecord(projectID: record.id, subject: $0.key, role: $0.value) }.sorted { $0.subject < $1.subject }
        return ProjectView(record: record, members: list)
    }

    public func createProject(name: String, weight: Int, by principal: Principal) async throws -> ProjectView {
        try checkWritable()
        try requireClusterAdmin(principal)
        guard Self.isValidName(name) else { throw ControlPlaneError.invalid("a project name is 1 to 63 lowercase letters, digits and dashes") }
        guard projectIDs[name] == nil else { throw ControlPlaneError.conflict("project \(name) already exists") }
        guard (1...1_000_000).contains(weight) else { throw ControlPlaneError.invalid("weight must be 1 to 1000000") }
        let record = createProjectRecord(name: name, weight: weight, now: clock.now())
        try await awaitDurable()
        return projectView(record)
    }

    /// Changes a project's fair-share weight or priority ceiling (cluster admins).
    public func updateProject(_ name: String, weight: Int?, maxPriority: PriorityClass?, by principal: Principal) async throws -> ProjectView {
        try checkWritable()
        try requireClusterAdmin(principal)
        guard let id = projectIDs[name], var record = projects[id] else { throw ControlPlaneError.notFound("project \(name) not found") }
        let now = clock.now()
        if let weight {
            guard (1...1_000_000).contains(weight) else { throw ControlPlaneError.invalid("weight must be 1 to 1000000") }
            try apply(.setProject(id, weight: weight), now: now)
            record.weight = weight
        }
        if let maxPriority { record.maxPriority = maxPriority.name }
        projects[id] = record
        pending.projects.insert(id)
        pending.events.append(EventRecord(time: now, kind: "project-updated", message: "project \(name): weight \(record.weight), max priority \(record.maxPriority) (by \(principal.subject))"))
        try await awaitDurable()
        return projectView(record)
    }

    public func setMember(project name: String, subject: String, role newRole: MemberRole?, by principal: Principal) async throws -> ProjectView {
        try checkWritable()
        let id = try visibleProject(name, by: principal)
        guard let role = role(of: principal, in: id), role >= .admin else { throw ControlPlaneError.forbidden("only a project admin may change members") }
        if let why = InputText.problem(subject, field: "a member's subject", maxBytes: 128) { throw ControlPlaneError.invalid(why) }
        if let newRole {
            setMember(project: id, subject: subject, role: newRole)
        } else {
            members[id]?[subject] = nil
            pending.direct.append(.removeMember(id, subject: subject))
            pending.membersChanged = true
        }
        try await awaitDurable()
        return projectView(projects[id]!)
    }

    public struct TokenView: Hashable, Sendable {
        public var record: TokenRecord
        /// Present only in the answer that created the token.
        public var secret: String?
    }

    /// Creates a token. A cluster admin may create any; a user may create user tokens for
    /// itself, never with more rights than its own.
    public func createToken(name: String, kind: TokenKind, subject: String?, clusterAdmin: Bool, expiresAt: Timestamp?, by principal: Principal) async throws -> TokenView {
        try checkWritable()
        try requireUser(principal)
        let subject = subject ?? principal.subject
        if let why = InputText.problem(subject, field: "a token's subject", maxBytes: 128) { throw ControlPlaneError.invalid(why) }
        guard kind != .node else { throw ControlPlaneError.invalid("node credentials are issued at registration") }
        if !principal.clusterAdmin {
            guard kind == .user, subject == principal.subject, !clusterAdmin else {
                throw ControlPlaneError.forbidden("only a cluster admin may create tokens for others, join tokens or admin tokens")
            }
        }
        let now = clock.now()
        var expiresAt = expiresAt
        if let expiresAt, expiresAt <= now { throw ControlPlaneError.invalid("expiry is in the past") }
        if let parent = principal.expiresAt {
            // A token minted with a token that expires expires no later: a leaked short-lived
            // token cannot be turned into a permanent one.
            if let asked = expiresAt, asked > parent {
                throw ControlPlaneError.invalid("a token cannot outlive the token that creates it; ask for an expiry no later than that token's")
            }
            expiresAt = expiresAt ?? parent
        }
        if let why = InputText.problem(name, field: "a token's name", maxBytes: 128) { throw ControlPlaneError.invalid(why) }
        let secret = issueToken(name: name, kind: kind, subject: subject, clusterAdmin: clusterAdmin, nodeID: nil, expiresAt: expiresAt, now: now)
        try await awaitDurable()
        let record = tokenRecords.values.first { $0.secretHash == TokenSecret.hash(secret) }!
        return TokenView(record: record, secret: secret)
    }

    public func listTokens(by principal: Principal) throws -> [TokenView] {
        try requireUser(principal)
        return tokenRecords.values.sorted { $0.id < $1.id }
            .filter { principal.clusterAdmin || ($0.subject == principal.subject && $0.kind == .user) }
            .map { TokenView(record: $0, secret: nil) }
    }

    /// Revokes a token; the next request with it is refused.
    public func revokeToken(_ id: UInt64, by principal: Principal) async throws -> TokenView {
        try checkWritable()
        try requireUser(principal)
        guard var record = tokenRecords[id], principal.clusterAdmin || (record.subject == principal.subject && record.kind == .user) else {
            throw ControlPlaneError.notFound("token \(id) not found")
        }
        if record.revokedAt == nil {
            record.revokedAt = clock.now()
            tokenRecords[id] = record
            pending.direct.append(.saveToken(record))
            // Refused from now on, even before the store has it: revoking errs on the safe side.
            tokens.put(record)
        }
        try await awaitDurable()
        return TokenView(record: record, secret: nil)
    }

    private func createProjectRecord(name: String, weight: Int, now: Timestamp) -> ProjectRecord {
        let id = ProjectID(nextProjectID)
        nextProjectID += 1
        let record = ProjectRecord(id: id, name: name, weight: weight, createdAt: now)
        projects[id] = record
        projectIDs[name] = id
        try? apply(.setProject(id, weight: weight), now: now)
        pending.projects.insert(id)
        pending.membersChanged = true
        return record
    }

    private func setMember(project: ProjectID, subject: String, role: MemberRole) {
        members[project, default: [:]][subject] = role
        pending.direct.append(.saveMember(MemberRecord(projectID: project, subject: subject, role: role)))
        pending.membersChanged = true
    }

    private func issueToken(name: String, kind: TokenKind, subject: String, clusterAdmin: Bool, nodeID: NodeID?, expiresAt: Timestamp?, now: Timestamp) -> String {
        let secret = TokenSecret.generate()
        let record = TokenRecord(id: nextTokenID, name: name, secretHash: TokenSecret.hash(secret), displayPrefix: TokenSecret.displayPrefix(secret),
                                 kind: kind, subject: subject, clusterAdmin: clusterAdmin, nodeID: nodeID, createdAt: now, expiresAt: expiresAt)
        nextTokenID += 1
        tokenRecords[record.id] = record
        pending.direct.append(.saveToken(record))
        pending.tokensToPublish.append(record)
        return secret
    }

    /// The node label an agent sets to the address its peers reach it at.
    public static let addressLabel = "fastgpu.io/address"

    static func isValidName(_ name: String) -> Bool {
        !name.isEmpty && name.count <= 63 && name.utf8.allSatisfy { ($0 >= 0x61 && $0 <= 0x7a) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2d }
            && name.first != "-"
    }

    static func idempotencySlot(_ subject: String, _ key: String) -> String { "\(subject)\u{0}\(key)" }

    // MARK: - Stats

    /// The in-memory state as plain lists (what a restart must rebuild exactly).
    public func snapshot() -> ClusterSnapshot { state.snapshot }

    public func stats() -> ControlPlaneStats {
        var jobsByState: [JobState: Int] = [:]
        for job in state.jobs.values { jobsByState[job.state, default: 0] += 1 }
        var nodesByState: [NodeState: Int] = [:]
        var total = 0, allocated = 0
        for node in state.nodes {
            nodesByState[node.state, default: 0] += 1
            total += node.gpus.count
            for gpu in node.gpus { allocated += 1000 - gpu.freeMilli }
        }
        return ControlPlaneStats(jobsByState: jobsByState, queueLength: state.waiting.count, nodesByState: nodesByState, gpusTotal: total,
                                 gpusAllocatedMilli: allocated, stateIndex: state.index, durableIndex: durableIndex, storeFailed: storeFailure != nil)
    }

    // MARK: - Applying and writing through

    private func checkWritable() throws(ControlPlaneError) {
        if let storeFailure { throw .unavailable("the store failed (\(storeFailure)); restart the server") }
    }

    /// Applies a change to memory and notes every row it touched for the next transaction.
    private func apply(_ change: ClusterChange, now: Timestamp) throws(ClusterChangeError) {
        let ended = try state.applyReportingEnds(change)
        pending.metaDirty = true
        switch change {
        case .registerNode(let node):
            pending.nodes.insert(node.id)
            pending.nodesChanged.insert(node.id)
        case .setNodeState(let id, let nodeState, _):
            nodeRecords[id]?.state = nodeState
            pending.nodes.insert(id)
        case .setGPUHealth(let id, _, _):
            pending.nodes.insert(id)
        case .setProject(let id, _):
            pending.projects.insert(id)
        case .submit(let job):
            pending.jobs.insert(job.id)
        case .commit(let plan, _):
            for placement in plan.placements {
                pending.jobs.insert(placement.task.job)
                pending.nodesChanged.insert(placement.node)
                if let id = state.jobs[placement.task.job]?.liveAllocations[placement.task] {
                    pending.allocations.insert(id)
                    reports[id] = .assigned
                }
            }
        case .endAllocation(let id, _, _):
            pending.allocations.insert(id)
        case .cancel(let id, _), .deferJob(let id, _):
            pending.jobs.insert(id)
        case .decayUsage:
            pending.projects.formUnion(state.projects.keys)
        }
        for end in ended {
            let allocation = end.allocation
            pending.ended[allocation.id] = PendingWrites.Ended(allocation: allocation, outcome: end.outcome, at: now,
                                                               report: reports[allocation.id] == .exited ? .exited : .stopping)
            pending.allocations.insert(allocation.id)
            pending.jobs.insert(allocation.task.job)
            pending.projects.insert(allocation.project)
            pending.nodesChanged.insert(allocation.node)
            reports[allocation.id] = nil
        }
        for id in pending.jobs where finishedAt[id] == nil && state.jobs[id]?.state.isFinished == true {
            finishedAt[id] = now
        }
    }

    /// Returns once everything applied so far is committed to the store.
    private func awaitDurable() async throws {
        try checkWritable()
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            waiters.append(continuation)
            if !flushing {
                flushing = true
                Task { await self.flush() }
            }
        }
    }

    private func flush() async {
        while !waiters.isEmpty {
            let batch = seal()
            let publication = publication()
            let sealedIndex = state.index
            let waiting = waiters
            waiters = []
            let changedNodes = pending.nodesChanged
            let changedJobs = pending.jobsChanged
            let publish = pending.tokensToPublish
            pending = PendingWrites()
            do {
                try await store.commit(batch)
            } catch {
                storeFailure = "\(error)"
                logger.critical("store commit failed; refusing writes until restart", metadata: ["error": "\(error)"])
                for waiter in waiting { waiter.resume(throwing: ControlPlaneError.unavailable("the store failed; nothing was changed")) }
                for waiter in waiters { waiter.resume(throwing: ControlPlaneError.unavailable("the store failed; nothing was changed")) }
                waiters = []
                flushing = false
                return
            }
            durableIndex = sealedIndex
            reads.publish(jobs: publication.jobs, queue: publication.queue, members: publication.members, projectIDs: publication.projectIDs)
            for token in publish { tokens.put(token) }
            for id in changedNodes {
                nodeVersions[id] = sealedIndex
                if let watchers = nodeWatchers.removeValue(forKey: id) { for watcher in watchers.values { watcher.resume() } }
            }
            for id in changedJobs { notifyJob(id) }
            for waiter in waiting { waiter.resume() }
        }
        flushing = false
    }

    /// Answers every blocking query now and lets no new one wait: the server is shutting down
    /// and must not hold its graceful stop for a long poll.
    public func releaseWaiters() {
        releasingWaiters = true
        for watchers in nodeWatchers.values { for watcher in watchers.values { watcher.resume() } }
        for watchers in jobWatchers.values { for watcher in watchers.values { watcher.resume() } }
        nodeWatchers = [:]
        jobWatchers = [:]
    }

    private func notifyJob(_ id: JobID) {
        jobVersions[id, default: 0] += 1
        if let watchers = jobWatchers.removeValue(forKey: id) { for watcher in watchers.values { watcher.resume() } }
    }

    /// What readers get once the sealed batch is durable: views of the jobs it changed, and
    /// the queue and memberships when they changed. Taken right after `seal()`, from the same state.
    private func publication() -> (jobs: [JobView], queue: [QueueEntry]?, members: [ProjectID: [String: MemberRole]]?, projectIDs: [String: ProjectID]?) {
        let views = pending.jobsChanged.sorted().compactMap { try? view(of: $0) }
        return (views, pending.queueChanged ? queue : nil, pending.membersChanged ? members : nil, pending.membersChanged ? projectIDs : nil)
    }

    /// The rows of everything touched since the last seal, in an order the foreign keys accept.
    private func seal() -> StoreBatch {
        var batch = StoreBatch()
        for id in pending.projects.sorted() {
            guard var record = projects[id] else { continue }
            if let account = state.projects[id] { record.usage = account.usage; record.weight = account.weight }
            projects[id] = record
            batch.append(.saveProject(record))
        }
        batch.writes.append(contentsOf: pending.direct)
        for id in pending.nodes.sorted() {
            guard var record = nodeRecords[id], let node = state.node(id) else { continue }
            record.state = node.state
            batch.append(.saveNode(record, gpus: node.gpus.map { GPURecord(nodeID: id, gpu: $0) }))
        }
        var jobs = pending.jobs
        for (id, idempotency) in pending.submitted.sorted(by: { $0.key < $1.key }) {
            guard let job = state.jobs[id], let launch = launches[id] else { continue }
            batch.append(.submitJob(JobRecord(job: job, launch: launch, finishedAt: finishedAt[id]), idempotency: idempotency))
            jobs.remove(id)
            pending.jobsChanged.insert(id)
        }
        for id in jobs.sorted() {
            guard let job = state.jobs[id], let launch = launches[id] else { continue }
            batch.append(.saveJob(JobRecord(job: job, launch: launch, finishedAt: finishedAt[id])))
            pending.jobsChanged.insert(id)
        }
        for id in pending.allocations.sorted() {
            if let allocation = state.allocations[id] {
                batch.append(.saveAllocation(AllocationRecord(allocation: allocation, live: true, report: reports[id] ?? .assigned, outcome: nil, endedAt: nil)))
                pending.jobsChanged.insert(allocation.task.job)
            } else if let ended = pending.ended[id] {
                batch.append(.saveAllocation(AllocationRecord(allocation: ended.allocation, live: false, report: ended.report, outcome: ended.outcome, endedAt: ended.at)))
                pending.jobsChanged.insert(ended.allocation.task.job)
            }
        }
        for event in pending.events { batch.append(.appendEvent(event)) }
        for chunk in pending.logs { batch.append(.appendLog(chunk)) }
        if pending.metaDirty || batch.writes.contains(where: { if case .saveAllocation = $0 { true } else { false } }) {
            batch.append(.setMeta(StoreMeta(stateIndex: state.index, nextAllocationID: state.nextAllocationID)))
        }
        return batch
    }

    private nonisolated func wake() { wakeContinuation.yield() }

    /// Ends the wake-up stream: the scheduling loop returns.
    public nonisolated func stopWakeups() { wakeContinuation.finish() }
}

/// What changed since the last transaction.
struct PendingWrites {
    struct Ended {
        var allocation: Allocation
        var outcome: AllocationOutcome
        var at: Timestamp
        var report: AllocationReport
    }

    var direct: [StoreWrite] = []
    var projects: Set<ProjectID> = []
    var nodes: Set<NodeID> = []
    var submitted: [JobID: IdempotencyRecord?] = [:]
    var jobs: Set<JobID> = []
    var allocations: Set<AllocationID> = []
    var ended: [AllocationID: Ended] = [:]
    var events: [EventRecord] = []
    var logs: [LogChunkRecord] = []
    var metaDirty = false
    /// Nodes whose assignments changed: their blocking queries answer after the commit.
    var nodesChanged: Set<NodeID> = []
    /// Jobs whose state or logs changed: followers of their logs wake after the commit.
    var jobsChanged: Set<JobID> = []
    /// New tokens: usable once durable.
    var tokensToPublish: [TokenRecord] = []
    var queueChanged = false
    /// Projects or memberships changed: readers get the new rights once durable.
    var membersChanged = false
}
