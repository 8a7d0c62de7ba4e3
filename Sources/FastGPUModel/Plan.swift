/// One task placed on one node with exactly these devices.
public struct Placement: Hashable, Sendable, Codable {
    public var task: TaskRef
    public var node: NodeID
    public var devices: [DeviceAssignment]
    public var cpuMillis: Int
    public var memoryMiB: Int
    /// The task belongs to a gang group: it commits with all its group or not at all.
    public var gang: Bool
    /// Beyond its project's guaranteed quota: runs on borrowed capacity, which its owner reclaims.
    public var borrowed: Bool = false

    public init(task: TaskRef, node: NodeID, devices: [DeviceAssignment], cpuMillis: Int, memoryMiB: Int, gang: Bool, borrowed: Bool = false) {
        self.borrowed = borrowed
        self.task = task
        self.node = node
        self.devices = devices
        self.cpuMillis = cpuMillis
        self.memoryMiB = memoryMiB
        self.gang = gang
    }
}

/// A running allocation the plan stops to make room for `beneficiary`.
public struct Preemption: Hashable, Sendable, Codable {
    public var allocation: AllocationID
    /// The epoch the scheduler saw; a verifier drops the preemption if the allocation changed since.
    public var epoch: Epoch
    public var victim: TaskRef
    public var beneficiary: JobID

    public init(allocation: AllocationID, epoch: Epoch, victim: TaskRef, beneficiary: JobID) {
        self.allocation = allocation
        self.epoch = epoch
        self.victim = victim
        self.beneficiary = beneficiary
    }
}

/// The largest set of free GPUs of a fitting model on one node: "the largest free fit".
public struct FreeFit: Hashable, Sendable, CustomStringConvertible, Codable {
    public var node: NodeID
    public var freeGPUs: Int
    public var gpuModel: String

    public init(node: NodeID, freeGPUs: Int, gpuModel: String) {
        self.node = node
        self.freeGPUs = freeGPUs
        self.gpuModel = gpuModel
    }

    public var description: String { "\(freeGPUs) \(gpuModel) free on \(node)" }
}

/// What is short for a job that waiting can help.
public enum Shortfall: Hashable, Sendable, CustomStringConvertible, Codable {
    /// No ready node has `perTask` free GPUs (of the model, when one is asked) for a task.
    case gpus(perTask: Int, model: String?)
    /// No GPU has this much free share and memory.
    case gpuShare(milli: Int, memoryMiB: Int)
    /// No MIG GPU has free slots for the profile.
    case migSlots(profile: String)
    case cpu(perTaskMillis: Int)
    case memory(perTaskMiB: Int)
    /// A gang of `tasks` tasks fits on only `placeable` at once.
    case gangNodes(tasks: Int, placeable: Int)
    /// It would fit, but the capacity is held for an earlier job's backfill reservation.
    case reservedFor(JobID)
    /// A ready node fits nothing because no node is ready.
    case noReadyNode
    /// Requeued after a loss; the scheduler considers it again from `until` on.
    case backoff(until: Timestamp)
    /// Its project's quota holds no more: what it is guaranteed, what it uses, what it may borrow
    /// (milli-GPUs). Waiting helps as its own work ends.
    case quotaExhausted(guaranteedMilliGPUs: Int, usedMilliGPUs: Int, borrowableMilliGPUs: Int)
    /// The idle GPUs it fits on are guaranteed to a cohort, which lends them only to its own
    /// projects; waiting helps as other work ends.
    case cohortFenced(cohort: String)

    /// `2`, `1.5`: milli-GPUs as GPUs.
    static func gpus(_ milli: Int) -> String { milli % 1000 == 0 ? "\(milli / 1000)" : "\(milli / 1000).\(String(milli % 1000).count == 3 ? String(milli % 1000) : String(repeating: "0", count: 3 - String(milli % 1000).count) + String(milli % 1000))" }

    public var description: String {
        switch self {
        case .gpus(let n, let model): "no ready node has \(n) free \(model ?? "") GPU\(n == 1 ? "" : "s")".replacingDoubleSpaces()
        case .quotaExhausted(let guaranteed, let used, let borrowable):
            "its project's quota is used up: \(Self.gpus(used)) GPUs in use, \(Self.gpus(guaranteed)) guaranteed and at most \(Self.gpus(borrowable)) more borrowed"
        case .cohortFenced(let cohort): "the idle GPUs it fits on are guaranteed to cohort \(cohort), which lends them only to its own projects"
        case .gpuShare(let milli, let memory): "no GPU has a free share of \(milli)m with \(memory) MiB"
        case .migSlots(let profile): "no MIG GPU has free slots for \(profile)"
        case .cpu(let m): "no ready node has \(m)m CPU free beside the GPUs"
        case .memory(let m): "no ready node has \(m) MiB memory free beside the GPUs"
        case .gangNodes(let tasks, let placeable): "gang of \(tasks) tasks; only \(placeable) can be placed now"
        case .reservedFor(let job): "the free capacity is reserved for \(job), which is ahead in the queue"
        case .noReadyNode: "no node is ready"
        case .backoff: "requeued after its allocation was lost; waiting out the retry backoff"
        }
    }
}

/// Why no node could ever host a job, whatever ends or leaves.
public enum NeverReason: Hashable, Sendable, CustomStringConvertible, Codable {
    case unknownGPUModel(String)
    case unknownMIGProfile(String)
    /// One task asks more GPUs than any node has.
    case taskLargerThanAnyNode(requestedGPUs: Int, largestNodeGPUs: Int)
    case noNodeFits(String)
    case gangLargerThanCluster(tasks: Int, hostable: Int)
    case invalidRequest(String)

    public var description: String {
        switch self {
        case .unknownGPUModel(let m): "no node has GPU model \(m)"
        case .unknownMIGProfile(let p): "no node offers MIG profile \(p)"
        case .taskLargerThanAnyNode(let r, let l): "one task needs \(r) GPUs; the largest node has \(l)"
        case .noNodeFits(let what): "no node could ever host one task: \(what)"
        case .gangLargerThanCluster(let t, let h): "gang of \(t) tasks; the whole cluster can host \(h)"
        case .invalidRequest(let why): "invalid request: \(why)"
        }
    }
}

/// Why a job stays pending: the material of `fastgpu jobs why`.
public enum PendingReason: Hashable, Sendable, CustomStringConvertible, Codable {
    /// Waiting can help.
    case notNow(shortfall: Shortfall, largestFreeFit: FreeFit?, jobsAhead: Int, estimatedStart: Timestamp?)
    /// No node could ever host it: change the request.
    case never(NeverReason)

    public var isNever: Bool { if case .never = self { true } else { false } }

    public var description: String { explanation(now: nil) }

    /// The reason as a person reads it; with `now`, the estimated start is given as a wait.
    public func explanation(now: Timestamp?) -> String {
        switch self {
        case .never(let reason):
            return "never: \(reason)"
        case .notNow(let shortfall, let fit, let ahead, let start):
            var text = "not now: \(shortfall)"
            if let fit { text += "; largest free fit \(fit)" }
            text += "; \(ahead) job\(ahead == 1 ? "" : "s") ahead"
            if let start {
                if let now { text += "; estimated start in \(start.milliseconds(since: now) / 1000) s" } else { text += "; estimated start \(start)" }
            }
            return text
        }
    }
}

/// A pending job with its place in the queue and the reason it waits.
public struct PendingJob: Hashable, Sendable, Codable {
    public var job: JobID
    /// 0 for the head of the queue.
    public var position: Int
    public var reason: PendingReason

    public init(job: JobID, position: Int, reason: PendingReason) {
        self.job = job
        self.position = position
        self.reason = reason
    }
}

/// EASY backfill's reservation for the blocked head job: when it will start and where.
public struct Reservation: Hashable, Sendable, Codable {
    public var job: JobID
    public var start: Timestamp
    public var nodes: [NodeID]

    public init(job: JobID, start: Timestamp, nodes: [NodeID]) {
        self.job = job
        self.start = start
        self.nodes = nodes
    }
}

/// The scheduler's proposal: placements, preemptions, and a reason for every job left pending.
public struct Plan: Hashable, Sendable, Codable {
    /// The `ClusterState.index` of the snapshot it was computed on.
    public var basedOn: UInt64
    public var placements: [Placement]
    public var preemptions: [Preemption]
    public var pending: [PendingJob]
    public var reservation: Reservation?

    public init(basedOn: UInt64, placements: [Placement] = [], preemptions: [Preemption] = [], pending: [PendingJob] = [], reservation: Reservation? = nil) {
        self.basedOn = basedOn
        self.placements = placements
        self.preemptions = preemptions
        self.pending = pending
        self.reservation = reservation
    }
}

/// Why a verifier refused part of a plan.
public enum PlacementRejection: Hashable, Sendable, CustomStringConvertible, Codable {
    case unknownJob
    case jobNotWaiting
    case taskAlreadyPlaced
    case unknownNode
    case capacity(CapacityShortage)
    /// Another task of its gang was rejected, so none of the gang commits.
    case gangIncomplete
    case duplicateTask

    public var description: String {
        switch self {
        case .unknownJob: "unknown job"
        case .jobNotWaiting: "job is not waiting"
        case .taskAlreadyPlaced: "task already has an allocation"
        case .unknownNode: "unknown node"
        case .capacity(let shortage): shortage.description
        case .gangIncomplete: "another task of the gang was rejected"
        case .duplicateTask: "task placed twice in one plan"
        }
    }
}

/// A placement a verifier refused, with why.
public struct RejectedPlacement: Hashable, Sendable, Codable {
    public var placement: Placement
    public var reason: PlacementRejection

    public init(placement: Placement, reason: PlacementRejection) {
        self.placement = placement
        self.reason = reason
    }
}

/// A plan re-checked against a state: what may commit, and what was refused with why.
///
/// Only `PlanVerifier` (FastGPUScheduler, same package) makes one, so holding a `VerifiedPlan`
/// means "checked against the state it will be applied to".
public struct VerifiedPlan: Hashable, Sendable, Codable {
    public let basedOn: UInt64
    /// The `ClusterState.index` it was verified against; `ClusterState` refuses it at any other index.
    public let verifiedAt: UInt64
    public let placements: [Placement]
    public let preemptions: [Preemption]
    public let rejected: [RejectedPlacement]

    package init(basedOn: UInt64, verifiedAt: UInt64, placements: [Placement], preemptions: [Preemption], rejected: [RejectedPlacement]) {
        self.basedOn = basedOn
        self.verifiedAt = verifiedAt
        self.placements = placements
        self.preemptions = preemptions
        self.rejected = rejected
    }

    public var isEmpty: Bool { placements.isEmpty && preemptions.isEmpty }
}

extension String {
    fileprivate func replacingDoubleSpaces() -> String {
        var out = ""
        var lastSpace = false
        for c in self {
            if c == " " && lastSpace { continue }
            lastSpace = c == " "
            out.append(c)
        }
        return out
    }
}
