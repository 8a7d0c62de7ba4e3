/// The life of a node as the scheduler sees it.
public enum NodeState: String, Hashable, Sendable, CaseIterable, Codable {
    /// Takes new work.
    case ready
    /// Keeps its work, takes no new work (operator's choice).
    case cordoned
    /// Takes no new work; its work is being moved off.
    case draining
    /// Missed its heartbeats or left: holds nothing, takes nothing.
    case down

    public var acceptsWork: Bool { self == .ready }
}

/// Why a node cannot take a device or a task right now. Returned, never thrown: placement
/// failure is data (it becomes the pending reason that `fastgpu jobs why` shows).
public enum CapacityShortage: Hashable, Sendable, CustomStringConvertible, Codable {
    case nodeNotReady(NodeState)
    case unknownGPU(Int)
    case unhealthyGPU(Int)
    case gpuBusy(Int)
    case gpuShareTooSmall(Int)
    case gpuSharedByOtherProject(Int)
    case migProfileUnsupported(Int)
    case migSlotsTaken(Int)
    case cpu(requestedMillis: Int, freeMillis: Int)
    case memory(requestedMiB: Int, freeMiB: Int)

    public var description: String {
        switch self {
        case .nodeNotReady(let state): "node is \(state.rawValue)"
        case .unknownGPU(let i): "gpu\(i) does not exist"
        case .unhealthyGPU(let i): "gpu\(i) is unhealthy"
        case .gpuBusy(let i): "gpu\(i) is in use"
        case .gpuShareTooSmall(let i): "gpu\(i) has too little share or memory left"
        case .gpuSharedByOtherProject(let i): "gpu\(i) is shared by another project"
        case .migProfileUnsupported(let i): "gpu\(i) cannot host that MIG profile"
        case .migSlotsTaken(let i): "gpu\(i) MIG slots are taken"
        case .cpu(let requested, let free): "needs \(requested)m CPU, \(free)m free"
        case .memory(let requested, let free): "needs \(requested) MiB memory, \(free) MiB free"
        }
    }
}

/// One server with GPUs, run by one agent.
///
/// Invariants (kept by `reserve`/`release`, checked by the property tests):
/// `allocatedCPUMillis ≤ cpuMillis`, `allocatedMemoryMiB ≤ memoryMiB`, `freeWholeGPUs` equals the
/// number of healthy GPUs not in MIG mode whose usage is `.free`, and every allocation in
/// `allocations` holds exactly the devices recorded on the GPUs.
public struct Node: Hashable, Sendable, Identifiable, Codable {
    public var id: NodeID
    public var name: String
    public var gpus: [GPU]
    public var cpuMillis: Int
    public var memoryMiB: Int
    public var labels: [String: String]
    public var state: NodeState
    /// Shares from different projects may share a GPU only where the operator says the GPUs
    /// isolate them (vGPU, HAMi); by default a shared GPU serves one project.
    public var allowsCrossProjectSharing: Bool

    public private(set) var allocatedCPUMillis: Int = 0
    public private(set) var allocatedMemoryMiB: Int = 0
    public private(set) var freeWholeGPUs: Int = 0
    public private(set) var allocations: [AllocationID] = []

    public init(id: NodeID, name: String? = nil, gpus: [GPU], cpuMillis: Int, memoryMiB: Int, labels: [String: String] = [:], state: NodeState = .ready, allowsCrossProjectSharing: Bool = false) {
        self.id = id
        self.name = name ?? id.description
        self.gpus = gpus
        self.cpuMillis = cpuMillis
        self.memoryMiB = memoryMiB
        self.labels = labels
        self.state = state
        self.allowsCrossProjectSharing = allowsCrossProjectSharing
        self.freeWholeGPUs = gpus.count(where: { $0.isFree && $0.isHealthy })
    }

    /// The model of the node's first GPU: nodes are homogeneous in practice; checks still look
    /// at every GPU.
    public var gpuModel: String? { gpus.first?.model }

    public var freeCPUMillis: Int { cpuMillis - allocatedCPUMillis }
    public var freeMemoryMiB: Int { memoryMiB - allocatedMemoryMiB }

    /// Whether the node could take these devices and amounts now; the first shortage when not.
    /// `existing` checks capacity only: work that already runs stays on a node that was cordoned or
    /// a GPU that turned unhealthy since it started (restoring a state from a store).
    public func shortage(devices: [DeviceAssignment], cpuMillis: Int, memoryMiB: Int, project: ProjectID, existing: Bool = false) -> CapacityShortage? {
        guard existing || state.acceptsWork else { return .nodeNotReady(state) }
        if cpuMillis > freeCPUMillis { return .cpu(requestedMillis: cpuMillis, freeMillis: freeCPUMillis) }
        if memoryMiB > freeMemoryMiB { return .memory(requestedMiB: memoryMiB, freeMiB: freeMemoryMiB) }
        // Two devices of one allocation on one GPU (never produced by the scheduler, possible in a
        // forged plan) must be checked together: then the check runs on a scratch copy.
        var repeatsGPU = false
        for (i, device) in devices.enumerated() {
            let index = device.gpuIndex
            guard gpus.indices.contains(index) else { return .unknownGPU(index) }
            if let shortage = gpus[index].shortage(for: device, project: project, allowsCrossProjectSharing: allowsCrossProjectSharing, ignoringHealth: existing) {
                return shortage
            }
            if devices[..<i].contains(where: { $0.gpuIndex == index }) { repeatsGPU = true }
        }
        if repeatsGPU {
            var scratch = gpus
            for device in devices {
                if let shortage = scratch[device.gpuIndex].shortage(for: device, project: project, allowsCrossProjectSharing: allowsCrossProjectSharing, ignoringHealth: existing) {
                    return shortage
                }
                scratch[device.gpuIndex].take(device, allocation: AllocationID(.max), project: project)
            }
        }
        return nil
    }

    /// Takes the devices and amounts for `allocation`, all or nothing. `existing` records work that
    /// already runs (capacity checked, node state and GPU health not).
    public mutating func reserve(_ allocation: Allocation, existing: Bool = false) -> CapacityShortage? {
        if let shortage = shortage(devices: allocation.devices, cpuMillis: allocation.cpuMillis, memoryMiB: allocation.memoryMiB, project: allocation.project, existing: existing) {
            return shortage
        }
        for device in allocation.devices {
            // Counted in `freeWholeGPUs` before: free and healthy (an unhealthy GPU never is).
            let wasCounted = gpus[device.gpuIndex].isFree && gpus[device.gpuIndex].isHealthy
            gpus[device.gpuIndex].take(device, allocation: allocation.id, project: allocation.project)
            if wasCounted && !gpus[device.gpuIndex].isFree { freeWholeGPUs -= 1 }
        }
        allocatedCPUMillis += allocation.cpuMillis
        allocatedMemoryMiB += allocation.memoryMiB
        allocations.append(allocation.id)
        return nil
    }

    /// Gives back exactly what `allocation` took: the symmetric undo of `reserve`.
    public mutating func release(_ allocation: Allocation) {
        guard let position = allocations.firstIndex(of: allocation.id) else { return }
        allocations.remove(at: position)
        for device in allocation.devices where gpus.indices.contains(device.gpuIndex) {
            let wasFree = gpus[device.gpuIndex].isFree
            gpus[device.gpuIndex].release(device, allocation: allocation.id)
            if !wasFree && gpus[device.gpuIndex].isFree && gpus[device.gpuIndex].isHealthy { freeWholeGPUs += 1 }
        }
        allocatedCPUMillis -= allocation.cpuMillis
        allocatedMemoryMiB -= allocation.memoryMiB
    }

    /// Records a device's health as the agent reports it.
    public mutating func setHealth(_ health: GPUHealth, ofGPU index: Int) {
        guard gpus.indices.contains(index) else { return }
        gpus[index].health = health
        freeWholeGPUs = gpus.count(where: { $0.isFree && $0.isHealthy })
    }
}
