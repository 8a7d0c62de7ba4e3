import FastGPUModel

/// How many candidate nodes failed each check for one task. A SIMD vector, not an array: one is
/// made per task tried, and must not allocate.
struct FailureTally {
    private var counts = SIMD16<Int32>()

    mutating func add(_ failure: CheckFailure) {
        counts[failure.slot] &+= 1
    }

    subscript(_ failure: CheckFailure) -> Int { Int(counts[failure.slot]) }
}

extension CheckFailure {
    var slot: Int {
        switch self {
        case .nodeNotReady: 0
        case .gpuModel: 1
        case .nodeSelector: 2
        case .cpu: 3
        case .memory: 4
        case .gpuCount: 5
        case .gpuShare: 6
        case .migSlots: 7
        case .reserved: 8
        case .cohortFence: 9
        }
    }
}

extension GPURequest {
    /// The check that a failed device selection amounts to.
    var checkFailure: CheckFailure {
        switch self {
        case .none, .whole: .gpuCount
        case .share: .gpuShare
        case .mig: .migSlots
        }
    }
}

extension SchedulingPass {
    /// What is short for a task that found no node, from the last candidate walk's tally.
    func shortfall(for demand: TaskDemand, placeableOfGang: Int) -> Shortfall {
        if demand.gang && placeableOfGang > 0 { return .gangNodes(tasks: demand.groupCount, placeable: placeableOfGang) }
        if index.readyNodes == 0 { return .noReadyNode }
        if let reservation, tally[.reserved] > 0, tally[.reserved] >= max(tally[.cpu], tally[.memory]) {
            return .reservedFor(reservation.job)
        }
        if let fencedBy, tally[.cohortFence] > 0, tally[.cohortFence] >= max(tally[.cpu], tally[.memory], tally[.gpuShare], tally[.migSlots]) {
            return .cohortFenced(cohort: fencedBy)
        }
        switch demand.gpu {
        case .whole(let count):
            let largest = currentFreeFit(for: demand)?.freeGPUs ?? 0
            if largest < count { return .gpus(perTask: count, model: demand.resources.gpuModel) }
        case .share(let milli, let memory):
            if tally[.gpuShare] >= max(tally[.cpu], tally[.memory]) { return .gpuShare(milli: milli, memoryMiB: memory) }
        case .mig(let profile):
            if tally[.migSlots] >= max(tally[.cpu], tally[.memory]) { return .migSlots(profile: profile) }
        case .none:
            break
        }
        if tally[.memory] > tally[.cpu] { return .memory(perTaskMiB: demand.resources.memoryMiB) }
        if tally[.cpu] > 0 || demand.gpu == .none { return .cpu(perTaskMillis: demand.resources.cpuMillis) }
        return .gpus(perTask: max(1, demand.wholeGPUs), model: demand.resources.gpuModel)
    }
}

/// The distinct node shapes of the cluster (any state: a cordoned or down node may come back),
/// to tell "not now" from "never" without scanning every node for every job.
struct NodeShapeCatalog {
    struct Shape: Hashable {
        var gpuModel: String
        /// GPUs not in MIG mode.
        var plainGPUs: Int
        var maxGPUMemoryMiB: Int
        /// The most memory of a GPU not in MIG mode.
        var maxPlainGPUMemoryMiB: Int
        /// Each such GPU's memory where they differ (empty where all are the same: no copy per node per pass).
        var mixedPlainGPUMemoryMiB: [Int]

        /// GPUs not in MIG mode with at least `floor` MiB (a per-GPU memory floor counts these).
        func plainGPUs(withAtLeast floor: Int) -> Int {
            mixedPlainGPUMemoryMiB.isEmpty ? (maxPlainGPUMemoryMiB >= floor ? plainGPUs : 0) : mixedPlainGPUMemoryMiB.count { $0 >= floor }
        }
        /// MIG profiles offered by the node's MIG-mode GPUs, with how many fit on an empty node.
        var migCapacity: [String: Int]
        var cpuMillis: Int
        var memoryMiB: Int
        var labels: [String: String]
    }

    private(set) var shapes: [(shape: Shape, count: Int)] = []
    private var cache: [CacheKey: NeverReason?] = [:]

    private struct CacheKey: Hashable {
        var resources: TaskResources
        var count: Int
        var gang: Bool
    }

    init(nodes: [Node]) {
        var counts: [Shape: Int] = [:]
        var order: [Shape] = []
        for node in nodes {
            var mig: [String: Int] = [:]
            for gpu in node.gpus where gpu.migEnabled {
                guard let geometry = MIGGeometry.of(gpuModel: gpu.model) else { continue }
                for profile in geometry.profiles {
                    mig[profile.name.lowercased(), default: 0] += min(profile.maxInstances, profile.allowedStarts.count)
                }
            }
            var plain: (smallest: Int, largest: Int, mixed: Bool) = (.max, 0, false)
            for gpu in node.gpus where !gpu.migEnabled {
                plain = (min(plain.smallest, gpu.memoryMiB), max(plain.largest, gpu.memoryMiB), plain.mixed || (plain.smallest != .max && gpu.memoryMiB != plain.smallest))
            }
            let shape = Shape(
                gpuModel: node.gpuModel ?? "", plainGPUs: node.gpus.count(where: { !$0.migEnabled }),
                maxGPUMemoryMiB: node.gpus.map(\.memoryMiB).max() ?? 0,
                maxPlainGPUMemoryMiB: plain.largest, mixedPlainGPUMemoryMiB: plain.mixed ? node.gpus.filter { !$0.migEnabled }.map(\.memoryMiB) : [],
                migCapacity: mig,
                cpuMillis: node.cpuMillis, memoryMiB: node.memoryMiB, labels: node.labels)
            if counts[shape] == nil { order.append(shape) }
            counts[shape, default: 0] += 1
        }
        shapes = order.map { ($0, counts[$0]!) }
    }

    /// Why no node could ever host the group, or nil when some could.
    mutating func neverReason(for group: TaskGroup) -> NeverReason? {
        let key = CacheKey(resources: group.resources, count: group.count, gang: group.gang)
        if let cached = cache[key] { return cached }
        let reason = computeNeverReason(for: group)
        cache[key] = reason
        return reason
    }

    private func computeNeverReason(for group: TaskGroup) -> NeverReason? {
        let r = group.resources
        if case .mig(let profile) = r.gpu, !MIGGeometry.allProfileNames.contains(profile.lowercased()) {
            return .unknownMIGProfile(profile)
        }
        // A cluster with no nodes yet rules nothing out: its first nodes are still to register.
        guard !shapes.isEmpty else { return nil }
        var candidates = shapes
        if r.gpu != .none, let model = r.gpuModel {
            candidates = candidates.filter { GPUModelName.matches(requested: model, offered: $0.shape.gpuModel) }
            if candidates.isEmpty { return .unknownGPUModel(model) }
        }
        if case .whole = r.gpu, let floor = r.minGPUMemoryMiB, floor > 0 {
            candidates = candidates.filter { $0.shape.maxPlainGPUMemoryMiB >= floor }
            if candidates.isEmpty { return .noNodeFits("no GPU\(r.gpuModel.map { " of model \($0)" } ?? "") has \(floor) MiB of memory") }
        }
        let selected = candidates.filter { c in r.nodeSelector.allSatisfy { c.shape.labels[$0.key] == $0.value } }
        if selected.isEmpty {
            let labels = r.nodeSelector.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
            return .noNodeFits("no node has the labels \(labels)")
        }
        var hostable = 0
        for (shape, count) in selected {
            hostable += count * Self.tasksPerEmptyNode(shape, r)
        }
        if hostable == 0 {
            switch r.gpu {
            case .whole(let k):
                if let floor = r.minGPUMemoryMiB {
                    let most = selected.map { $0.shape.plainGPUs(withAtLeast: floor) }.max() ?? 0
                    if most < k { return .noNodeFits("no node has \(k) GPUs with \(floor) MiB of memory each (at most \(most))") }
                }
                let largest = selected.map(\.shape.plainGPUs).max() ?? 0
                if largest < k { return .taskLargerThanAnyNode(requestedGPUs: k, largestNodeGPUs: largest) }
            case .share(_, let memory):
                if selected.allSatisfy({ $0.shape.maxGPUMemoryMiB < memory || $0.shape.plainGPUs == 0 }) {
                    return .noNodeFits("no GPU has \(memory) MiB of memory")
                }
            case .mig(let profile):
                if selected.allSatisfy({ ($0.shape.migCapacity[profile.lowercased()] ?? 0) == 0 }) {
                    return .noNodeFits("no GPU in MIG mode offers \(profile)")
                }
            case .none:
                break
            }
            if selected.allSatisfy({ $0.shape.cpuMillis < r.cpuMillis }) { return .noNodeFits("no node has \(r.cpuMillis)m CPU") }
            if selected.allSatisfy({ $0.shape.memoryMiB < r.memoryMiB }) { return .noNodeFits("no node has \(r.memoryMiB) MiB memory") }
            return .noNodeFits("no node has the GPUs, CPU and memory together")
        }
        if group.gang && hostable < group.count { return .gangLargerThanCluster(tasks: group.count, hostable: hostable) }
        return nil
    }

    /// How many tasks of these resources an empty node of this shape holds.
    static func tasksPerEmptyNode(_ shape: Shape, _ r: TaskResources) -> Int {
        var n = Int.max
        if r.cpuMillis > 0 { n = min(n, shape.cpuMillis / r.cpuMillis) }
        if r.memoryMiB > 0 { n = min(n, shape.memoryMiB / r.memoryMiB) }
        switch r.gpu {
        case .none: break
        case .whole(let k):
            let usable = r.minGPUMemoryMiB.map { shape.plainGPUs(withAtLeast: $0) } ?? shape.plainGPUs
            n = min(n, usable / k)
        case .share(let milli, let memory):
            let perGPU = shape.maxGPUMemoryMiB >= memory ? min(1000 / milli, memory > 0 ? shape.maxGPUMemoryMiB / memory : .max) : 0
            n = min(n, shape.plainGPUs * perGPU)
        case .mig(let profile): n = min(n, shape.migCapacity[profile.lowercased()] ?? 0)
        }
        return n == .max ? 1_000_000 : n
    }
}
