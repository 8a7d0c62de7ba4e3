public import FastGPUModel
public import FastGPUScheduler
public import FastGPUStore

// Nodes and their agents: registration, heartbeats, assignments, reports and log shipping.
extension ControlPlane {
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
            if node.state != .down { try apply(.setNodeState(id, .down, at: now), now: now, by: principal.subject) }
            guard node.gpus.count == gpus.count else {
                throw ControlPlaneError.conflict("\(name) is registered with \(node.gpus.count) GPUs; a node's GPU count cannot change")
            }
            try apply(.setNodeState(id, .ready, at: now), now: now, by: principal.subject)
            record(.nodeRegistered(id, name: name, gpus: gpus.count, again: true), at: now, by: principal.subject)
        } else {
            id = NodeID(nextNodeID)
            let gpus = gpus.enumerated().map { offset, gpu in
                GPU(index: offset, uuid: gpu.uuid, model: gpu.model, memoryMiB: gpu.memoryMiB, island: gpu.island, health: gpu.health, migEnabled: gpu.migEnabled)
            }
            let node = Node(id: id, name: name, gpus: gpus, cpuMillis: cpuMillis, memoryMiB: memoryMiB, labels: labels)
            do { try apply(.registerNode(node), now: now, by: principal.subject) } catch { throw ControlPlaneError.invalid(error.description) }
            nextNodeID += 1
            nodeIDs[name] = id
            nodeRecords[id] = NodeRecord(id: id, name: name, state: .ready, cpuMillis: cpuMillis, memoryMiB: memoryMiB, labels: labels,
                                         allowsCrossProjectSharing: false, registeredAt: now, lastHeartbeatAt: now)
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
            try takeDown(node, now: now, by: principal.subject)
            wake()
        }
        pending.nodes.insert(id)
        record(.nodeReplaced(id), at: now, by: principal.subject)
        try await awaitDurable()
        return try nodeView(id)
    }

    /// An agent's heartbeat: liveness, device health, and what it runs. Returns the node's
    /// assignment index so that the agent knows whether to fetch its assignments.
    ///
    /// `running`, when the agent sends it, is every allocation it runs with its epoch: an
    /// allocation the agent confirmed running and no longer lists — in a heartbeat made after
    /// it saw that allocation's assignment — is lost (its process died with the agent, say)
    /// and its task requeued.
    ///
    /// `reconciled` is the assignment index the agent has acted on; an allocation being stopped
    /// is gone only if the agent does not list it *and* has seen the assignments without it.
    public func heartbeat(node id: NodeID, gpuHealth: [Int: GPUHealth], telemetry: [Int: GPUTelemetry] = [:], running: [AllocationID: Epoch]? = nil,
                          reconciled: UInt64? = nil, by principal: Principal) async throws -> UInt64 {
        try checkWritable()
        try requireNode(id, principal)
        guard let node = state.node(id) else { throw ControlPlaneError.notFound("\(id) not found") }
        let now = clock.now()
        lastHeartbeat[id] = now
        for index in telemetry.keys where !node.gpus.indices.contains(index) {
            throw ControlPlaneError.invalid("\(node.name) has no gpu\(index)")
        }
        var changed = false
        if !telemetry.isEmpty {
            gpuTelemetry[id, default: [:]].merge(telemetry) { _, new in new }
            // A `gpu-idle` event is committed like any other change.
            changed = watchIdle(node, telemetry: telemetry, now: now)
        }
        for (index, health) in gpuHealth.sorted(by: { $0.key < $1.key }) {
            guard node.gpus.indices.contains(index) else { throw ControlPlaneError.invalid("\(node.name) has no gpu\(index)") }
            if node.gpus[index].health != health {
                try apply(.setGPUHealth(id, gpu: index, health), now: now)
                changed = true
            }
        }
        if let running {
            if stopping.agentRuns(Set(running.keys), on: id, reconciled: reconciled) {
                // What waited for those GPUs goes to the agent now.
                pending.nodesChanged.insert(id)
                changed = true
            }
            for allocationID in node.allocations.sorted() where state.allocations[allocationID]?.runningSince != nil {
                guard let allocation = state.allocations[allocationID], running[allocationID] != allocation.epoch else { continue }
                // A heartbeat the agent made before it had seen this allocation (one delayed, or
                // sent again after a control plane failed over) says nothing about it: an
                // allocation's epoch is the assignment index that brought it.
                if let reconciled, reconciled < allocation.epoch.rawValue { continue }
                try lose(allocationID, cause: .agentLostIt, now: now)
                changed = true
            }
        }
        if node.state == .down {
            // Back after being judged dead: its old allocations were lost and requeued; it
            // takes new work again.
            let back = stateBeforeDown.removeValue(forKey: id) ?? .ready
            try apply(.setNodeState(id, back, at: now), now: now)
            changed = true
        }
        if changed {
            nodeRecords[id]?.lastHeartbeatAt = now
            pending.nodes.insert(id)
            wake()
            try await awaitDurable()
        }
        return watchers.version(of: .node(id))
    }

    /// The node's durable assignments; blocks while they are at `index` or older, up to `wait`.
    /// `stepsSeen`: the newest step the agent has; a newer one for this node answers at once.
    public func assignments(node id: NodeID, after index: UInt64, stepsSeen: UInt64? = nil, wait: Duration, by principal: Principal) async throws -> Assignments {
        try requireNode(id, principal)
        guard state.node(id) != nil else { throw ControlPlaneError.notFound("\(id) not found") }
        if !(stepsSeen.map { hasNewSteps(on: id, after: $0) } ?? false) {
            await self.wait(for: .node(id), after: index, timeout: wait)
        }
        return durableAssignments(of: id)
    }

    func durableAssignments(of id: NodeID) -> Assignments {
        // Memory may be ahead of the store by the batch in flight; allocations newer than the
        // durable index are held back so that no agent starts work the store could still lose.
        guard let node = state.node(id) else { return Assignments(index: watchers.version(of: .node(id)), allocations: [], uploads: []) }
        var result: [Assignment] = []
        let stoppingGPUs = stopping.busyGPUs(on: id)
        for allocationID in node.allocations.sorted() {
            guard let allocation = state.allocations[allocationID], allocation.epoch.rawValue <= durableIndex,
                  allocation.runningSince != nil || !allocation.devices.contains(where: { stoppingGPUs.contains($0.gpuIndex) }),
                  let job = state.jobs[allocation.task.job], let launch = state.launches[job.id] else { continue }
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
                                     runtimeLimit: job.runtimeLimit, masterAddress: masterAddress, masterPort: masterPort, project: job.project,
                                     inputs: launch.inputs.compactMap { input in
                                         storage.connection(backend: input.backend, key: input.key).map { (input, $0) }
                                     }, steps: allocation.runningSince == nil ? [] : unfinishedSteps(of: allocation)))
        }
        return Assignments(index: watchers.version(of: .node(id)), allocations: result, uploads: uploadAssignments(of: id))
    }

    /// An agent reports on an allocation. A report for an older epoch than the allocation's is
    /// refused: it comes from a copy the control plane has already replaced.
    public func report(node id: NodeID, allocation allocationID: AllocationID, epoch: Epoch, running: Bool, exitCode: Int32?, pulling: Bool = false,
                       by principal: Principal) async throws {
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
        if pulling {
            guard allocation.runningSince == nil, allocation.pullingSince == nil else { return }
            try apply(.allocationPulling(allocationID, epoch: epoch, at: now), now: now)
        } else if running {
            guard allocation.runningSince == nil else { return }
            try apply(.allocationStarted(allocationID, epoch: epoch, at: now), now: now)
        } else {
            let code = exitCode ?? -1
            try apply(.endAllocation(allocationID, code == 0 ? .succeeded : .failed(exitCode: code), at: now, cause: .exited), now: now)
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

    func requireNode(_ id: NodeID, _ principal: Principal) throws(ControlPlaneError) {
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
            try apply(.setNodeState(id, target, at: now), now: now, by: principal.subject)
            wake()
        }
        try await awaitDurable()
        return try nodeView(id)
    }

    func nodeView(_ id: NodeID) throws(ControlPlaneError) -> NodeView {
        guard let node = state.node(id), var record = nodeRecords[id] else { throw .notFound("\(id) not found") }
        record.state = node.state
        let idle = node.state == .down ? [:] : (idleGPUs[id] ?? [:]).filter { index, run in
            node.gpus.indices.contains(index) && node.gpus[index].holders == run.holders
        }
        return NodeView(record: record, node: node, lastHeartbeatAt: lastHeartbeat[id], telemetry: gpuTelemetry[id] ?? [:],
                        idleSince: idle.mapValues(\.since))
    }

    /// Marks down every node whose agent has been silent past TTL + grace; their allocations
    /// are lost and their jobs requeued (or failed, once out of attempts). Returns those nodes.

    /// Follows each GPU that running allocations hold: read at 0 % utilisation, it is idle from
    /// that reading on; once idle for `idleGPUAfter`, each holder's job gets one `gpu-idle`
    /// event. A reading above 0 %, a change of holders or no holder ends the run. An allocation
    /// not yet running (pulling its image, fetching inputs) is not idle, it is starting.
    /// Returns whether it recorded an event.
    func watchIdle(_ node: Node, telemetry: [Int: GPUTelemetry], now: Timestamp) -> Bool {
        var recorded = false
        for (index, reading) in telemetry.sorted(by: { $0.key < $1.key }) {
            guard let utilization = reading.utilizationPercent else { continue }
            let holders = node.gpus[index].holders
            let running = !holders.isEmpty && holders.allSatisfy { state.allocations[$0]?.runningSince != nil }
            guard running, utilization == 0 else {
                idleGPUs[node.id]?[index] = nil
                continue
            }
            var run = idleGPUs[node.id]?[index] ?? IdleRun(since: now, holders: holders)
            if run.holders != holders { run = IdleRun(since: now, holders: holders) }
            let idleFor = now.milliseconds(since: run.since)
            if !run.reported, idleFor >= configuration.idleGPUAfter.wholeMilliseconds {
                run.reported = true
                for holder in holders {
                    guard let allocation = state.allocations[holder] else { continue }
                    record(.gpuIdle(holder, task: allocation.task, node: node.id, gpu: index, seconds: idleFor / 1000), at: now)
                    recorded = true
                }
            }
            idleGPUs[node.id, default: [:]][index] = run
        }
        return recorded
    }
}
