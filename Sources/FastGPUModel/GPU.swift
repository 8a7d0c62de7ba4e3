/// Whether a GPU may take work.
public enum GPUHealth: Hashable, Sendable, Codable {
    case healthy
    /// Reported bad by the agent (XID error, ECC, fell off the bus); never placed on.
    case unhealthy(reason: String)
}

/// One allocation holding a share of a GPU.
public struct ShareHolder: Hashable, Sendable, Codable {
    public var allocation: AllocationID
    public var project: ProjectID

    public init(allocation: AllocationID, project: ProjectID) {
        self.allocation = allocation
        self.project = project
    }
}

/// What holds a GPU right now.
///
/// Invariants: `.shared` sums stay within the GPU (`milli ≤ 1000`, `memoryMiB ≤ GPU.memoryMiB`),
/// holders in the order they came, of one project unless the node isolates projects; `.mig` only
/// on a GPU in MIG mode, with disjoint slot masks.
public enum GPUUsage: Hashable, Sendable, Codable {
    case free
    case whole(AllocationID)
    case shared(milli: Int, memoryMiB: Int, holders: [ShareHolder])
    case mig(occupied: UInt8, instances: [MIGInstance])
}

/// One physical GPU of a node.
public struct GPU: Hashable, Sendable, Codable {
    public var index: Int
    public var uuid: String
    public var model: String
    public var memoryMiB: Int
    /// The NVLink island (or, lacking NVLink, the NUMA node): GPUs of one island talk fastest.
    public var island: Int
    public var health: GPUHealth
    /// A GPU in MIG mode hosts MIG instances only; switching modes needs a GPU reset, which the
    /// scheduler never does.
    public var migEnabled: Bool
    public internal(set) var usage: GPUUsage

    public init(index: Int, uuid: String? = nil, model: String, memoryMiB: Int, island: Int = 0, health: GPUHealth = .healthy, migEnabled: Bool = false) {
        self.index = index
        self.uuid = uuid ?? "GPU-sim-\(index)"
        self.model = model
        self.memoryMiB = memoryMiB
        self.island = island
        self.health = health
        self.migEnabled = migEnabled
        self.usage = migEnabled ? .mig(occupied: 0, instances: []) : .free
    }

    // Pattern matches instead of `==`: these run for every GPU of every candidate node, and
    // comparing enums with payloads copies them.
    public var isHealthy: Bool { if case .healthy = health { true } else { false } }

    /// The allocations holding it (or a share or MIG instance of it), in the order they came.
    public var holders: [AllocationID] {
        switch usage {
        case .free: []
        case .whole(let allocation): [allocation]
        case .shared(_, _, let holders): holders.map(\.allocation)
        case .mig(_, let instances): instances.map(\.allocation)
        }
    }

    /// Free for a whole-GPU allocation.
    public var isFree: Bool { if case .free = usage { !migEnabled } else { false } }

    /// Compute milli-units still free (1000 for a free GPU; 0 for a whole-allocated or MIG GPU).
    public var freeMilli: Int {
        switch usage {
        case .free: 1000
        case .whole: 0
        case .shared(let milli, _, _): 1000 - milli
        case .mig: 0
        }
    }

    public var freeMemoryMiB: Int {
        switch usage {
        case .free: memoryMiB
        case .whole: 0
        case .shared(_, let used, _): memoryMiB - used
        case .mig: 0
        }
    }

    /// The occupied MIG slots, or nil when the GPU is not in MIG mode.
    public var occupiedMIGSlots: UInt8? {
        if case .mig(let occupied, _) = usage { return occupied }
        return nil
    }

    /// Whether the device can be taken by `project` now. Returns the reason when not.
    public func shortage(for device: DeviceAssignment, project: ProjectID, allowsCrossProjectSharing: Bool, ignoringHealth: Bool = false) -> CapacityShortage? {
        guard isHealthy || ignoringHealth else { return .unhealthyGPU(index) }
        switch (device, usage) {
        case (.whole, .free) where !migEnabled:
            return nil
        case (.whole, _):
            return .gpuBusy(index)
        case (.share(_, let milli, let memory), .free) where !migEnabled:
            return milli <= 1000 && memory <= memoryMiB ? nil : .gpuShareTooSmall(index)
        case (.share(_, let milli, let memory), .shared(let usedMilli, let usedMemory, let holders)):
            if !allowsCrossProjectSharing && holders.contains(where: { $0.project != project }) { return .gpuSharedByOtherProject(index) }
            return usedMilli + milli <= 1000 && usedMemory + memory <= memoryMiB ? nil : .gpuShareTooSmall(index)
        case (.share, _):
            return .gpuBusy(index)
        case (.mig(_, let profileName, let start, _), .mig(let occupied, let instances)):
            guard let geometry = MIGGeometry.of(gpuModel: model), let profile = geometry.profile(named: profileName) else {
                return .migProfileUnsupported(index)
            }
            guard geometry.freeStarts(for: profile, occupied: occupied, instances: instances).contains(start) else {
                return .migSlotsTaken(index)
            }
            return nil
        case (.mig, _):
            return .migProfileUnsupported(index)
        }
    }

    /// Takes the device. The caller has checked `shortage(for:...)`; a violated precondition is a
    /// bug in the caller, not bad input.
    mutating func take(_ device: DeviceAssignment, allocation: AllocationID, project: ProjectID) {
        switch (device, usage) {
        case (.whole, _):
            usage = .whole(allocation)
        case (.share(_, let milli, let memory), .free):
            usage = .shared(milli: milli, memoryMiB: memory, holders: [ShareHolder(allocation: allocation, project: project)])
        case (.share(_, let milli, let memory), .shared(let usedMilli, let usedMemory, let holders)):
            usage = .shared(milli: usedMilli + milli, memoryMiB: usedMemory + memory, holders: holders + [ShareHolder(allocation: allocation, project: project)])
        case (.mig(_, let profile, let start, let slotCount), .mig(let occupied, let instances)):
            let instance = MIGInstance(profile: profile, start: start, slotCount: slotCount, allocation: allocation)
            usage = .mig(occupied: occupied | instance.mask, instances: instances + [instance])
        default:
            // Only reachable when the caller skipped the shortage check: a programming error.
            preconditionFailure("take(\(device)) on \(usage) without a passing shortage check")
        }
    }

    /// Gives back what `allocation` holds on this GPU. Releasing what is not held is a no-op, so
    /// that undo is idempotent.
    mutating func release(_ device: DeviceAssignment, allocation: AllocationID) {
        switch (device, usage) {
        case (.whole, .whole(let holder)) where holder == allocation:
            usage = .free
        case (.share(_, let milli, let memory), .shared(let usedMilli, let usedMemory, let holders)) where holders.contains(where: { $0.allocation == allocation }):
            let rest = holders.filter { $0.allocation != allocation }
            usage = rest.isEmpty ? .free : .shared(milli: usedMilli - milli, memoryMiB: usedMemory - memory, holders: rest)
        case (.mig, .mig(_, let instances)):
            let rest = instances.filter { $0.allocation != allocation }
            usage = .mig(occupied: rest.reduce(0) { $0 | $1.mask }, instances: rest)
        default:
            break
        }
    }
}
