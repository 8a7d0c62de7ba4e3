public import FastGPUModel

/// Recomputes every node's usage from the live allocations and reports any difference or
/// over-commitment: the oracle of the property tests.
public enum ClusterInvariants {
    public static func violations(in state: ClusterState) -> [String] {
        violations(nodes: state.nodes, allocations: state.allocations, jobs: state.jobs, waiting: state.waiting)
            + state.jobs.values.compactMap { job in
                job.pendingUploads.isEmpty == state.awaitingUploads.contains(job.id) ? "\(job.id): uploads set disagrees" : nil
            }
    }

    /// The same check on loose parts, so that the oracle itself can be tested on broken input.
    public static func violations(nodes: [Node], allocations liveAllocations: [AllocationID: Allocation], jobs: [JobID: Job], waiting: Set<JobID>) -> [String] {
        var problems: [String] = []
        var byNode: [NodeID: [Allocation]] = [:]
        for allocation in liveAllocations.values { byNode[allocation.node, default: []].append(allocation) }
        for node in nodes {
            let allocations = byNode[node.id] ?? []
            if Set(node.allocations) != Set(allocations.map(\.id)) { problems.append("\(node.id): allocation list differs from live allocations") }
            let cpu = allocations.reduce(0) { $0 + $1.cpuMillis }
            let memory = allocations.reduce(0) { $0 + $1.memoryMiB }
            if cpu != node.allocatedCPUMillis || cpu > node.cpuMillis { problems.append("\(node.id): CPU \(cpu)m of \(node.cpuMillis)m, counter \(node.allocatedCPUMillis)") }
            if memory != node.allocatedMemoryMiB || memory > node.memoryMiB { problems.append("\(node.id): memory \(memory) of \(node.memoryMiB), counter \(node.allocatedMemoryMiB)") }
            if node.state == .down && !allocations.isEmpty { problems.append("\(node.id): down node holds allocations") }
            for gpu in node.gpus {
                var whole = 0, milli = 0, gpuMemory = 0, mask: UInt8 = 0, projects: Set<ProjectID> = []
                for allocation in allocations {
                    for device in allocation.devices where device.gpuIndex == gpu.index {
                        switch device {
                        case .whole: whole += 1
                        case .share(_, let m, let mem):
                            milli += m; gpuMemory += mem; projects.insert(allocation.project)
                        case .mig(_, let profileName, let start, let slots):
                            let instanceMask = UInt8(truncatingIfNeeded: ((1 << slots) - 1) << start)
                            if mask & instanceMask != 0 { problems.append("\(node.id) gpu\(gpu.index): MIG slots overlap") }
                            mask |= instanceMask
                            let allowed = MIGGeometry.of(gpuModel: gpu.model)?.profile(named: profileName)?.allowedStarts.contains(start) ?? false
                            if !allowed || !gpu.migEnabled { problems.append("\(node.id) gpu\(gpu.index): MIG \(profileName) at \(start) not allowed") }
                        }
                    }
                }
                let kinds = (whole > 0 ? 1 : 0) + (milli > 0 || gpuMemory > 0 ? 1 : 0) + (mask != 0 ? 1 : 0)
                if whole > 1 || kinds > 1 { problems.append("\(node.id) gpu\(gpu.index): held \(whole) times whole, mixed \(kinds) kinds") }
                if whole > 0 && gpu.migEnabled { problems.append("\(node.id) gpu\(gpu.index): whole allocation on a MIG GPU") }
                if milli > 1000 || gpuMemory > gpu.memoryMiB { problems.append("\(node.id) gpu\(gpu.index): shares \(milli)m / \(gpuMemory) MiB over-committed") }
                if projects.count > 1 && !node.allowsCrossProjectSharing { problems.append("\(node.id) gpu\(gpu.index): shared across projects") }
                let expected: GPUUsage? = switch gpu.usage {
                case .free: whole == 0 && milli == 0 && gpuMemory == 0 && mask == 0 ? gpu.usage : nil
                case .whole: whole == 1 ? gpu.usage : nil
                case .shared(let m, let mem, _): m == milli && mem == gpuMemory ? gpu.usage : nil
                case .mig(let occupied, _): occupied == mask && gpu.migEnabled ? gpu.usage : nil
                }
                if expected == nil { problems.append("\(node.id) gpu\(gpu.index): usage \(gpu.usage) differs from allocations") }
            }
            let free = node.gpus.count { $0.isFree && $0.isHealthy }
            if free != node.freeWholeGPUs { problems.append("\(node.id): freeWholeGPUs \(node.freeWholeGPUs), recomputed \(free)") }
        }
        for job in jobs.values {
            for (group, taskGroup) in job.taskGroups.enumerated() where taskGroup.gang {
                // A gang runs whole: its live tasks and those that already succeeded make up the group.
                let live = job.liveAllocations.keys.count { $0.group == group }
                if live != 0 && job.heldTaskCount(group: group) != taskGroup.count {
                    problems.append("\(job.id): gang group \(group) runs \(live) of \(taskGroup.count) (\(job.heldTaskCount(group: group) - live) done)")
                }
            }
            for (task, id) in job.liveAllocations where liveAllocations[id]?.task != task {
                problems.append("\(job.id): live allocation \(id) of \(task) is missing")
            }
            if job.isWaiting != waiting.contains(job.id) { problems.append("\(job.id): waiting set disagrees") }
        }
        return problems
    }
}
