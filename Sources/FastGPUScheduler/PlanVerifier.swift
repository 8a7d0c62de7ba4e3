public import FastGPUModel

/// Re-checks a plan against a newer state before it commits (Nomad's plan applier).
///
/// The scheduler decided on a snapshot; the state may have moved since (a node went down, a job
/// was cancelled, an allocation ended or another plan committed). Rules:
/// - Per node, all or nothing: the node's placements are staged in plan order on a copy of the
///   node after its still-valid preemptions; if one does not fit, none of that node's placements
///   commit, other nodes still do.
/// - Per gang, all or nothing: a gang group commits only when every one of its tasks does.
/// - A preemption commits only when its allocation still exists with the same epoch and its
///   beneficiary still has a placement that commits: no job is stopped for nothing.
public struct PlanVerifier: Sendable {
    public init() {}

    public func verify(_ plan: Plan, against state: ClusterState) -> VerifiedPlan {
        var preemptions = plan.preemptions.filter { state.allocations[$0.allocation]?.epoch == $0.epoch }
        var outcome = stage(plan.placements, preemptions: preemptions, state: state)
        // Dropping a preemption can only remove capacity, so re-stage until nothing changes.
        while true {
            let beneficiaries = Set(outcome.accepted.map(\.task.job))
            let kept = preemptions.filter { beneficiaries.contains($0.beneficiary) }
            if kept.count == preemptions.count { break }
            preemptions = kept
            outcome = stage(plan.placements, preemptions: preemptions, state: state)
        }
        return VerifiedPlan(basedOn: plan.basedOn, verifiedAt: state.index, placements: outcome.accepted, preemptions: preemptions, rejected: outcome.rejected)
    }

    private func stage(_ placements: [Placement], preemptions: [Preemption], state: ClusterState) -> (accepted: [Placement], rejected: [RejectedPlacement]) {
        var rejection: [Int: PlacementRejection] = [:]
        var seen: Set<TaskRef> = []
        var byNode: [NodeID: [Int]] = [:]
        var nodeOrder: [NodeID] = []
        for (i, placement) in placements.enumerated() {
            guard let job = state.jobs[placement.task.job] else { rejection[i] = .unknownJob; continue }
            guard job.isWaiting, job.taskGroups.indices.contains(placement.task.group),
                  (0..<job.taskGroups[placement.task.group].count).contains(placement.task.index)
            else { rejection[i] = .jobNotWaiting; continue }
            guard job.liveAllocations[placement.task] == nil, !job.completedTasks.contains(placement.task) else {
                rejection[i] = .taskAlreadyPlaced; continue
            }
            guard seen.insert(placement.task).inserted else { rejection[i] = .duplicateTask; continue }
            guard state.node(placement.node) != nil else { rejection[i] = .unknownNode; continue }
            if byNode[placement.node] == nil { nodeOrder.append(placement.node) }
            byNode[placement.node, default: []].append(i)
        }

        var releases: [NodeID: [Allocation]] = [:]
        for preemption in preemptions {
            if let victim = state.allocations[preemption.allocation] { releases[victim.node, default: []].append(victim) }
        }
        for nodeID in nodeOrder {
            var node = state.node(nodeID)!
            for victim in releases[nodeID] ?? [] { node.release(victim) }
            let indices = byNode[nodeID]!
            var failure: CapacityShortage?
            for i in indices {
                let placement = placements[i]
                let job = state.jobs[placement.task.job]!
                let probe = Allocation(
                    id: AllocationID(UInt64.max - UInt64(i)), task: placement.task, node: nodeID, devices: placement.devices,
                    cpuMillis: placement.cpuMillis, memoryMiB: placement.memoryMiB, project: job.project, priority: job.priority,
                    spot: job.spot, milliGPUs: 0, epoch: Epoch(state.index), startTime: .zero, expectedEnd: .distantFuture)
                if let shortage = node.reserve(probe) { failure = shortage; break }
            }
            if let failure {
                for i in indices { rejection[i] = .capacity(failure) }
            }
        }

        // Gangs: every task of the group, counting live ones, must commit together.
        var gangAccepted: [TaskRef: Int] = [:]
        for (i, placement) in placements.enumerated() where placement.gang && rejection[i] == nil {
            gangAccepted[TaskRef(job: placement.task.job, group: placement.task.group, index: 0), default: 0] += 1
        }
        for (i, placement) in placements.enumerated() where placement.gang {
            let key = TaskRef(job: placement.task.job, group: placement.task.group, index: 0)
            guard rejection[i] == nil, let job = state.jobs[key.job] else { continue }
            let held = job.heldTaskCount(group: key.group)
            if held + (gangAccepted[key] ?? 0) != job.taskGroups[key.group].count { rejection[i] = .gangIncomplete }
        }

        var accepted: [Placement] = []
        var rejected: [RejectedPlacement] = []
        for (i, placement) in placements.enumerated() {
            if let reason = rejection[i] { rejected.append(RejectedPlacement(placement: placement, reason: reason)) } else { accepted.append(placement) }
        }
        return (accepted, rejected)
    }
}
