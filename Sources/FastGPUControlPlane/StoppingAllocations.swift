public import FastGPUModel

/// Allocations the control plane ended (cancelled, preempted, stopped with a failed partner)
/// whose processes its agent may still be stopping. Until the agent reports one gone, what it
/// held is not free: scheduling passes see it held (`ClusterState.holding`), and work placed on
/// its GPUs in the same plan that preempted it (the beneficiary) is not handed to the agent. So a
/// workload that ignores SIGTERM and runs out its stop grace never shares a GPU with another.
///
/// An agent that reports what it runs (`running` in its heartbeat) clears an entry by no
/// longer listing it; a node that goes down or registers again clears all of its entries (it
/// holds nothing). Kept in memory: after a control-plane restart the agents' first heartbeats
/// are the truth, and entries are not rebuilt.
struct StoppingAllocations {
    /// Per node: each stopping allocation as it was when it ended, and the state index of its end.
    private var byNode: [NodeID: [AllocationID: (allocation: Allocation, endedAt: UInt64)]] = [:]
    /// Nodes whose agents list what they run: only they can say an allocation is gone, so
    /// only their work is held back (an agent that never lists would wait forever).
    private var listing: Set<NodeID> = []

    /// Records an allocation that ended while its process may still run.
    mutating func add(_ allocation: Allocation, cause: EndCause, endedAt index: UInt64) {
        switch cause {
        case .cancelled, .preempted, .partnerEnded:
            byNode[allocation.node, default: [:]][allocation.id] = (allocation, index)
        case .exited, .agentLostIt, .nodeDown, .outOfAttempts:
            // Its process is gone already (it exited, its agent says so, or its node holds nothing).
            return
        }
    }

    /// The agent on `node` runs exactly `running` now, having acted on the assignments up to
    /// `reconciled`: an entry it no longer lists is gone, unless the agent has not yet seen the
    /// assignments that ended it (it may be starting it right now). Returns whether anything was cleared.
    mutating func agentRuns(_ running: Set<AllocationID>, on node: NodeID, reconciled: UInt64?) -> Bool {
        listing.insert(node)
        guard let entries = byNode[node] else { return false }
        let kept = entries.filter { id, entry in
            running.contains(id) || (reconciled.map { seen in seen < entry.endedAt } ?? false)
        }
        guard kept.count < entries.count else { return false }
        byNode[node] = kept.isEmpty ? nil : kept
        return true
    }

    /// The node holds nothing any more (down, or its machine registered again).
    mutating func clear(_ node: NodeID) { byNode[node] = nil }

    /// The GPU indices of `node` that a stopping allocation may still use.
    func busyGPUs(on node: NodeID) -> Set<Int> {
        guard listing.contains(node) else { return [] }
        return byNode[node]?.values.reduce(into: Set<Int>()) { $0.formUnion($1.allocation.devices.map(\.gpuIndex)) } ?? []
    }

    /// Every stopping allocation of the nodes whose agents list what they run.
    var held: [Allocation] {
        listing.sorted().flatMap { node in (byNode[node] ?? [:]).values.map(\.allocation).sorted { $0.id < $1.id } }
    }

}
