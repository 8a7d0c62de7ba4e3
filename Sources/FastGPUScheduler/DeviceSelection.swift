public import FastGPUModel

/// Picks the concrete devices for a task on a node that passed the checks.
///
/// Whole GPUs: inside the NVLink island whose free count fits tightest, so a multi-GPU task stays
/// on one island and big islands stay whole; spilling over islands only when no island fits.
/// Shares: the GPU with the least free share that still fits, already-shared GPUs first (packing).
/// MIG: the fullest MIG GPU where the profile fits, at the start that keeps the most placements open.
public enum DeviceSelection {
    public static func devices(on node: Node, for task: TaskDemand) -> [DeviceAssignment]? {
        switch task.gpu {
        case .none:
            return []
        case .whole(let count):
            return wholeGPUs(count, on: node, model: task.resources.gpuModel)
        case .share(let milli, let memory):
            return shareGPU(on: node, for: task).map { [.share(gpu: $0, milli: milli, memoryMiB: memory)] }
        case .mig(let profileName):
            return migSlot(on: node, for: task).map { [.mig(gpu: $0.gpu, profile: profileName, start: $0.start, slotCount: $0.slotCount)] }
        }
    }

    static func wholeGPUs(_ count: Int, on node: Node, model: String?) -> [DeviceAssignment]? {
        // Free GPUs grouped by island, islands in index order; at most a handful per node.
        var islands: [(island: Int, gpus: [Int])] = []
        for gpu in node.gpus where gpu.isFree && gpu.isHealthy {
            if let model, !GPUModelName.matches(requested: model, offered: gpu.model) { continue }
            if let i = islands.firstIndex(where: { $0.island == gpu.island }) {
                islands[i].gpus.append(gpu.index)
            } else {
                islands.append((gpu.island, [gpu.index]))
            }
        }
        let total = islands.reduce(0) { $0 + $1.gpus.count }
        guard total >= count else { return nil }
        if let tightest = islands.filter({ $0.gpus.count >= count }).min(by: { $0.gpus.count < $1.gpus.count }) {
            return tightest.gpus.prefix(count).map { .whole(gpu: $0) }
        }
        var chosen: [Int] = []
        for island in islands.sorted(by: { $0.gpus.count > $1.gpus.count }) where chosen.count < count {
            chosen += island.gpus.prefix(count - chosen.count)
        }
        return chosen.sorted().map { .whole(gpu: $0) }
    }

    static func shareGPU(on node: Node, for task: TaskDemand) -> Int? {
        guard case .share(let milli, let memory) = task.gpu else { return nil }
        var best: (gpu: Int, free: Int)?
        for gpu in node.gpus where gpu.isHealthy && !gpu.migEnabled {
            if let model = task.resources.gpuModel, !GPUModelName.matches(requested: model, offered: gpu.model) { continue }
            if case .shared(_, _, let owner, _) = gpu.usage, owner != task.project, !node.allowsCrossProjectSharing { continue }
            guard gpu.freeMilli >= milli, gpu.freeMemoryMiB >= memory else { continue }
            if best == nil || gpu.freeMilli < best!.free { best = (gpu.index, gpu.freeMilli) }
        }
        return best?.gpu
    }

    static func migSlot(on node: Node, for task: TaskDemand) -> (gpu: Int, start: Int, slotCount: Int)? {
        guard case .mig(let profileName) = task.gpu else { return nil }
        var best: (gpu: Int, start: Int, slotCount: Int, occupied: Int)?
        for gpu in node.gpus where gpu.isHealthy && gpu.migEnabled {
            if let model = task.resources.gpuModel, !GPUModelName.matches(requested: model, offered: gpu.model) { continue }
            guard case .mig(let occupied, let instances) = gpu.usage,
                  let geometry = MIGGeometry.of(gpuModel: gpu.model),
                  let profile = geometry.profile(named: profileName),
                  let start = geometry.bestStart(for: profile, occupied: occupied, instances: instances)
            else { continue }
            let used = occupied.nonzeroBitCount
            if best == nil || used > best!.occupied { best = (gpu.index, start, profile.slotCount, used) }
        }
        return best.map { ($0.gpu, $0.start, $0.slotCount) }
    }
}
