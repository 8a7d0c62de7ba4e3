public import FastGPUModel

/// Job outputs: after a process exits, its agent uploads the output directories (the GPUs
/// are already free) and reports; the job ends once every upload is settled.
///
/// What must be uploaded is model state (`Job.pendingUploads`, written by the reducer); which
/// node holds the files is the ended allocation's node (`Job.history`). The agent learns of its
/// uploads with its assignments, so a retry, or a restart of either side, needs nothing else.
extension ControlPlane {
    struct PendingUpload {
        var job: JobID
        var allocation: AllocationID
        var attempt: Attempt
    }

    /// The uploads that wait on `node`'s disk.
    func pendingUploads(on node: NodeID) -> [PendingUpload] {
        var found: [PendingUpload] = []
        for id in state.awaitingUploads.sorted() {
            guard let job = state.jobs[id] else { continue }
            for attempt in job.history where attempt.allocation.node == node && job.pendingUploads.contains(attempt.allocation.id) {
                found.append(PendingUpload(job: id, allocation: attempt.allocation.id, attempt: attempt))
            }
        }
        return found
    }

    func uploadAssignments(of node: NodeID) -> [UploadAssignment] {
        pendingUploads(on: node).compactMap { pending in
            guard let job = state.jobs[pending.job], let launch = state.launches[pending.job] else { return nil }
            let outputs = launch.outputs.filter { $0.when.applies(to: pending.attempt.outcome) }.compactMap { target -> UploadAssignment.Output? in
                // The key prefix was resolved at submission; only the connection is looked up now.
                guard let backend = storage.connection(backend: target.backend, key: target.keyPrefix) else {
                    logger.error("an output's backend is gone; the upload will fail", metadata: ["job": "\(pending.job.rawValue)", "backend": "\(target.backend)"])
                    return nil
                }
                return UploadAssignment.Output(target: target, backend: backend)
            }
            return UploadAssignment(job: pending.job, allocation: pending.allocation, task: pending.attempt.allocation.task,
                                    taskCount: job.taskCount, generation: job.uploadRetries, outputs: outputs)
        }
    }

    /// An agent says how an allocation's upload went. Only the node that ran the allocation may.
    public func settleUpload(node id: NodeID, allocation allocationID: AllocationID, succeeded: Bool, error: String?, by principal: Principal) async throws {
        try checkWritable()
        try requireNode(id, principal)
        guard let pending = pendingUploads(on: id).first(where: { $0.allocation == allocationID }) else {
            throw ControlPlaneError.conflict("\(allocationID) has no upload pending on \(id)")
        }
        let now = clock.now()
        let reason = error.map { String($0.prefix(500)) }
        try apply(.settleUpload(pending.job, allocationID, succeeded: succeeded, error: reason, at: now), now: now)
        try await awaitDurable()
    }

    /// Tries a job's failed uploads again (its members may); the agent that holds the files
    /// learns of it with its next assignments.
    public func retryUploads(of id: JobID, by principal: Principal) async throws -> JobView {
        try checkWritable()
        let job = try visibleJob(id, by: principal)
        guard let role = role(of: principal, in: job.project), role >= .member else {
            throw ControlPlaneError.forbidden("a viewer cannot retry a job's uploads")
        }
        guard job.outputUploadFailed else { throw ControlPlaneError.conflict("\(id) did not fail for its outputs; there is nothing to retry") }
        let now = clock.now()
        try apply(.retryUploads(id), now: now, by: principal.subject)
        try await awaitDurable()
        return try reads.job(id, by: principal)
    }

    /// Where a job's outputs go, and the backend connection to read them back (the API lists
    /// the manifest with it); nil for a job without outputs.
    public func outputTargets(of id: JobID, by principal: Principal) throws -> (job: Job, outputs: [UploadAssignment.Output]) {
        let job = try visibleJob(id, by: principal)
        let launch = state.launches[id]
        let outputs = (launch?.outputs ?? []).compactMap { target -> UploadAssignment.Output? in
            guard let backend = storage.connection(backend: target.backend, key: target.keyPrefix) else { return nil }
            return UploadAssignment.Output(target: target, backend: backend)
        }
        return (job, outputs)
    }
}
