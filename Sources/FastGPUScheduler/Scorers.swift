public import FastGPUModel

/// What a scorer sees of one candidate placement.
public struct ScoringInput {
    public var node: Node
    public var devices: [DeviceAssignment]
    public var task: TaskDemand
    /// Tasks of the same job and group already on this node (for spread).
    public var sameGroupOnNode: Int
    public var mix: WorkloadMix

    public init(node: Node, devices: [DeviceAssignment], task: TaskDemand, sameGroupOnNode: Int, mix: WorkloadMix) {
        self.node = node
        self.devices = devices
        self.task = task
        self.sameGroupOnNode = sameGroupOnNode
        self.mix = mix
    }
}

/// Rates one feasible placement from 0 (worst) to 100 (best), like Kubernetes' Score plugins.
/// Stateless; the weighted sum of all scorers ranks candidates, ties broken by the seed.
public protocol PlacementScorer: Sendable {
    func score(_ input: ScoringInput) -> Int
}

/// A scorer with its weight in the sum.
public struct WeightedScorer: Sendable {
    public var scorer: any PlacementScorer
    public var weight: Int

    public init(_ scorer: any PlacementScorer, weight: Int) {
        self.scorer = scorer
        self.weight = weight
    }
}

/// Prefer the node that is fullest after the placement (Kubernetes' MostAllocated): packs work so
/// that whole nodes stay free for large jobs. GPU use decides; a CPU-only task uses CPU.
///
/// score = 100 × used-after ÷ capacity, in milli-GPUs (or CPU millicores without a GPU request).
public struct BestFitScorer: PlacementScorer {
    public init() {}
    public func score(_ input: ScoringInput) -> Int {
        let node = input.node
        if input.task.gpu == .none || node.gpus.isEmpty {
            guard node.cpuMillis > 0 else { return 0 }
            return (node.allocatedCPUMillis + input.task.resources.cpuMillis) * 100 / node.cpuMillis
        }
        var capacity = 0
        var used = 0
        node.gpus.withUnsafeBufferPointer { gpus in
            for i in gpus.indices where gpus[i].isHealthy {
                capacity += 1000
                used += gpus[i].migEnabled ? Int(gpus[i].occupiedMIGSlots?.nonzeroBitCount ?? 0) * 125 : 1000 - gpus[i].freeMilli
            }
        }
        guard capacity > 0 else { return 0 }
        return min(100, (used + input.task.gpu.milliGPUs) * 100 / capacity)
    }
}

/// The idea of FGD (Weng et al., "Beware of Fragmentation", USENIX ATC'23): prefer the placement
/// that least increases the node's *expected* fragmentation for the workload mix.
///
/// A node's fragmentation for one task shape is the free GPU capacity that shape cannot use: for
/// a whole-GPU shape of k GPUs, every partly free GPU, and all free GPUs when fewer than k are
/// whole; for a share of d milli, every GPU with less than d free. The expected fragmentation
/// weighs shapes by how often they occur in the queue (`WorkloadMix`). Unlike FGD this ignores
/// CPU and memory in the shapes, and MIG GPUs (their slots are placed by `DeviceSelection`).
///
/// score = 50 − 50 × Δfragmentation ÷ node capacity (milli-GPUs), clamped to 0…100: a placement
/// that adds no fragments scores 50, one that fills fragments scores more.
public struct FragmentationScorer: PlacementScorer {
    public init() {}
    public func score(_ input: ScoringInput) -> Int {
        let node = input.node
        guard !node.gpus.isEmpty, !input.mix.shapes.isEmpty else { return 50 }
        let before = Self.expectedFragmentation(node, taking: [], mix: input.mix)
        let after = Self.expectedFragmentation(node, taking: input.devices, mix: input.mix)
        let capacity = node.gpus.count * 1000
        let delta = after - before
        return max(0, min(100, 50 - delta * 50 / capacity))
    }

    /// Σ over shapes of weight × fragmentation, divided by the total weight (milli-GPUs).
    static func expectedFragmentation(_ node: Node, taking devices: [DeviceAssignment], mix: WorkloadMix) -> Int {
        node.gpus.withUnsafeBufferPointer { gpus in
            var wholeFree = 0
            var partialFree = 0
            for i in gpus.indices where gpus[i].isHealthy && !gpus[i].migEnabled {
                let free = freeMilli(of: gpus[i], after: devices)
                if free == 1000 { wholeFree += 1 } else { partialFree += free }
            }
            var total = 0
            for (shape, weight) in mix.shapes {
                let fragment: Int
                switch shape {
                case .whole(let k):
                    fragment = wholeFree >= k ? partialFree : wholeFree * 1000 + partialFree
                case .share(let d):
                    var f = 0
                    for i in gpus.indices where gpus[i].isHealthy && !gpus[i].migEnabled {
                        let free = freeMilli(of: gpus[i], after: devices)
                        if free < d { f += free }
                    }
                    fragment = f
                }
                total += weight * fragment
            }
            return total / max(1, mix.totalWeight)
        }
    }

    private static func freeMilli(of gpu: GPU, after devices: [DeviceAssignment]) -> Int {
        var free = gpu.freeMilli
        for device in devices where device.gpuIndex == gpu.index {
            switch device {
            case .whole: free = 0
            case .share(_, let milli, _): free -= milli
            case .mig: break
            }
        }
        return free
    }
}

/// Keep a multi-GPU task inside one NVLink island. score = 100 ÷ islands used (100 for one device).
public struct TopologyScorer: PlacementScorer {
    public init() {}
    public func score(_ input: ScoringInput) -> Int {
        guard input.devices.count > 1 else { return 100 }
        var islands: [Int] = []
        for device in input.devices {
            let island = input.node.gpus[device.gpuIndex].island
            if !islands.contains(island) { islands.append(island) }
        }
        return 100 / islands.count
    }
}

/// For groups that ask to spread (replicas): prefer nodes holding fewer of the group's tasks.
/// score = 100 − 100 × same-group tasks on the node ÷ group size; 100 for groups that pack.
public struct SpreadScorer: PlacementScorer {
    public init() {}
    public func score(_ input: ScoringInput) -> Int {
        guard input.task.spread, input.task.groupCount > 0 else { return 100 }
        return max(0, 100 - 100 * input.sameGroupOnNode / input.task.groupCount)
    }
}

/// A GPU demand shape of the queue, for the fragmentation measure.
public enum GPUShape: Hashable, Sendable {
    case whole(Int)
    case share(milli: Int)
}

/// How often each GPU shape occurs among the waiting tasks: FGD's "target workload".
/// Built once per pass from the queue; the most frequent `limit` shapes are kept.
public struct WorkloadMix: Sendable {
    public var shapes: [(shape: GPUShape, weight: Int)]
    public var totalWeight: Int

    public init(shapes: [(shape: GPUShape, weight: Int)]) {
        self.shapes = shapes
        self.totalWeight = shapes.reduce(0) { $0 + $1.weight }
    }

    public static func of(_ jobs: [Job], limit: Int = 8) -> WorkloadMix {
        var counts: [GPUShape: Int] = [:]
        for job in jobs {
            for group in job.taskGroups {
                switch group.resources.gpu {
                case .whole(let k): counts[.whole(k), default: 0] += group.count
                case .share(let milli, _): counts[.share(milli: milli), default: 0] += group.count
                case .none, .mig: break
                }
            }
        }
        let top = counts.sorted { ($0.value, $0.key.sortKey) > ($1.value, $1.key.sortKey) }.prefix(limit)
        return WorkloadMix(shapes: top.map { ($0.key, $0.value) })
    }
}

extension GPUShape {
    fileprivate var sortKey: Int {
        switch self {
        case .whole(let k): k * 1000
        case .share(let milli): milli
        }
    }
}
