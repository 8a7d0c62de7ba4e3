/// A project's quota: the GPUs it is guaranteed (per GPU model, or of any model), how many more
/// it may borrow from capacity that others leave idle, and the cohort it lends to — Kueue's
/// nominal quotas, borrowing limit and cohorts, Run:ai's over-quota.
///
/// Work within a guarantee runs as the project's own; work beyond it runs *borrowed*: it is
/// placed only on idle capacity and yields (preemption with the agent's stop notice) to any
/// project's work that is within its guarantee — the owner reclaiming what it lent. Projects
/// without a quota have no guarantee: all their work is borrowed when any project has one.
///
/// **Cohorts.** The cluster is one cohort: a guarantee left idle is lent to every project. A
/// quota that names a cohort lends its idle guarantee only to projects of the same cohort:
/// others' borrowed work never takes the GPUs the cohort's guarantees hold (a fence), so a
/// cohort's members reclaim nothing from outsiders, and lend to each other first. Capacity no
/// guarantee holds, and guarantees of projects without a named cohort, are lent to all.
public struct Quota: Hashable, Sendable, Codable {
    /// GPUs guaranteed of one model (`H100`), or of any model (nil).
    public struct Guarantee: Hashable, Sendable, Codable {
        public var gpuModel: String?
        public var milliGPUs: Int

        public init(gpuModel: String? = nil, milliGPUs: Int) {
            self.gpuModel = gpuModel
            self.milliGPUs = milliGPUs
        }

        /// Whether a request for `requested` (nil: any model) counts against this guarantee.
        public func covers(requestedModel requested: String?) -> Bool {
            guard let gpuModel else { return true }
            guard let requested else { return false }
            return GPUModelName.matches(requested: gpuModel, offered: requested) || GPUModelName.matches(requested: requested, offered: gpuModel)
        }

        /// Whether GPUs of a node's `model` are of this guarantee's kind.
        public func holds(nodeModel model: String?) -> Bool {
            guard let gpuModel else { return true }
            guard let model else { return false }
            return GPUModelName.matches(requested: gpuModel, offered: model)
        }
    }

    /// At most one per model; a model's own guarantee covers its work before one of any model.
    public var guarantees: [Guarantee]
    /// At most this much beyond the guarantees; nil: as much as is idle.
    public var borrowingLimitMilliGPUs: Int?
    /// The cohort the project lends its idle guarantees to; nil: the whole cluster.
    public var cohort: String?

    public init(guarantees: [Guarantee], borrowingLimitMilliGPUs: Int? = nil, cohort: String? = nil) {
        self.guarantees = guarantees
        self.borrowingLimitMilliGPUs = borrowingLimitMilliGPUs
        self.cohort = cohort
    }

    /// One guarantee (of a model, or of any).
    public init(gpuModel: String? = nil, guaranteedMilliGPUs: Int, borrowingLimitMilliGPUs: Int? = nil, cohort: String? = nil) {
        self.init(guarantees: [Guarantee(gpuModel: gpuModel, milliGPUs: guaranteedMilliGPUs)], borrowingLimitMilliGPUs: borrowingLimitMilliGPUs, cohort: cohort)
    }

    /// All guarantees together.
    public var guaranteedMilliGPUs: Int { guarantees.reduce(0) { $0 + $1.milliGPUs } }

    /// The most a project may hold at once, nil where it may borrow what is idle.
    public var holdingLimitMilliGPUs: Int? { borrowingLimitMilliGPUs.map { guaranteedMilliGPUs + $0 } }

    /// The guarantee that covers a request for `requested`: the model's own, else one of any model.
    public func guaranteeIndex(requestedModel requested: String?) -> Int? {
        guarantees.firstIndex { $0.gpuModel != nil && $0.covers(requestedModel: requested) }
            ?? guarantees.firstIndex { $0.gpuModel == nil }
    }

    public static func validate(_ quota: Quota) -> String? {
        guard (1...16).contains(quota.guarantees.count) else { return "a quota has 1…16 guarantees" }
        for guarantee in quota.guarantees {
            guard (0...100_000_000).contains(guarantee.milliGPUs) else { return "a guarantee must be 0…100,000 GPUs" }
            if let model = guarantee.gpuModel, model.isEmpty || model.count > 64 { return "a GPU model is 1…64 characters" }
        }
        guard quota.guaranteedMilliGPUs <= 100_000_000 else { return "the guarantees add up to more than 100,000 GPUs" }
        if Set(quota.guarantees.map { $0.gpuModel?.lowercased() ?? "" }).count != quota.guarantees.count { return "one guarantee per GPU model" }
        if let limit = quota.borrowingLimitMilliGPUs, !(0...100_000_000).contains(limit) { return "the borrowing limit must be 0…100,000 GPUs" }
        if let cohort = quota.cohort, !Self.isValidCohortName(cohort) { return "a cohort name is 1…63 characters of a-z, 0-9 and '-', starting with a letter" }
        return nil
    }

    public static func isValidCohortName(_ name: String) -> Bool {
        guard (1...63).contains(name.utf8.count), let first = name.utf8.first, (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(first) else { return false }
        return name.utf8.allSatisfy { (UInt8(ascii: "a")...UInt8(ascii: "z")).contains($0) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) || $0 == UInt8(ascii: "-") }
    }

    // Stored quotas written before guarantees were a list had one model and one amount.
    private enum CodingKeys: String, CodingKey { case guarantees, borrowingLimitMilliGPUs, cohort, gpuModel, guaranteedMilliGPUs }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        if let guarantees = try c.decodeIfPresent([Guarantee].self, forKey: .guarantees) {
            self.guarantees = guarantees
        } else {
            guarantees = [Guarantee(gpuModel: try c.decodeIfPresent(String.self, forKey: .gpuModel), milliGPUs: try c.decode(Int.self, forKey: .guaranteedMilliGPUs))]
        }
        borrowingLimitMilliGPUs = try c.decodeIfPresent(Int.self, forKey: .borrowingLimitMilliGPUs)
        cohort = try c.decodeIfPresent(String.self, forKey: .cohort)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(guarantees, forKey: .guarantees)
        try c.encodeIfPresent(borrowingLimitMilliGPUs, forKey: .borrowingLimitMilliGPUs)
        try c.encodeIfPresent(cohort, forKey: .cohort)
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

/// What a project's live allocations hold: per guarantee (parallel to `Quota.guarantees`) the
/// milli-GPUs of work it covers, and in all.
public struct QuotaUse: Hashable, Sendable {
    public var covered: [Int]
    public var total: Int

    public init(covered: [Int], total: Int) {
        self.covered = covered
        self.total = total
    }

    public var coveredTotal: Int { covered.reduce(0, +) }
}

extension ClusterState {
    /// Whether any project has a quota (without one, quotas play no part in any decision).
    public var quotasActive: Bool { projects.values.contains { $0.quota != nil } }

    /// What a project's live allocations hold. Standing is the project's, not the allocation's
    /// (Kueue's: a queue borrows while its use exceeds its nominal quota): its oldest covered
    /// work fills each guarantee, the rest is borrowed.
    public func quotaUse(of project: ProjectID) -> QuotaUse {
        var use = QuotaUse(covered: Array(repeating: 0, count: projects[project]?.quota?.guarantees.count ?? 0), total: 0)
        for allocation in allocations.values where allocation.project == project {
            use.total += allocation.milliGPUs
            if let job = jobs[allocation.task.job], let k = guaranteeIndex(of: job) { use.covered[k] += allocation.milliGPUs }
        }
        return use
    }

    /// The guarantee of its project's quota that the job's GPUs count against (every GPU group
    /// covered by the same one), nil when none does.
    public func guaranteeIndex(of job: Job) -> Int? {
        guard let quota = projects[job.project]?.quota else { return nil }
        let groups = job.taskGroups.filter { $0.resources.gpu.milliGPUs > 0 }
        guard let first = groups.first, let k = quota.guaranteeIndex(requestedModel: first.resources.gpuModel) else { return nil }
        return groups.allSatisfy { quota.guaranteeIndex(requestedModel: $0.resources.gpuModel) == k } ? k : nil
    }

    /// Whether the job's GPUs count against one of its project's guarantees.
    public func isCoveredByQuota(_ job: Job) -> Bool { guaranteeIndex(of: job) != nil }

    /// The jobs whose running work is within their project's guarantee: per project and
    /// guarantee, oldest first (by first start, then id), as long as their GPUs fit in it.
    /// Everything else that runs is borrowed and yields to guaranteed claims. Empty unless a
    /// project has a quota.
    public func jobsWithinGuarantee() -> Set<JobID> {
        guard quotasActive else { return [] }
        struct Key: Hashable { var project: ProjectID; var guarantee: Int }
        var running: [Key: [(start: Timestamp, job: JobID, milli: Int)]] = [:]
        var byJob: [JobID: (start: Timestamp, milli: Int)] = [:]
        for allocation in allocations.values {
            let entry = byJob[allocation.task.job] ?? (allocation.startTime, 0)
            byJob[allocation.task.job] = (min(entry.start, allocation.startTime), entry.milli + allocation.milliGPUs)
        }
        for (id, entry) in byJob {
            guard let job = jobs[id], let k = guaranteeIndex(of: job) else { continue }
            running[Key(project: job.project, guarantee: k), default: []].append((entry.start, id, entry.milli))
        }
        var within: Set<JobID> = []
        for (key, jobs) in running {
            var left = projects[key.project]?.quota?.guarantees[key.guarantee].milliGPUs ?? 0
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
    public func quotaStanding(of job: Job, milliGPUs: Int, use: QuotaUse) -> QuotaStanding {
        guard quotasActive, milliGPUs > 0 else { return .unmanaged }
        guard let quota = projects[job.project]?.quota else { return .borrowing }
        let k = guaranteeIndex(of: job).flatMap { $0 < use.covered.count ? $0 : nil }
        // The borrowing limit caps what the project holds beyond its guarantees (Kueue's
        // borrowingLimit): the part of this claim its guarantee cannot hold counts against it.
        if let limit = quota.borrowingLimitMilliGPUs {
            let held = zip(quota.guarantees, use.covered).reduce(0) { $0 + min($1.0.milliGPUs, $1.1) }
            let room = k.map { max(0, quota.guarantees[$0].milliGPUs - use.covered[$0]) } ?? 0
            if use.total - held + max(0, milliGPUs - room) > limit {
                return .exhausted(guaranteedMilliGPUs: quota.guaranteedMilliGPUs, usedMilliGPUs: use.total, borrowableMilliGPUs: limit)
            }
        }
        // A job is its own while its guarantee holds it whole, else wholly borrowed.
        guard let k else { return .borrowing }
        return use.covered[k] + milliGPUs <= quota.guarantees[k].milliGPUs ? .guaranteed : .borrowing
    }
}

/// The fences named cohorts put around their guarantees (see `Quota`): borrowed work of a
/// project outside a cohort never holds the GPUs the cohort's guarantees hold. Per cohort there
/// is a fence of all its guarantees over all GPUs, and one per model it guarantees over that
/// model's GPUs; an outsider's borrowed placement on a node must leave, under every fence that
/// holds the node's GPUs, the fenced GPUs free of outsiders.
public struct CohortFences: Sendable {
    struct Fence: Sendable {
        var cohort: String
        var kind: Quota.Guarantee
        /// Ready capacity of the kind (milli-GPUs).
        var capacity: Int
    }

    private var fences: [Fence] = []
    /// Live milli-GPUs per cohort ("" for the whole cluster's) and node GPU model ("" for none).
    private var use: [String: [String: Int]] = [:]

    public init(state: ClusterState) {
        var guaranteed: [String: [String?: Int]] = [:]
        for project in state.projects.values {
            guard let quota = project.quota, let cohort = quota.cohort else { continue }
            guaranteed[cohort, default: [:]][nil, default: 0] += quota.guaranteedMilliGPUs
            for guarantee in quota.guarantees { if let model = guarantee.gpuModel { guaranteed[cohort, default: [:]][model.lowercased(), default: 0] += guarantee.milliGPUs } }
        }
        guard !guaranteed.isEmpty else { return }
        for (cohort, kinds) in guaranteed.sorted(by: { $0.key < $1.key }) {
            for (model, milli) in kinds.sorted(by: { ($0.key ?? "") < ($1.key ?? "") }) where milli > 0 {
                let kind = Quota.Guarantee(gpuModel: model, milliGPUs: milli)
                let capacity = state.nodes.reduce(0) { $0 + ($1.state.acceptsWork && kind.holds(nodeModel: $1.gpuModel) ? $1.gpus.count * 1000 : 0) }
                fences.append(Fence(cohort: cohort, kind: kind, capacity: capacity))
            }
        }
        // Use on the nodes capacity counts (ready ones): placements and preemptions happen there only.
        for allocation in state.allocations.values where allocation.milliGPUs > 0 {
            guard let slot = state.slot(of: allocation.node), state.nodes[slot].state.acceptsWork else { continue }
            add(allocation.milliGPUs, cohort: state.projects[allocation.project]?.quota?.cohort, nodeModel: state.nodes[slot].gpuModel)
        }
    }

    /// No named cohort guarantees anything: nothing is fenced.
    public var isEmpty: Bool { fences.isEmpty }

    /// Counts live (or planned) milli-GPUs of a project of `cohort` on GPUs of `nodeModel` in (or, negative, out).
    public mutating func add(_ milli: Int, cohort: String?, nodeModel: String?) {
        guard !fences.isEmpty else { return }
        use[cohort ?? "", default: [:]][nodeModel ?? "", default: 0] += milli
    }

    /// The cohort whose fence a borrowed placement of `milli` by a project of `cohort` on GPUs of
    /// `nodeModel` would cross; nil when it crosses none.
    public func crossed(by milli: Int, cohort: String?, nodeModel: String?) -> String? {
        guard milli > 0 else { return nil }
        for fence in fences where fence.cohort != cohort && fence.kind.holds(nodeModel: nodeModel) {
            var outsiders = 0
            for (user, models) in use where user != fence.cohort {
                for (model, held) in models where fence.kind.holds(nodeModel: model.isEmpty ? nil : model) { outsiders += held }
            }
            if outsiders + milli > fence.capacity - fence.kind.milliGPUs { return fence.cohort }
        }
        return nil
    }
}
