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
            return wholeGPUs(count, on: node, model: task.resources.gpuModel, minMemoryMiB: task.resources.minGPUMemoryMiB ?? 0)
        case .share(let milli, let memory):
            return shareGPU(on: node, for: task).map { [.share(gpu: $0, milli: milli, memoryMiB: memory)] }
        case .mig(let profileName):
            return migSlot(on: node, for: task).map { [.mig(gpu: $0.gpu, profile: profileName, start: $0.start, slotCount: $0.slotCount)] }
        }
    }

    static func wholeGPUs(_ count: Int, on node: Node, model: String?, minMemoryMiB: Int = 0) -> [DeviceAssignment]? {
        // Runs for every candidate node: reads the GPUs in place (no per-GPU copies) and counts
        // islands in a stack buffer (no heap allocation).
        node.gpus.withUnsafeBufferPointer { gpus -> [DeviceAssignment]? in
            var ceiling = Int.max
            func usable(_ i: Int) -> Bool {
                gpus[i].isFree && gpus[i].isHealthy && gpus[i].memoryMiB >= minMemoryMiB && gpus[i].memoryMiB <= ceiling
                    && (model.map { GPUModelName.matches(requested: $0, offered: gpus[i].model) } ?? true)
            }
            // A node with GPUs of several memory sizes: the task takes the smallest that hold it,
            // so the larger ones stay for tasks that need their memory (a `80GB:1` floor).
            var sizes: (smallest: Int, mixed: Bool) = (-1, false)
            for i in gpus.indices where usable(i) {
                if sizes.smallest < 0 { sizes.smallest = gpus[i].memoryMiB } else if gpus[i].memoryMiB != sizes.smallest { sizes.mixed = true; break }
            }
            if sizes.mixed {
                let candidates = gpus.indices.filter(usable).map { gpus[$0].memoryMiB }.sorted()
                if candidates.count >= count { ceiling = candidates[count - 1] }
            }
            var maxIsland = 0
            for i in gpus.indices {
                // Islands are small non-negative numbers (NVLink domain or NUMA node); anything else
                // would be a probe bug, and is treated as one island rather than trusted as an index.
                guard gpus[i].island >= 0, gpus[i].island < 256 else {
                    let free = gpus.indices.filter(usable).prefix(count).map { DeviceAssignment.whole(gpu: gpus[$0].index) }
                    return free.count == count ? free : nil
                }
                maxIsland = max(maxIsland, gpus[i].island)
            }
            return withUnsafeTemporaryAllocation(of: Int.self, capacity: maxIsland + 1) { free -> [DeviceAssignment]? in
                free.initialize(repeating: 0)
                var total = 0
                for i in gpus.indices where usable(i) {
                    free[gpus[i].island] += 1
                    total += 1
                }
                guard total >= count else { return nil }
                var chosen: [DeviceAssignment] = []
                chosen.reserveCapacity(count)
                var tightest = -1
                for island in 0...maxIsland where free[island] >= count && (tightest < 0 || free[island] < free[tightest]) {
                    tightest = island
                }
                if tightest >= 0 {
                    for i in gpus.indices where chosen.count < count && gpus[i].island == tightest && usable(i) {
                        chosen.append(.whole(gpu: gpus[i].index))
                    }
                    return chosen
                }
                // No island fits: take the fullest islands first, so the task spans as few as possible.
                while chosen.count < count {
                    var fullest = 0
                    for island in 0...maxIsland where free[island] > free[fullest] { fullest = island }
                    for i in gpus.indices where chosen.count < count && gpus[i].island == fullest && usable(i) {
                        chosen.append(.whole(gpu: gpus[i].index))
                    }
                    free[fullest] = 0
                }
                chosen.sort { $0.gpuIndex < $1.gpuIndex }
                return chosen
            }
        }
    }

    static func shareGPU(on node: Node, for task: TaskDemand) -> Int? {
        guard case .share(let milli, let memory) = task.gpu else { return nil }
        var best: (gpu: Int, free: Int)?
        for gpu in node.gpus where gpu.isHealthy && !gpu.migEnabled {
            if let model = task.resources.gpuModel, !GPUModelName.matches(requested: model, offered: gpu.model) { continue }
            if case .shared(_, _, let holders) = gpu.usage, !node.allowsCrossProjectSharing, holders.contains(where: { $0.project != task.project }) { continue }
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
