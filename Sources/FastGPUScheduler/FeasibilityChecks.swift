public import FastGPUModel

/// Why one node cannot take one task now; tallied over candidates into a pending reason.
public enum CheckFailure: String, Hashable, Sendable, CaseIterable {
    case nodeNotReady
    case gpuModel
    case nodeSelector
    case cpu
    case memory
    case gpuCount
    case gpuShare
    case migSlots
    /// The node is held for the backfill reservation and the task would outlive its start.
    case reserved
    /// Borrowed work would take GPUs another cohort's guarantees hold.
    case cohortFence
}

/// A stateless test of one node against one task. Checks run cheapest first and stop at the
/// first failure (Nomad's feasibility chain; Kubernetes' Filter plugins).
public protocol FeasibilityCheck: Sendable {
    func failure(of node: Node, for task: TaskDemand) -> CheckFailure?
}

/// The node must take new work: cordoned, draining and down nodes take none.
public struct NodeReadyCheck: FeasibilityCheck {
    public init() {}
    public func failure(of node: Node, for task: TaskDemand) -> CheckFailure? {
        node.state.acceptsWork ? nil : .nodeNotReady
    }
}

/// The node's GPUs must be of the requested model (`H100` matches `H100-80GB`).
public struct GPUModelCheck: FeasibilityCheck {
    public init() {}
    public func failure(of node: Node, for task: TaskDemand) -> CheckFailure? {
        guard let requested = task.resources.gpuModel, task.gpu != .none else { return nil }
        return node.gpus.contains { GPUModelName.matches(requested: requested, offered: $0.model) } ? nil : .gpuModel
    }
}

/// Every label in the task's node selector must be on the node with that value.
public struct NodeSelectorCheck: FeasibilityCheck {
    public init() {}
    public func failure(of node: Node, for task: TaskDemand) -> CheckFailure? {
        for (key, value) in task.resources.nodeSelector where node.labels[key] != value { return .nodeSelector }
        return nil
    }
}

/// Free CPU millicores beside what is allocated.
public struct CPUCheck: FeasibilityCheck {
    public init() {}
    public func failure(of node: Node, for task: TaskDemand) -> CheckFailure? {
        task.resources.cpuMillis <= node.freeCPUMillis ? nil : .cpu
    }
}

/// Free memory MiB beside what is allocated.
public struct MemoryCheck: FeasibilityCheck {
    public init() {}
    public func failure(of node: Node, for task: TaskDemand) -> CheckFailure? {
        task.resources.memoryMiB <= node.freeMemoryMiB ? nil : .memory
    }
}

/// Enough free, healthy whole GPUs of the requested model (GPUs in MIG mode do not count).
public struct GPUCountCheck: FeasibilityCheck {
    public init() {}
    public func failure(of node: Node, for task: TaskDemand) -> CheckFailure? {
        guard case .whole(let count) = task.gpu else { return nil }
        guard node.freeWholeGPUs >= count else { return .gpuCount }
        guard let model = task.resources.gpuModel else { return nil }
        let matching = node.gpus.count { $0.isFree && $0.isHealthy && GPUModelName.matches(requested: model, offered: $0.model) }
        return matching >= count ? nil : .gpuCount
    }
}

/// One healthy GPU with enough free share and memory that is free or shared by the same project
/// (or on a node whose GPUs isolate projects).
public struct GPUShareCheck: FeasibilityCheck {
    public init() {}
    public func failure(of node: Node, for task: TaskDemand) -> CheckFailure? {
        guard case .share = task.gpu else { return nil }
        return DeviceSelection.shareGPU(on: node, for: task) == nil ? .gpuShare : nil
    }
}

/// One GPU in MIG mode whose geometry has the profile and free slots where NVIDIA allows it.
public struct MIGSlotCheck: FeasibilityCheck {
    public init() {}
    public func failure(of node: Node, for task: TaskDemand) -> CheckFailure? {
        guard case .mig = task.gpu else { return nil }
        return DeviceSelection.migSlot(on: node, for: task) == nil ? .migSlots : nil
    }
}

extension FeasibilityCheck where Self == NodeReadyCheck {
    /// The default chain, cheapest first: state and labels are field reads; CPU and memory are
    /// counters; GPU count is a counter (plus a scan when a model is named); shares and MIG slots
    /// scan the GPUs.
    public static var standardChain: [any FeasibilityCheck] {
        [NodeReadyCheck(), CPUCheck(), MemoryCheck(), GPUCountCheck(), GPUModelCheck(), NodeSelectorCheck(), GPUShareCheck(), MIGSlotCheck()]
    }
}
