/// A project's quota: the GPUs it is guaranteed (of one model, or of any model) and how many
/// more it may borrow from capacity that others leave idle, as Kueue's nominal quota and
/// borrowing limit or Run:ai's over-quota.
///
/// Work within the guarantee runs as the project's own; work beyond it runs *borrowed*: it is
/// placed only on idle capacity and yields (preemption with the agent's stop notice) to any
/// project's work that is within its guarantee — the owner reclaiming what it lent. Projects
/// without a quota have no guarantee: all their work is borrowed when any project has one.
public struct Quota: Hashable, Sendable, Codable {
    /// The model the guarantee is of (`H100`); nil: GPUs of any model. Work of the project that
    /// asks for another model is borrowed.
    public var gpuModel: String?
    public var guaranteedMilliGPUs: Int
    /// At most this much beyond the guarantee; nil: as much as is idle.
    public var borrowingLimitMilliGPUs: Int?

    public init(gpuModel: String? = nil, guaranteedMilliGPUs: Int, borrowingLimitMilliGPUs: Int? = nil) {
        self.gpuModel = gpuModel
        self.guaranteedMilliGPUs = guaranteedMilliGPUs
        self.borrowingLimitMilliGPUs = borrowingLimitMilliGPUs
    }

    public static func validate(_ quota: Quota) -> String? {
        guard (0...100_000_000).contains(quota.guaranteedMilliGPUs) else { return "the guarantee must be 0…100,000 GPUs" }
        if let limit = quota.borrowingLimitMilliGPUs, !(0...100_000_000).contains(limit) { return "the borrowing limit must be 0…100,000 GPUs" }
        if let model = quota.gpuModel, model.isEmpty || model.count > 64 { return "a GPU model is 1…64 characters" }
        return nil
    }

    /// Whether a job asking for `requested` (nil: any model) counts against this guarantee.
    public func covers(requestedModel requested: String?) -> Bool {
        guard let gpuModel else { return true }
        guard let requested else { return false }
        return GPUModelName.matches(requested: gpuModel, offered: requested) || GPUModelName.matches(requested: requested, offered: gpuModel)
    }
}

/// Where a job stands against its project's quota.
public enum QuotaStanding: Hashable, Sendable {
    /// No project has a quota: quotas play no part.
    case unmanaged
    /// Within the project's guarantee: placed as its own, reclaims borrowed capacity if need be.
    case guaranteed
    /// Beyond the guarantee, within the borrowing limit: placed on idle capacity, preemptible.
    case borrowing
    /// Beyond guarantee and borrowing limit: waits (`quotaExhausted`).
    case exhausted(guaranteedMilliGPUs: Int, usedMilliGPUs: Int, borrowableMilliGPUs: Int)
}

extension ClusterState {
    /// Whether any project has a quota (without one, quotas play no part in any decision).
    public var quotasActive: Bool { projects.values.contains { $0.quota != nil } }

    /// The milli-GPUs a project's live allocations hold: of work its guarantee covers (its
    /// model), and in all. Standing is the project's, not the allocation's (Kueue's: a queue
    /// borrows while its use exceeds its nominal quota): its oldest covered work fills the
    /// guarantee, the rest is borrowed.
    public func quotaUse(of project: ProjectID) -> (covered: Int, total: Int) {
        var covered = 0, total = 0
        for allocation in allocations.values where allocation.project == project {
            total += allocation.milliGPUs
            if let job = jobs[allocation.task.job], isCoveredByQuota(job) { covered += allocation.milliGPUs }
        }
        return (covered, total)
    }

    /// Whether the job's GPUs count against its project's guarantee (a quota of its model, or of any).
    public func isCoveredByQuota(_ job: Job) -> Bool {
        guard let quota = projects[job.project]?.quota else { return false }
        return job.taskGroups.allSatisfy { $0.resources.gpu.milliGPUs == 0 || quota.covers(requestedModel: $0.resources.gpuModel) }
    }

    /// The jobs whose running work is within their project's guarantee: per project, oldest
    /// first (by first start, then id), as long as their GPUs fit in it. Everything else that
    /// runs is borrowed and yields to guaranteed claims. Empty unless a project has a quota.
    public func jobsWithinGuarantee() -> Set<JobID> {
        guard quotasActive else { return [] }
        var running: [ProjectID: [(start: Timestamp, job: JobID, milli: Int)]] = [:]
        var byJob: [JobID: (start: Timestamp, milli: Int)] = [:]
        for allocation in allocations.values {
            let entry = byJob[allocation.task.job] ?? (allocation.startTime, 0)
            byJob[allocation.task.job] = (min(entry.start, allocation.startTime), entry.milli + allocation.milliGPUs)
        }
        for (id, entry) in byJob {
            guard let job = jobs[id], isCoveredByQuota(job) else { continue }
            running[job.project, default: []].append((entry.start, id, entry.milli))
        }
        var within: Set<JobID> = []
        for (project, jobs) in running {
            var left = projects[project]?.quota?.guaranteedMilliGPUs ?? 0
            for entry in jobs.sorted(by: { ($0.start, $0.job) < ($1.start, $1.job) }) {
                guard entry.milli <= left else { break }
                left -= entry.milli
                within.insert(entry.job)
            }
        }
        return within
    }

    /// Where `milliGPUs` more of the job would stand, given what its project holds (`use`, which a
    /// scheduling pass adds its own placements to).
    public func quotaStanding(of job: Job, milliGPUs: Int, use: (covered: Int, total: Int)) -> QuotaStanding {
        guard quotasActive, milliGPUs > 0 else { return .unmanaged }
        let quota = projects[job.project]?.quota
        let guaranteed = isCoveredByQuota(job) ? (quota?.guaranteedMilliGPUs ?? 0) : 0
        // In all, the project may hold its guarantee plus its borrowing limit (Kueue's nominal
        // quota + borrowingLimit); within that, a job is its own while the guarantee holds it,
        // else wholly borrowed.
        if let limit = quota?.borrowingLimitMilliGPUs, use.total + milliGPUs > guaranteed + limit {
            return .exhausted(guaranteedMilliGPUs: guaranteed, usedMilliGPUs: use.total, borrowableMilliGPUs: limit)
        }
        return use.covered + milliGPUs <= guaranteed ? .guaranteed : .borrowing
    }
}
