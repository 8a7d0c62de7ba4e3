import FastGPUModel

/// Ready nodes bucketed by GPU model and number of free whole GPUs.
///
/// Why: a whole-GPU task on 10,000 nodes must not scan them all. Walking the buckets of a
/// matching model from the requested count upwards yields candidates tightest first (best fit),
/// and the highest non-empty bucket is the largest free fit that a pending reason reports.
/// Removal is a swap with the bucket's last entry, so every update is O(1) and the iteration order
/// depends only on the sequence of updates: deterministic.
struct CapacityIndex {
    /// Distinct GPU models of ready nodes; nodes without GPUs use the entry `""`.
    private(set) var models: [String] = []
    /// The most memory one GPU of a model's ready nodes has: a per-GPU memory floor rules out
    /// a model whose every GPU is smaller (the device selection checks each GPU).
    private var maxMemoryOfModel: [Int] = []
    private var modelSlots: [String: Int] = [:]
    /// `buckets[model][free]` holds node slots.
    private var buckets: [[[Int]]] = []
    /// Per node slot: model index (or -1 when not indexed), free count and position in its bucket.
    private var modelOfNode: [Int]
    private var freeOfNode: [Int]
    private var positionOfNode: [Int]
    /// Node slots with at least one GPU in MIG mode, per model: MIG tasks scan only these.
    private(set) var migNodes: [Int: [Int]] = [:]
    private(set) var readyNodes = 0

    init(nodes: [Node]) {
        modelOfNode = Array(repeating: -1, count: nodes.count)
        freeOfNode = Array(repeating: 0, count: nodes.count)
        positionOfNode = Array(repeating: 0, count: nodes.count)
        for (slot, node) in nodes.enumerated() where node.state.acceptsWork {
            let model = modelIndex(node.gpuModel ?? "", maxGPUs: node.gpus.count)
            for gpu in node.gpus where gpu.memoryMiB > maxMemoryOfModel[model] { maxMemoryOfModel[model] = gpu.memoryMiB }
            modelOfNode[slot] = model
            insert(slot, model: model, free: node.freeWholeGPUs)
            readyNodes += 1
            if node.gpus.contains(where: \.migEnabled) { migNodes[model, default: []].append(slot) }
        }
    }

    private mutating func modelIndex(_ name: String, maxGPUs: Int) -> Int {
        let index: Int
        if let known = modelSlots[name] {
            index = known
        } else {
            index = models.count
            models.append(name)
            modelSlots[name] = index
            buckets.append([])
            maxMemoryOfModel.append(0)
        }
        while buckets[index].count <= maxGPUs { buckets[index].append([]) }
        return index
    }

    private mutating func insert(_ slot: Int, model: Int, free: Int) {
        freeOfNode[slot] = free
        positionOfNode[slot] = buckets[model][free].count
        buckets[model][free].append(slot)
    }

    private mutating func remove(_ slot: Int) {
        let model = modelOfNode[slot]
        let free = freeOfNode[slot]
        let position = positionOfNode[slot]
        let last = buckets[model][free].removeLast()
        if last != slot {
            buckets[model][free][position] = last
            positionOfNode[last] = position
        }
    }

    /// Records a node's new free count after a reservation or release in the pass.
    mutating func update(_ slot: Int, freeWholeGPUs: Int) {
        let model = modelOfNode[slot]
        guard model >= 0, freeOfNode[slot] != freeWholeGPUs else { return }
        remove(slot)
        insert(slot, model: model, free: freeWholeGPUs)
    }

    func isIndexed(_ slot: Int) -> Bool { modelOfNode[slot] >= 0 }

    /// Model indices a request accepts (`nil` accepts every GPU model; `""` is never a GPU model).
    /// Asked for every job, so answers are remembered (the set of models is fixed for a pass).
    mutating func matchingModels(_ requested: String?, minMemoryMiB: Int? = nil) -> [Int] {
        let key = ModelQuery(model: requested, minMemoryMiB: minMemoryMiB ?? 0)
        if let known = matchCache[key] { return known }
        let matching = lookUpModels(requested, minMemoryMiB: minMemoryMiB)
        matchCache[key] = matching
        return matching
    }

    /// The same answer without remembering it (for read-only callers).
    func lookUpModels(_ requested: String?, minMemoryMiB: Int? = nil) -> [Int] {
        let floor = minMemoryMiB ?? 0
        if let known = matchCache[ModelQuery(model: requested, minMemoryMiB: floor)] { return known }
        return models.indices.filter { i in
            guard !models[i].isEmpty, maxMemoryOfModel[i] >= floor else { return false }
            guard let requested else { return true }
            return GPUModelName.matches(requested: requested, offered: models[i])
        }
    }

    private struct ModelQuery: Hashable {
        var model: String?
        var minMemoryMiB: Int
    }

    private var matchCache: [ModelQuery: [Int]] = [:]

    /// The most free whole GPUs on one ready node of these models, with that node's slot.
    func largestFreeFit(models wanted: [Int]) -> (slot: Int, free: Int, model: Int)? {
        var best: (slot: Int, free: Int, model: Int)?
        for model in wanted {
            for free in stride(from: buckets[model].count - 1, through: 0, by: -1) where !buckets[model][free].isEmpty {
                if best == nil || free > best!.free { best = (buckets[model][free][0], free, model) }
                break
            }
        }
        return best
    }

    /// Calls `body` with node slots of these models that have at least `minimumFree` free whole
    /// GPUs, tightest bucket first, until it returns false.
    func forEachCandidate(models wanted: [Int], minimumFree: Int, _ body: (Int) -> Bool) {
        let top = wanted.map { buckets[$0].count }.max() ?? 0
        guard minimumFree < top else { return }
        for free in minimumFree..<top {
            for model in wanted where free < buckets[model].count {
                for slot in buckets[model][free] where !body(slot) { return }
            }
        }
    }

    /// Calls `body` with every indexed node slot: GPU-less nodes first, then GPU nodes fullest first.
    func forEachNode(_ body: (Int) -> Bool) {
        if let cpuOnly = modelSlots[""] {
            for bucket in buckets[cpuOnly] { for slot in bucket where !body(slot) { return } }
        }
        let gpuModels = models.indices.filter { !models[$0].isEmpty }
        let top = gpuModels.map { buckets[$0].count }.max() ?? 0
        for free in 0..<top {
            for model in gpuModels where free < buckets[model].count {
                for slot in buckets[model][free] where !body(slot) { return }
            }
        }
    }
}
