/// The GPU part of one task's request.
public enum GPURequest: Hashable, Sendable, CustomStringConvertible, Codable {
    /// A CPU-only task.
    case none
    /// Whole GPUs on one node, `count ≥ 1`.
    case whole(count: Int)
    /// A share of one GPU: `milli` of its compute (1000 = the whole GPU, as the Alibaba trace's
    /// `gpu_milli`) and `memoryMiB` of its memory. Several shares pack onto one GPU.
    case share(milli: Int, memoryMiB: Int)
    /// One MIG instance of the named profile (`1g.10gb`).
    case mig(profile: String)

    /// The request in GPU milli-units (1000 = one GPU): the common measure for accounting,
    /// fairness and fragmentation. A MIG instance weighs its compute slices out of seven.
    public var milliGPUs: Int {
        switch self {
        case .none: 0
        case .whole(let count): count * 1000
        case .share(let milli, _): milli
        case .mig(let profile):
            MIGGeometry.known.lazy.compactMap { $0.profile(named: profile) }.first.map { $0.computeSlices * 1000 / 7 } ?? 0
        }
    }

    public var description: String {
        switch self {
        case .none: "no GPU"
        case .whole(let count): "\(count) GPU\(count == 1 ? "" : "s")"
        case .share(let milli, let memoryMiB): "\(milli)m GPU share with \(memoryMiB) MiB"
        case .mig(let profile): "MIG \(profile)"
        }
    }
}

/// What one task asks of the node it runs on. All quantities are integers.
public struct TaskResources: Hashable, Sendable, Codable {
    public var gpu: GPURequest
    /// A GPU model the task needs (`H100`, `A100-80GB`); nil accepts any model.
    public var gpuModel: String?
    public var cpuMillis: Int
    public var memoryMiB: Int
    /// Node labels that must be present with these values.
    public var nodeSelector: [String: String]
    /// Whole GPUs only: each must have at least this much memory (`24GB:2`); nil accepts any.
    public var minGPUMemoryMiB: Int?

    public init(gpu: GPURequest = .none, gpuModel: String? = nil, cpuMillis: Int = 0, memoryMiB: Int = 0, nodeSelector: [String: String] = [:], minGPUMemoryMiB: Int? = nil) {
        self.gpu = gpu
        self.gpuModel = gpuModel
        self.minGPUMemoryMiB = minGPUMemoryMiB
        self.cpuMillis = cpuMillis
        self.memoryMiB = memoryMiB
        self.nodeSelector = nodeSelector
    }
}

/// The devices one allocation holds on its node. Placements and allocations carry exactly these,
/// so an agent can set `CUDA_VISIBLE_DEVICES` and a verifier can re-check the very same slots.
public enum DeviceAssignment: Hashable, Sendable, CustomStringConvertible, Codable {
    case whole(gpu: Int)
    case share(gpu: Int, milli: Int, memoryMiB: Int)
    case mig(gpu: Int, profile: String, start: Int, slotCount: Int)

    public var gpuIndex: Int {
        switch self {
        case .whole(let gpu), .share(let gpu, _, _), .mig(let gpu, _, _, _): gpu
        }
    }

    public var description: String {
        switch self {
        case .whole(let gpu): "gpu\(gpu)"
        case .share(let gpu, let milli, let memoryMiB): "gpu\(gpu)[\(milli)m,\(memoryMiB)MiB]"
        case .mig(let gpu, let profile, let start, _): "gpu\(gpu)/mig:\(profile)@\(start)"
        }
    }
}
