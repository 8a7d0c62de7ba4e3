public import FastGPUModel
public import FastGPUScheduler
public import FastGPUStore

// Jobs as users see them: submission, reads, cancel, events, logs and the job long poll.
extension ControlPlane {
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
        launch.outputs = try submission.outputs.map { try outputTarget($0, job: id, projectName: projects[project]?.name ?? submission.project) }
        launch.inputs = try submission.inputs.map { try inputSource($0, projectName: projects[project]?.name ?? submission.project) }
        var job = Job(id: id, name: submission.name, project: project, submitter: principal.subject, priority: submission.priority,
                      spot: submission.spot, taskGroups: submission.taskGroups, runtimeEstimate: submission.runtimeEstimate,
                      runtimeLimit: submission.runtimeLimit, submitTime: now)
        job.outputs = launch.outputs.map(\.when)
        if let why = ClusterState.validate(job) { throw ControlPlaneError.invalid(why) }
        if let quota = state.projects[project]?.quota, let limit = quota.borrowingLimitMilliGPUs {
            let milli = job.taskGroups.reduce(0) { $0 + $1.count * $1.milliGPUsPerTask }
            guard milli <= quota.guaranteedMilliGPUs + limit else {
                throw ControlPlaneError.invalid("the job asks for \(milli / 1000) GPUs; project \(submission.project)'s quota lets it hold \((quota.guaranteedMilliGPUs + limit) / 1000) at most (\(quota.guaranteedMilliGPUs / 1000) guaranteed + \(limit / 1000) borrowed)")
            }
        }
        // Admission holds the job's money before anything awaits: a racing submission sees it.
        try admit(&job, now: now)
        do { try apply(.submit(job, launch: launch), now: now, by: principal.subject) } catch {
            billing.reservations[id] = nil
            throw ControlPlaneError.invalid(error.description)
        }
        nextJobID += 1
        waitingEstimate[project, default: 0] += 1
        var record: IdempotencyRecord?
        if let key = idempotencyKey {
            let stored = IdempotencyRecord(subject: principal.subject, key: key, requestHash: requestHash, jobID: id, createdAt: now)
            idempotency[Self.idempotencySlot(principal.subject, key)] = stored
            record = stored
        }
        pending.submitted[id] = record
        wake()
        try await awaitDurable()
        return (try reads.job(id, by: principal), true)
    }

    /// The job as last committed, if the caller may see it. Reads the read model: no turn on the actor.
    public nonisolated func job(_ id: JobID, by principal: Principal) throws -> JobView {
        try reads.job(id, by: principal)
    }

    /// The job with its ended allocations too: from its history, or, for a job whose history
    /// predates the field (a database from schema v4), from the store.
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

    /// Jobs by state in the projects the principal sees (all of them for a cluster admin).
    public func jobCounts(by principal: Principal) -> [JobState: Int] {
        var counts: [JobState: Int] = [:]
        guard principal.kind == .user else { return counts }
        let visible = principal.clusterAdmin ? nil : Set(projects.keys.filter { role(of: principal, in: $0) != nil })
        for job in state.jobs.values where visible?.contains(job.project) ?? true { counts[job.state, default: 0] += 1 }
        return counts
    }

    public func cancel(_ id: JobID, by principal: Principal) async throws -> JobView {
        try checkWritable()
        let job = try visibleJob(id, by: principal)
        guard let role = role(of: principal, in: job.project), role >= .member else {
            throw ControlPlaneError.forbidden("a viewer cannot cancel jobs")
        }
        if !job.state.isFinished {
            let now = clock.now()
            try apply(.cancel(id, at: now), now: now, by: principal.subject)
            wake()
        }
        try await awaitDurable()
        return try reads.job(id, by: principal)
    }

    public nonisolated func events(of id: JobID, by principal: Principal, after sequence: Int64, limit: Int) async throws -> [EventRecord] {
        _ = try reads.job(id, by: principal)
        return try await store.events(job: id, after: sequence, limit: max(1, min(limit, configuration.maxPageSize)))
    }

    /// The names of the nodes and projects `events` are about, to tell them in words.
    public func names(of events: [ClusterEvent]) -> (nodes: [NodeID: String], projects: [ProjectID: String]) {
        var nodes: [NodeID: String] = [:]
        var projects: [ProjectID: String] = [:]
        for event in events {
            if let id = event.node { nodes[id] = nodeRecords[id]?.name }
            switch event {
            case .submitted(_, let id), .projectChanged(let id, _, _), .secretChanged(let id, _, _): projects[id] = self.projects[id]?.name
            default: break
            }
        }
        return (nodes, projects)
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
    public func jobVersion(_ id: JobID) -> UInt64 { watchers.version(of: .job(id)) }

    /// Waits until the job's version passes `version` (it changed state or got new log lines),
    /// or `timeout` passes.
    public func waitForJobChange(_ id: JobID, after version: UInt64, timeout: Duration) async {
        await wait(for: .job(id), after: version, timeout: timeout)
    }

    /// The pending jobs the caller may see, in queue order.
    public nonisolated func queue(by principal: Principal, project: String?) throws -> [(entry: QueueEntry, view: JobView)] {
        try reads.queue(by: principal, project: project)
    }

    /// The job as the read model keeps it; its queue place is added at read time.
    func view(of id: JobID) throws(ControlPlaneError) -> JobView {
        guard let job = state.jobs[id], let launch = state.launches[id] else { throw .notFound("\(id) not found") }
        let ended = job.history.map { attempt in
            AllocationView(allocation: attempt.allocation, live: false, report: attempt.cause == .exited ? .exited : .stopping,
                           outcome: attempt.outcome, endedAt: attempt.endedAt)
        }
        let live = job.liveAllocations.values.sorted().compactMap { allocationID -> AllocationView? in
            guard let allocation = state.allocations[allocationID] else { return nil }
            return AllocationView(allocation: allocation, live: true, report: allocation.report, outcome: nil, endedAt: nil)
        }
        return JobView(job: job, projectName: projects[job.project]?.name ?? "\(job.project)", launch: launch, finishedAt: job.finishedAt,
                       allocations: (ended + live).sorted { $0.allocation.id < $1.allocation.id }, queue: nil, costMicros: costMicros(of: id))
    }
}
