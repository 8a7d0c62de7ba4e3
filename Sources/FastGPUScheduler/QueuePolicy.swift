public import FastGPUModel
import HeapModule

/// Orders the waiting jobs and ranks jobs for preemption.
public protocol QueuePolicy: Sendable {
    /// A short name for reports and the CLI (`fifo`, `fair-share`, `sjf`, `las`).
    var name: String { get }
    /// The waiting jobs in the order the scheduler tries them.
    func order(_ waiting: [Job], in state: ClusterState, now: Timestamp) -> [Job]
    /// A job's standing for preemption: running work yields only to a waiting job of a strictly
    /// higher rank. The default ranks non-spot above spot, then by priority class; a policy may add
    /// its own last level (LAS: less attained service ranks higher).
    func preemptionRank(of job: Job, in state: ClusterState, now: Timestamp) -> PreemptionRank
    /// The rank a waiting job claims when it looks for victims; running work yields to it only when
    /// it ranks strictly lower. Defaults to `preemptionRank`; a policy that knows what a restart
    /// costs claims less than it ranks, so that a preemption has to pay for the restart.
    func claimRank(of job: Job, in state: ClusterState, now: Timestamp) -> PreemptionRank
    /// Whether displacing all of `victims` (every job a preemption would stop, each of which
    /// already ranks below the claim) for `job` is worth it. Defaults to yes; a policy that prices
    /// completions can weigh the many completions a wide job would delay against its own.
    func preemptionPays(victims: [Job], for job: Job, in state: ClusterState, now: Timestamp) -> Bool
}

/// Lexicographic preemption standing: tier (non-spot above spot), then priority class, then the
/// policy's own level. Spot work never displaces non-spot work, whatever its class: not being
/// preempted by spot is what a non-spot price buys.
public struct PreemptionRank: Hashable, Comparable, Sendable {
    /// Within its project's guaranteed quota (always, where no project has a quota): above every
    /// tier and class, so that an owner reclaims what it lent whoever borrowed it (Kueue's
    /// reclaim within the cohort). The scheduling pass sets it; policies leave it true.
    public var guaranteed: Bool = true
    public var nonSpot: Bool
    public var priority: Int
    public var level: Int

    public init(nonSpot: Bool, priority: Int, level: Int = 0) {
        self.nonSpot = nonSpot
        self.priority = priority
        self.level = level
    }

    public static func < (a: PreemptionRank, b: PreemptionRank) -> Bool {
        if a.guaranteed != b.guaranteed { return !a.guaranteed }
        if a.nonSpot != b.nonSpot { return !a.nonSpot }
        if a.priority != b.priority { return a.priority < b.priority }
        return a.level < b.level
    }
}

extension QueuePolicy {
    public func preemptionRank(of job: Job, in state: ClusterState, now: Timestamp) -> PreemptionRank {
        PreemptionRank(nonSpot: !job.spot, priority: job.priority.value)
    }

    public func claimRank(of job: Job, in state: ClusterState, now: Timestamp) -> PreemptionRank {
        preemptionRank(of: job, in: state, now: now)
    }

    public func preemptionPays(victims: [Job], for job: Job, in state: ClusterState, now: Timestamp) -> Bool { true }

    /// Whether `victim` (of job `victimJob`) yields to `job`.
    public func mayPreempt(_ victimJob: Job, for job: Job, in state: ClusterState, now: Timestamp) -> Bool {
        victimJob.id != job.id && preemptionRank(of: victimJob, in: state, now: now) < claimRank(of: job, in: state, now: now)
    }
}

/// First come, first served: submit time, then job id.
///
/// Source: the default of batch schedulers (Slurm's `priority/basic`, Kubernetes' queue without
/// priorities). The baseline every other policy is measured against.
public struct FIFOPolicy: QueuePolicy {
    public init() {}
    public var name: String { "fifo" }
    public func order(_ waiting: [Job], in state: ClusterState, now: Timestamp) -> [Job] {
        waiting.sortedByKey { ($0.submitTime.millisecondsSinceEpoch, $0.id.rawValue, 0) }
    }
}

/// Shortest job first on the runtime *estimate* (never the true duration): estimate, then submit
/// time, then id; jobs without an estimate go last in FIFO order.
///
/// Source: classic SJF; Helios' QSSF (Hu et al., SC'21) orders by a predicted GPU time the same way.
public struct ShortestJobFirstPolicy: QueuePolicy {
    public init() {}
    public var name: String { "sjf" }
    public func order(_ waiting: [Job], in state: ClusterState, now: Timestamp) -> [Job] {
        waiting.sortedByKey { ($0.runtimeEstimate?.wholeMilliseconds ?? .max, $0.submitTime.millisecondsSinceEpoch, Int64(bitPattern: $0.id.rawValue)) }
    }
}

/// Priority classes first, then weighted fair share across projects by dominant-resource share.
///
/// A project's share is the largest, over GPU, CPU and memory, of its resource-time divided by the
/// cluster's capacity of that resource, divided by the project's weight: Dominant Resource Fairness
/// (Ghodsi et al., NSDI'11) measured in resource-seconds as Slurm's fair-share factor is. Its
/// resource-time is what ended allocations used (decayed by the control plane), plus what running
/// allocations used so far. Within a class the order is built by progressive filling: the project
/// with the smallest share gives its oldest job, which adds its expected use (resources × planned
/// run time, or `horizon` without one), and the next smallest share goes next (Kueue's fair
/// sharing orders admission the same way).
public struct FairSharePolicy: QueuePolicy {
    /// The run time charged for a job without an estimate or limit.
    public var horizon: Duration

    public init(horizon: Duration = .seconds(3600)) {
        self.horizon = horizon
    }

    public var name: String { "fair-share" }

    public func order(_ waiting: [Job], in state: ClusterState, now: Timestamp) -> [Job] {
        var capacity = (gpu: Int64(0), cpu: Int64(0), memory: Int64(0))
        for node in state.nodes where node.state != .down {
            capacity.gpu += Int64(node.gpus.count * 1000)
            capacity.cpu += Int64(node.cpuMillis)
            capacity.memory += Int64(node.memoryMiB)
        }
        var usage: [ProjectID: ResourceUsage] = state.projects.mapValues(\.usage)
        for allocation in state.allocations.values {
            let ran = now.milliseconds(since: allocation.startTime)
            usage[allocation.project, default: ResourceUsage()].add(milliGPUs: allocation.milliGPUs, cpuMillis: allocation.cpuMillis, memoryMiB: allocation.memoryMiB, milliseconds: ran)
        }
        func share(_ project: ProjectID) -> Int128 {
            let u = usage[project] ?? ResourceUsage()
            // Parts per 10^12 of capacity-milliseconds; the common time factor cancels out.
            func part(_ used: Int64, _ total: Int64) -> Int128 { total > 0 ? Int128(used) * 1_000_000_000_000 / Int128(total) : 0 }
            let dominant = max(part(u.milliGPUMilliseconds, capacity.gpu), part(u.cpuMilliMilliseconds, capacity.cpu), part(u.memoryMiBMilliseconds, capacity.memory))
            return dominant / Int128(state.weight(of: project))
        }

        var ordered: [Job] = []
        ordered.reserveCapacity(waiting.count)
        let byClass = Dictionary(grouping: waiting, by: \.priority.value)
        for classValue in byClass.keys.sorted(by: >) {
            var queues: [ProjectID: [Job]] = [:]
            for job in byClass[classValue]! { queues[job.project, default: []].append(job) }
            var next: [ProjectID: Int] = [:]
            var heap = Heap<ShareEntry>()
            for (project, jobs) in queues {
                queues[project] = jobs.sortedByKey { ($0.submitTime.millisecondsSinceEpoch, $0.id.rawValue, 0) }
                heap.insert(ShareEntry(share: share(project), project: project))
                next[project] = 0
            }
            while let entry = heap.popMin() {
                let jobs = queues[entry.project]!
                let position = next[entry.project]!
                let job = jobs[position]
                ordered.append(job)
                let runtime = (job.plannedRuntime ?? horizon).wholeMilliseconds
                for group in job.taskGroups {
                    usage[job.project, default: ResourceUsage()].add(
                        milliGPUs: group.milliGPUsPerTask * group.count, cpuMillis: group.resources.cpuMillis * group.count,
                        memoryMiB: group.resources.memoryMiB * group.count, milliseconds: runtime)
                }
                if position + 1 < jobs.count {
                    next[entry.project] = position + 1
                    heap.insert(ShareEntry(share: share(entry.project), project: entry.project))
                }
            }
        }
        return ordered
    }

    private struct ShareEntry: Comparable {
        var share: Int128
        var project: ProjectID
        static func < (a: ShareEntry, b: ShareEntry) -> Bool { (a.share, a.project) < (b.share, b.project) }
    }
}

/// Tiresias-style discretised two-dimensional least-attained-service (Gu et al., NSDI'19).
///
/// A job's attained service is its GPU time so far (GPUs × time run, over all its attempts, the
/// "two dimensions"). Queues are cut at `thresholds` (GPU-seconds): queue 0 holds jobs below the
/// first threshold and goes first. Inside a queue, jobs go in submit order (Tiresias' FIFO within
/// a queue, which keeps a job from bouncing). Running work of a job in a lower queue (more
/// attained service) may be preempted for a waiting job of a higher queue. Without estimates,
/// it favours short jobs the way SRTF would, which is why it needs no oracle. Left out: Tiresias'
/// starvation knob (promotion after a long wait).
public struct LeastAttainedServicePolicy: QueuePolicy {
    /// Queue boundaries in GPU-seconds, ascending.
    public var thresholdGPUSeconds: [Int64]

    public init(thresholdGPUSeconds: [Int64] = [3_600, 36_000]) {
        self.thresholdGPUSeconds = thresholdGPUSeconds
    }

    public var name: String { "las" }

    /// GPU time so far in milli-GPU × milliseconds, counting running allocations up to `now`.
    public func attainedService(of job: Job, in state: ClusterState, now: Timestamp) -> Int64 {
        var total = job.attainedMilliGPUMilliseconds
        for allocationID in job.liveAllocations.values {
            if let allocation = state.allocations[allocationID] {
                total += Int64(allocation.milliGPUs) * now.milliseconds(since: allocation.startTime)
            }
        }
        return total
    }

    public func queue(of job: Job, in state: ClusterState, now: Timestamp) -> Int {
        let attained = attainedService(of: job, in: state, now: now)
        // GPU-seconds × 1000 milli-GPU × 1000 ms = milli-GPU-milliseconds.
        return thresholdGPUSeconds.firstIndex { attained < $0 * 1_000_000 } ?? thresholdGPUSeconds.count
    }

    public func order(_ waiting: [Job], in state: ClusterState, now: Timestamp) -> [Job] {
        waiting.sortedByKey { (Int64(queue(of: $0, in: state, now: now)), $0.submitTime.millisecondsSinceEpoch, Int64(bitPattern: $0.id.rawValue)) }
    }

    /// Within a tier and class, a job of a higher queue (less attained service) outranks one of a lower queue.
    public func preemptionRank(of job: Job, in state: ClusterState, now: Timestamp) -> PreemptionRank {
        PreemptionRank(nonSpot: !job.spot, priority: job.priority.value, level: -queue(of: job, in: state, now: now))
    }
}

extension Array where Element == Job {
    /// Sorted by a key computed once per job; sorts small keys with indices, not whole jobs
    /// (a `Job` is large, and moving 100,000 of them dominated the ordering).
    func sortedByKey<A: Comparable, B: Comparable, C: Comparable>(_ key: (Job) -> (A, B, C)) -> [Job] {
        let keys = map(key)
        let order = indices.sorted { keys[$0] < keys[$1] }
        return order.map { self[$0] }
    }
}

/// Shortest remaining time first on the runtime *estimate*: remaining = estimate − time run so
/// far (over all attempts), with preemption of work that has more remaining.
///
/// Source: SRTF/SRPT (Schrage, 1968), the policy that minimises mean completion time on one server
/// when sizes are known. Given true durations as estimates it is the oracle reference line of the
/// simulator; given predicted ones, `overdue` says what a job that outlived its estimate has left:
/// `.zero` (trust the estimate: it is nearly done) or `.asLongAgain` (it will run about as long
/// again as it has run — the expectation under heavy-tailed run times, which DL traces have).
public struct ShortestRemainingTimePolicy: QueuePolicy {
    public enum Overdue: String, Sendable {
        case zero
        case asLongAgain
    }

    public var overdue: Overdue
    /// Preempt only for a job whose remaining time is in a lower power-of-two band (at least about
    /// half the victim's). With predicted remaining times that grow as a job runs past its
    /// estimate, exact comparison makes two jobs trade places at every crossing; bands bound the
    /// preemptions of a job to a logarithm of its run time (why Tiresias discretises its queues).
    public var bandedPreemption: Bool

    public init(overdue: Overdue = .zero, bandedPreemption: Bool = false) {
        self.overdue = overdue
        self.bandedPreemption = bandedPreemption
    }

    public var name: String { "srtf" }

    /// Wall time the job has run (all attempts, the running one up to `now`), in milliseconds.
    public static func elapsedMilliseconds(of job: Job, in state: ClusterState, now: Timestamp) -> Int64 {
        let width = Int64(max(1, job.milliGPUs))
        var attained = job.attainedMilliGPUMilliseconds
        for allocationID in job.liveAllocations.values {
            if let allocation = state.allocations[allocationID] {
                attained += Int64(allocation.milliGPUs) * now.milliseconds(since: allocation.startTime)
            }
        }
        // A job of zero GPUs is measured by its first task's run time.
        return job.milliGPUs > 0 ? attained / width : job.liveAllocations.values.compactMap { state.allocations[$0] }.map { now.milliseconds(since: $0.startTime) }.max() ?? 0
    }

    public func remainingMilliseconds(of job: Job, in state: ClusterState, now: Timestamp) -> Int64 {
        guard let estimate = job.runtimeEstimate?.wholeMilliseconds else { return .max / 2 }
        let elapsed = Self.elapsedMilliseconds(of: job, in: state, now: now)
        if elapsed < estimate { return estimate - elapsed }
        switch overdue {
        case .zero: return 0
        case .asLongAgain: return elapsed
        }
    }

    public func order(_ waiting: [Job], in state: ClusterState, now: Timestamp) -> [Job] {
        waiting.sortedByKey { (remainingMilliseconds(of: $0, in: state, now: now), $0.submitTime.millisecondsSinceEpoch, Int64(bitPattern: $0.id.rawValue)) }
    }

    /// Within a tier and class, less remaining time ranks higher (by band when banded).
    public func preemptionRank(of job: Job, in state: ClusterState, now: Timestamp) -> PreemptionRank {
        let remaining = remainingMilliseconds(of: job, in: state, now: now)
        let level = bandedPreemption ? Int64(64 - (max(1, remaining / 1000)).leadingZeroBitCount) : min(remaining, Int64(Int.max / 2))
        return PreemptionRank(nonSpot: !job.spot, priority: job.priority.value, level: -Int(level))
    }
}
