public import FastGPUModel
public import FastGPUScheduler
public import FastGPUStore

extension ControlPlane {
    // MARK: - Applying and writing through

    /// A job that ran to its own end — succeeded, or failed with its process's exit code; not
    /// cancelled, nor failed because its node was lost: then someone or something else decided
    /// how long it ran — teaches the learner how long it ran (all its attempts), once. A service's
    /// replicas run until the service scales down: they teach nothing.
    func learn(from id: JobID) {
        guard let job = state.jobs[id], job.finishedAt != nil, job.attainedMilliGPUMilliseconds > 0, !learnedJobs.contains(id),
              state.launches[id]?.replica == nil else { return }
        switch (job.state, job.history.last?.outcome) {
        case (.succeeded, _), (.failed, .failed?): break
        default: return
        }
        learnedJobs.insert(id)
        learned.learn(job)
    }

    func checkWritable() throws(ControlPlaneError) {
        if let storeFailure { throw .unavailable("the store failed (\(storeFailure)); restart the server") }
    }

    /// Applies a change to memory, records what happened (with who asked, when known), and
    /// notes every row it touched for the next transaction. Returns what happened.
    @discardableResult
    func apply(_ change: ClusterChange, now: Timestamp, by actor: String? = nil) throws(ClusterChangeError) -> [ClusterEvent] {
        let events = try state.apply(change)
        var refusedRetries: [JobID] = []
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
        case .setProject(let id, _), .setQuota(let id, _):
            pending.projects.insert(id)
        case .decayUsage:
            pending.projects.formUnion(state.projects.keys)
        case .submit, .commit, .allocationStarted, .allocationPulling, .endAllocation, .loseAllocation, .cancel, .deferJob, .settleUpload, .retryUploads:
            break
        }
        for event in events {
            switch event {
            case .submitted(let job, _), .requeued(let job, _), .cancelled(let job):
                pending.jobs.insert(job)
                releaseReservation(ifFinished: job)
            case .outputsUploaded(let id, let allocation, _, _):
                pending.jobs.insert(id)
                releaseReservation(ifFinished: id)
                learn(from: id)
                // Its agent's list of uploads changes: a settled one leaves it.
                if let attempt = state.jobs[id]?.history.last(where: { $0.allocation.id == allocation }) { pending.nodesChanged.insert(attempt.allocation.node) }
            case .uploading(let id):
                pending.jobs.insert(id)
                // The nodes that hold the outputs learn of the uploads with their assignments.
                if let job = state.jobs[id] {
                    for attempt in job.history where job.pendingUploads.contains(attempt.allocation.id) { pending.nodesChanged.insert(attempt.allocation.node) }
                }
            case .placed(let allocation):
                pending.jobs.insert(allocation.task.job)
                pending.allocations.insert(allocation.id)
                pending.nodesChanged.insert(allocation.node)
            case .started(let id, let task, _), .pulling(let id, let task, _, _):
                pending.allocations.insert(id)
                pending.jobsChanged.insert(task.job)
            case .ended(let allocation, let outcome, let cause):
                meterEnded(allocation, at: now)
                releaseReservation(ifFinished: allocation.task.job)
                learn(from: allocation.task.job)
                if outcome == .lost || outcome == .preempted, !reserveRetry(allocation.task.job), !refusedRetries.contains(allocation.task.job) {
                    refusedRetries.append(allocation.task.job)
                }
                pending.ended[allocation.id] = PendingWrites.Ended(allocation: allocation, outcome: outcome, at: now,
                                                                   report: cause == .exited ? .exited : .stopping)
                pending.allocations.insert(allocation.id)
                pending.jobs.insert(allocation.task.job)
                pending.projects.insert(allocation.project)
                pending.nodesChanged.insert(allocation.node)
                if state.node(allocation.node)?.state != .down { stopping.add(allocation, cause: cause, endedAt: state.index) }
            case .nodeStateChanged(let node, _, .down):
                stopping.clear(node)
            default:
                break
            }
            record(event, at: now, by: actor)
        }
        // A retry the budget cannot hold does not run: the job is cancelled, by the budget.
        var all = events
        for job in refusedRetries where state.jobs[job]?.state == .pending {
            all += try apply(.cancel(job, at: now), now: now, by: "budget")
        }
        return all
    }

    /// Records an event for the next transaction.
    func record(_ event: ClusterEvent, at time: Timestamp, by actor: String? = nil) {
        pending.events.append(EventRecord(time: time, event: event, actor: actor))
    }

    /// Returns once everything applied so far is committed to the store.
    func awaitDurable() async throws {
        try checkWritable()
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            waiters.append(continuation)
            if !flushing {
                flushing = true
                Task { await self.flush() }
            }
        }
    }

    func flush() async {
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
                watchers.changed(.node(id), to: sealedIndex)
            }
            for id in changedJobs { notifyJob(id) }
            for waiter in waiting { waiter.resume() }
        }
        flushing = false
    }

    func notifyJob(_ id: JobID) {
        watchers.changed(.job(id))
        notifySteps(of: id)
    }

    /// What readers get once the sealed batch is durable: views of the jobs it changed, and
    /// the queue and memberships when they changed. Taken right after `seal()`, from the same state.
    func publication() -> (jobs: [JobView], queue: [QueueEntry]?, members: [ProjectID: [String: MemberRole]]?, projectIDs: [String: ProjectID]?) {
        let views = pending.jobsChanged.union(pending.jobsCosted).sorted().compactMap { try? view(of: $0) }
        return (views, pending.queueChanged ? queue : nil, pending.membersChanged ? members : nil, pending.membersChanged ? projectIDs : nil)
    }

    /// The rows of everything touched since the last seal, in an order the foreign keys accept.
    func seal() -> StoreBatch {
        var batch = StoreBatch()
        for id in pending.projects.sorted() {
            guard var record = projects[id] else { continue }
            if let account = state.projects[id] { record.usage = account.usage; record.weight = account.weight; record.quota = account.quota }
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
            guard let job = state.jobs[id], let launch = state.launches[id] else { continue }
            batch.append(.submitJob(JobRecord(job: job, launch: launch), idempotency: idempotency))
            jobs.remove(id)
            pending.jobsChanged.insert(id)
        }
        for id in jobs.sorted() {
            guard let job = state.jobs[id], let launch = state.launches[id] else { continue }
            batch.append(.saveJob(JobRecord(job: job, launch: launch)))
            pending.jobsChanged.insert(id)
        }
        for id in pending.allocations.sorted() {
            if let allocation = state.allocations[id] {
                batch.append(.saveAllocation(AllocationRecord(allocation: allocation, live: true, report: allocation.report, outcome: nil, endedAt: nil)))
                pending.jobsChanged.insert(allocation.task.job)
            } else if let ended = pending.ended[id] {
                batch.append(.saveAllocation(AllocationRecord(allocation: ended.allocation, live: false, report: ended.report, outcome: ended.outcome, endedAt: ended.at)))
                pending.jobsChanged.insert(ended.allocation.task.job)
            }
        }
        if !pending.charges.isEmpty { batch.append(.appendCharges(pending.charges)) }
        for event in pending.events { batch.append(.appendEvent(event)) }
        for chunk in pending.logs { batch.append(.appendLog(chunk)) }
        if pending.metaDirty || batch.writes.contains(where: { if case .saveAllocation = $0 { true } else { false } }) {
            batch.append(.setMeta(StoreMeta(stateIndex: state.index, nextAllocationID: state.nextAllocationID)))
        }
        return batch
    }

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
    /// Ledger entries metered since the last transaction.
    var charges: [Charge] = []
    /// Jobs whose cost changed: readers see the new figure, long polls are not woken for it.
    var jobsCosted: Set<JobID> = []
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
