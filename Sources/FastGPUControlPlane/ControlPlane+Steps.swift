public import FastGPUModel

/// A command run inside a running job's allocation (Slurm's step, `kubectl exec`): on the
/// allocation's devices, in its cgroup and sandbox, as its project's user, while the job holds them.
///
/// Steps live in the control plane's memory, as an `exec` session does: a restart of the control
/// plane forgets them (the allocation and its job stay; a step it forgot is not started again).
/// Output is kept to the last `outputLimit` bytes of each stream.
public struct StepView: Sendable, Equatable {
    public enum State: String, Sendable {
        case pending, running, succeeded, failed, lost
        public var isFinished: Bool { self == .succeeded || self == .failed || self == .lost }
    }

    public var id: UInt64
    public var job: JobID
    public var allocation: AllocationID
    public var epoch: Epoch
    public var node: NodeID
    public var command: [String]
    public var environment: [String: String]
    public var state: State
    public var exitCode: Int32?
    public var stdout: String = ""
    public var stderr: String = ""
    /// Bytes of each stream received (kept or not): the offsets the agent reports from.
    public internal(set) var stdoutBytes: Int64 = 0
    public internal(set) var stderrBytes: Int64 = 0
    public var truncated = false
    public var version: UInt64 = 1
    public var createdAt: Timestamp
    public var startedAt: Timestamp?
    public var endedAt: Timestamp?
}

struct StepTable {
    static let outputLimit = 1 << 20
    /// Unfinished steps a job may have at once, and steps (finished ones dropped oldest first) it keeps.
    static let liveLimit = 16
    static let keptLimit = 64

    var byJob: [JobID: [StepView]] = [:]
    var nextID: UInt64 = 1

    func step(_ id: UInt64, of job: JobID) -> StepView? { byJob[job]?.first { $0.id == id } }

    mutating func update(_ id: UInt64, of job: JobID, _ body: (inout StepView) -> Void) -> StepView? {
        guard let index = byJob[job]?.firstIndex(where: { $0.id == id }) else { return nil }
        body(&byJob[job]![index])
        byJob[job]![index].version += 1
        return byJob[job]![index]
    }

    /// Appends what starts at `offset`; the part already received (a retried report) is skipped.
    static func append(_ text: String, at offset: Int64, to output: inout String, received: inout Int64, truncated: inout Bool) {
        guard !text.isEmpty else { return }
        let bytes = Array(text.utf8)
        let skip = Int(max(0, received - offset))
        guard offset <= received, skip < bytes.count else { return }
        let fresh = bytes[skip...]
        received += Int64(fresh.count)
        var kept = Array(output.utf8) + fresh
        if kept.count > outputLimit {
            kept.removeFirst(kept.count - outputLimit)
            // Not in the middle of a character.
            while let first = kept.first, first & 0xC0 == 0x80 { kept.removeFirst() }
            truncated = true
        }
        output = String(decoding: kept, as: UTF8.self)
    }
}

extension ControlPlane {
    /// Starts a step in the job's first running allocation (rank 0 of its first task group).
    public func startStep(job id: JobID, command: [String], environment: [String: String], by principal: Principal) async throws -> StepView {
        try checkWritable()
        let job = try visibleJob(id, by: principal)
        guard let role = role(of: principal, in: job.project), role >= .member else {
            throw ControlPlaneError.forbidden("a viewer cannot run commands in jobs")
        }
        guard !command.isEmpty, command.count <= 4096 else { throw ControlPlaneError.invalid("a step needs a command of 1 to 4096 arguments") }
        guard environment.count <= 256 else { throw ControlPlaneError.invalid("a step has at most 256 env entries") }
        if let name = environment.keys.sorted().first(where: { key in ["CUDA_", "NVIDIA_", "FASTGPU_", "GPU_DEVICE_ORDINAL"].contains { key.hasPrefix($0) } }) {
            // The allocation's devices and identity are the agent's to say, not the step's.
            throw ControlPlaneError.invalid("env \(name.prefix(64)): a step cannot set CUDA_*, NVIDIA_*, GPU_DEVICE_ORDINAL or FASTGPU_* (they name the allocation's devices)")
        }
        guard let launch = state.launches[id] else { throw ControlPlaneError.notFound("\(id) not found") }
        guard launch.image == nil else {
            throw ControlPlaneError.conflict("\(id) runs in a container: steps run in host-process jobs (submit the command as a job of its own)")
        }
        guard launch.replica == nil else { throw ControlPlaneError.conflict("\(id) is a service's replica: steps run in jobs") }
        let running = job.liveAllocations.sorted { ($0.key.group, $0.key.index) < ($1.key.group, $1.key.index) }
            .compactMap { state.allocations[$0.value] }.first { $0.runningSince != nil }
        guard job.state == .running else {
            throw ControlPlaneError.conflict("\(id) is \(job.state.rawValue), not running: a step runs in a running job's allocation")
        }
        guard let allocation = running else {
            throw ControlPlaneError.conflict("\(id) is placed and its agent is starting it: a step runs once it runs (its allocation's runningSince)")
        }
        // The steps of jobs that ended go; those of older epochs of this one are lost.
        for (other, _) in steps.byJob where state.jobs[other].map({ $0.state.isFinished }) ?? true { steps.byJob[other] = nil }
        steps.byJob[id] = steps.byJob[id]?.map(settled)
        let live = steps.byJob[id, default: []].count { !$0.state.isFinished }
        guard live < StepTable.liveLimit else { throw ControlPlaneError.tooMany("\(id) has \(live) unfinished steps; at most \(StepTable.liveLimit)") }
        let now = clock.now()
        // Ids grow across restarts of the control plane (its steps are in memory, its agents'
        // step directories on disk): at least the time in ms × 1024.
        let stepID = max(steps.nextID, UInt64(max(0, now.millisecondsSinceEpoch)) << 10)
        steps.nextID = stepID + 1
        let step = StepView(id: stepID, job: id, allocation: allocation.id, epoch: allocation.epoch, node: allocation.node,
                            command: command, environment: environment, state: .pending, createdAt: now)
        var kept = steps.byJob[id, default: []]
        kept.append(step)
        while kept.count > StepTable.keptLimit, let oldest = kept.firstIndex(where: { $0.state.isFinished }) { kept.remove(at: oldest) }
        steps.byJob[id] = kept
        // The node's agent learns of it now if it waits for assignments, else with its next
        // query (which says the last step it has: see `assignments`).
        watchers.poke(.node(allocation.node))
        logger.info("step \(step.id) of \(id) in \(allocation.id) on \(allocation.node) by \(principal.subject)")
        return step
    }

    public func steps(of id: JobID, by principal: Principal) throws -> [StepView] {
        _ = try visibleJob(id, by: principal)
        return (steps.byJob[id] ?? []).map(settled)
    }

    /// The step once its version passes `after` (its state or output changed), or at `wait`.
    public func step(_ step: UInt64, of id: JobID, after version: UInt64, wait: Duration, by principal: Principal) async throws -> StepView {
        _ = try visibleJob(id, by: principal)
        guard let current = steps.step(step, of: id) else { throw ControlPlaneError.notFound("step \(step) of \(id) not found") }
        if settled(current).version <= version, !settled(current).state.isFinished {
            await self.wait(for: .step(step), after: watchers.version(of: .step(step)), timeout: wait)
        }
        guard let now = steps.step(step, of: id) else { throw ControlPlaneError.notFound("step \(step) of \(id) not found") }
        return settled(now)
    }

    /// A step whose allocation ended (or moved to another epoch) before it did is lost.
    func settled(_ step: StepView) -> StepView {
        guard !step.state.isFinished else { return step }
        if let allocation = state.allocations[step.allocation], allocation.epoch == step.epoch { return step }
        var lost = step
        lost.state = .lost
        lost.endedAt = lost.endedAt ?? clock.now()
        lost.version += 1
        return lost
    }

    /// Steps the node's agent is to run in this allocation: those not yet ended.
    func unfinishedSteps(of allocation: Allocation) -> [StepView] {
        (steps.byJob[allocation.task.job] ?? []).filter { $0.allocation == allocation.id && $0.epoch == allocation.epoch && !$0.state.isFinished }
    }

    public func reportStep(node id: NodeID, allocation allocationID: AllocationID, step stepID: UInt64, epoch: Epoch, started: Bool,
                           stdout: (offset: Int64, text: String), stderr: (offset: Int64, text: String), exitCode: Int32?,
                           by principal: Principal) throws {
        try requireNode(id, principal)
        guard let allocation = state.allocations[allocationID], allocation.node == id, allocation.epoch == epoch else {
            throw ControlPlaneError.conflict("\(allocationID) at epoch \(epoch.rawValue) is no longer live on \(id)")
        }
        guard let existing = steps.step(stepID, of: allocation.task.job), existing.allocation == allocationID else {
            throw ControlPlaneError.notFound("step \(stepID) not found in \(allocationID)")
        }
        guard stdout.offset >= 0, stderr.offset >= 0 else { throw ControlPlaneError.invalid("output offsets start at 0") }
        let now = clock.now()
        _ = steps.update(stepID, of: allocation.task.job) { step in
            guard !step.state.isFinished else { return }
            StepTable.append(stdout.text, at: stdout.offset, to: &step.stdout, received: &step.stdoutBytes, truncated: &step.truncated)
            StepTable.append(stderr.text, at: stderr.offset, to: &step.stderr, received: &step.stderrBytes, truncated: &step.truncated)
            if started && step.state == .pending {
                step.state = .running
                step.startedAt = now
            }
            if let exitCode {
                step.state = exitCode == 0 ? .succeeded : .failed
                step.exitCode = exitCode
                step.startedAt = step.startedAt ?? now
                step.endedAt = now
            }
        }
        watchers.changed(.step(stepID))
    }

    /// A job changed (an allocation ended, perhaps): its waiting steps' readers look again, and
    /// find a step whose allocation is gone lost.
    func notifySteps(of job: JobID) {
        for step in steps.byJob[job] ?? [] where !step.state.isFinished { watchers.changed(.step(step.id)) }
    }

    /// Whether this node has a step to run newer than `seen` (the last step its agent has).
    func hasNewSteps(on node: NodeID, after seen: UInt64) -> Bool {
        guard steps.nextID > seen + 1, let allocations = state.node(node)?.allocations else { return false }
        return allocations.contains { id in
            guard let allocation = state.allocations[id], allocation.runningSince != nil else { return false }
            return unfinishedSteps(of: allocation).contains { $0.id > seen }
        }
    }
}
