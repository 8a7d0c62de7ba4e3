public import FastGPUModel
public import FastGPUScheduler
public import FastGPUStore

// Liveness: nodes that go silent go down; their allocations are lost and retried after a backoff.
extension ControlPlane {
    /// One liveness tick (`LivenessService` runs one per second on the injected clock): wakes the
    /// scheduler for retry backoffs that ran out, forgets expired idempotency keys, and takes
    /// silent nodes down. Returns the nodes it took down.
    @discardableResult
    public func tick() async throws -> [NodeID] {
        wakeIfBackoffDue()
        try await expireIdempotencyKeys()
        try await meterRunning()
        return try await checkLiveness()
    }

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
            try takeDown(node, now: now)
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
    func takeDown(_ node: Node, now: Timestamp, by actor: String? = nil) throws {
        for allocationID in node.allocations.sorted() { try lose(allocationID, cause: .nodeDown, now: now) }
        // Outputs still on the node's disk cannot reach their bucket now; a retry may, once it is back.
        for upload in pendingUploads(on: node.id) {
            try apply(.settleUpload(upload.job, upload.allocation, succeeded: false, error: "its node went down before the upload finished", at: now), now: now, by: actor)
        }
        stateBeforeDown[node.id] = node.state
        try apply(.setNodeState(node.id, .down, at: now), now: now, by: actor)
    }

    /// Revokes every credential of the node: its agent is refused from the next request on,
    /// even before the store has it (revoking errs on the safe side).
    func revokeCredentials(of node: NodeID, now: Timestamp) {
        for var old in tokenRecords.values.sorted(by: { $0.id < $1.id }) where old.kind == .node && old.nodeID == node && old.revokedAt == nil {
            old.revokedAt = now
            tokenRecords[old.id] = old
            pending.direct.append(.saveToken(old))
            tokens.put(old)
        }
    }

    /// Ends an allocation its node no longer runs. The task is requeued after a backoff that
    /// doubles with each attempt, or, once out of attempts, fails its job.
    func lose(_ allocationID: AllocationID, cause: EndCause, now: Timestamp) throws {
        guard state.allocations[allocationID] != nil else { return }
        try apply(.loseAllocation(allocationID, at: now, cause: cause, retry: configuration.retryPolicy), now: now)
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
}
