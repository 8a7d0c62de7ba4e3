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

/// Rates one feasible placement from 0 (worst) to 1000 (best), like Kubernetes' Score plugins but
/// in per-mille: fragmentation differences of a few percent of a GPU must stay visible.
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
/// that whole nodes stay free for large jobs.
///
/// score = 1000 × mean over GPU, CPU and memory of used-after ÷ capacity (resources the node has),
/// so that a node is not called full while its CPU is what runs out. A CPU-only task on a node
/// without GPUs is scored on CPU and memory alone.
public struct BestFitScorer: PlacementScorer {
    public init() {}
    public func score(_ input: ScoringInput) -> Int {
        let node = input.node
        var total = 0
        var parts = 0
        if !node.gpus.isEmpty {
            var capacity = 0
            var used = 0
            node.gpus.withUnsafeBufferPointer { gpus in
                for i in gpus.indices where gpus[i].isHealthy {
                    capacity += 1000
                    used += gpus[i].migEnabled ? Int(gpus[i].occupiedMIGSlots?.nonzeroBitCount ?? 0) * 125 : 1000 - gpus[i].freeMilli
                }
            }
            if capacity > 0 {
                total += min(1000, (used + input.task.gpu.milliGPUs) * 1000 / capacity)
                parts += 1
            }
        }
        if node.cpuMillis > 0 {
            total += min(1000, (node.allocatedCPUMillis + input.task.resources.cpuMillis) * 1000 / node.cpuMillis)
            parts += 1
        }
        if node.memoryMiB > 0 {
            total += min(1000, (node.allocatedMemoryMiB + input.task.resources.memoryMiB) * 1000 / node.memoryMiB)
            parts += 1
        }
        return parts == 0 ? 0 : total / parts
    }
}

/// Keep a node's GPU, CPU and memory use in step (Kubernetes' NodeResourcesBalancedAllocation):
/// a node whose CPU runs out first strands its free GPUs, one whose GPUs run out first strands CPU.
///
/// score = 1000 − 1000 × (largest − smallest used-after fraction among GPU, CPU, memory).
public struct BalancedAllocationScorer: PlacementScorer {
    public init() {}
    public func score(_ input: ScoringInput) -> Int {
        let node = input.node
        var fractions: [Int] = []
        let gpuCapacity = node.gpus.count(where: { $0.isHealthy && !$0.migEnabled }) * 1000
        if gpuCapacity > 0 {
            var used = 0
            node.gpus.withUnsafeBufferPointer { gpus in
                for i in gpus.indices where gpus[i].isHealthy && !gpus[i].migEnabled { used += 1000 - gpus[i].freeMilli }
            }
            fractions.append(min(1000, (used + input.task.gpu.milliGPUs) * 1000 / gpuCapacity))
        }
        if node.cpuMillis > 0 { fractions.append(min(1000, (node.allocatedCPUMillis + input.task.resources.cpuMillis) * 1000 / node.cpuMillis)) }
        if node.memoryMiB > 0 { fractions.append(min(1000, (node.allocatedMemoryMiB + input.task.resources.memoryMiB) * 1000 / node.memoryMiB)) }
        guard let high = fractions.max(), let low = fractions.min() else { return 1000 }
        return 1000 - (high - low)
    }
}

/// The idea of FGD (Weng et al., "Beware of Fragmentation", USENIX ATC'23): prefer the placement
/// that least increases the node's *expected* fragmentation for the workload mix.
///
/// A node's fragmentation for one task shape is the free GPU capacity that shape cannot use: all
/// of it when the node lacks the shape's CPU or memory; else, for a whole-GPU shape of k GPUs,
/// every partly free GPU, and all free GPUs when fewer than k are whole; for a share of d milli,
/// every GPU with less than d free. The expected fragmentation weighs shapes by how often they
/// occur in the workload (`WorkloadMix`). MIG GPUs are left out (`DeviceSelection` places their
/// slots to keep the most profiles placeable).
///
/// score = 500 − Δfragmentation (milli-GPUs) ÷ 16, clamped to 0…1000: a placement that adds no
/// fragments scores 500, one that fills fragments scores more. Δ is absolute, not relative to the
/// node's size, as in FGD: a stranded GPU is as bad on a 2-GPU node as on an 8-GPU one (±8 GPUs
/// span the whole range).
public struct FragmentationScorer: PlacementScorer {
    public init() {}
    public func score(_ input: ScoringInput) -> Int {
        let node = input.node
        guard !node.gpus.isEmpty, !input.mix.shapes.isEmpty else { return 500 }
        let before = Self.expectedFragmentation(node, taking: [], cpuMillis: 0, memoryMiB: 0, mix: input.mix)
        let after = Self.expectedFragmentation(node, taking: input.devices, cpuMillis: input.task.resources.cpuMillis,
                                               memoryMiB: input.task.resources.memoryMiB, mix: input.mix)
        return max(0, min(1000, 500 - (after - before) / 16))
    }

    /// Σ over shapes of weight × fragmentation, divided by the total weight (milli-GPUs).
    static func expectedFragmentation(_ node: Node, taking devices: [DeviceAssignment], cpuMillis: Int, memoryMiB: Int, mix: WorkloadMix) -> Int {
        let freeCPU = node.freeCPUMillis - cpuMillis
        let freeMemory = node.freeMemoryMiB - memoryMiB
        return node.gpus.withUnsafeBufferPointer { gpus in
            var wholeFree = 0
            var partialFree = 0
            for i in gpus.indices where gpus[i].isHealthy && !gpus[i].migEnabled {
                let free = freeMilli(of: gpus[i], after: devices)
                if free == 1000 { wholeFree += 1 } else { partialFree += free }
            }
            var total = 0
            for (shape, weight) in mix.shapes {
                let fragment: Int
                if shape.cpuMillis > freeCPU || shape.memoryMiB > freeMemory {
                    total += weight * (wholeFree * 1000 + partialFree)
                    continue
                }
                switch shape.gpu {
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

/// Keep a multi-GPU task inside one NVLink island. score = 1000 ÷ islands used (1000 for one device).
public struct TopologyScorer: PlacementScorer {
    public init() {}
    public func score(_ input: ScoringInput) -> Int {
        guard input.devices.count > 1 else { return 1000 }
        var islands: [Int] = []
        for device in input.devices {
            let island = input.node.gpus[device.gpuIndex].island
            if !islands.contains(island) { islands.append(island) }
        }
        return 1000 / islands.count
    }
}

/// For groups that ask to spread (replicas): prefer nodes holding fewer of the group's tasks.
/// score = 1000 − 1000 × same-group tasks on the node ÷ group size; 1000 for groups that pack.
public struct SpreadScorer: PlacementScorer {
    public init() {}
    public func score(_ input: ScoringInput) -> Int {
        guard input.task.spread, input.task.groupCount > 0 else { return 1000 }
        return max(0, 1000 - 1000 * input.sameGroupOnNode / input.task.groupCount)
    }
}

/// A seeded random score per (task, node): the "random" baseline of packing experiments.
/// Deterministic: the same seed, job and node give the same score.
public struct RandomScorer: PlacementScorer {
    public var seed: UInt64

    public init(seed: UInt64) {
        self.seed = seed
    }

    public func score(_ input: ScoringInput) -> Int {
        Int(SchedulingPass.tieBreak(seed ^ input.task.job.rawValue &* 0x2545_F491_4F6C_DD1D, input.node.id) % 1001)
    }
}

/// A GPU demand shape of the queue, for the fragmentation measure.
public enum GPUShape: Hashable, Sendable {
    case whole(Int)
    case share(milli: Int)
}

/// One kind of task of the workload: its GPU shape, CPU and memory.
public struct WorkloadShape: Hashable, Sendable {
    public var gpu: GPUShape
    public var cpuMillis: Int
    public var memoryMiB: Int

    public init(gpu: GPUShape, cpuMillis: Int = 0, memoryMiB: Int = 0) {
        self.gpu = gpu
        self.cpuMillis = cpuMillis
        self.memoryMiB = memoryMiB
    }

    fileprivate var sortKey: (Int, Int, Int) {
        switch gpu {
        case .whole(let k): (k * 1000, cpuMillis, memoryMiB)
        case .share(let milli): (milli, cpuMillis, memoryMiB)
        }
    }
}

/// How often each task shape occurs in the workload: FGD's "target workload". By default built
/// once per pass from the queue; the most frequent `limit` shapes are kept.
public struct WorkloadMix: Sendable {
    // Sendable: tuples of Sendable values.
    public var shapes: [(shape: WorkloadShape, weight: Int)]
    public var totalWeight: Int

    public init(shapes: [(shape: WorkloadShape, weight: Int)]) {
        self.shapes = shapes
        self.totalWeight = shapes.reduce(0) { $0 + $1.weight }
    }

    public static func of(_ jobs: [Job], limit: Int = 8) -> WorkloadMix {
        var counts: [WorkloadShape: Int] = [:]
        for job in jobs {
            for group in job.taskGroups {
                let r = group.resources
                switch r.gpu {
                case .whole(let k): counts[WorkloadShape(gpu: .whole(k), cpuMillis: r.cpuMillis, memoryMiB: r.memoryMiB), default: 0] += group.count
                case .share(let milli, _): counts[WorkloadShape(gpu: .share(milli: milli), cpuMillis: r.cpuMillis, memoryMiB: r.memoryMiB), default: 0] += group.count
                case .none, .mig: break
                }
            }
        }
        let top = counts.sorted { a, b in
            if a.value != b.value { return a.value > b.value }
            return a.key.sortKey > b.key.sortKey
        }.prefix(limit)
        return WorkloadMix(shapes: top.map { ($0.key, $0.value) })
    }
}
