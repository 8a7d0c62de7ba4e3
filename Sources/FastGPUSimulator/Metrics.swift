/// The figures of one run, in seconds (floating point is fine for reports: nothing here is
/// capacity or money).
public struct SimulationMetrics: Codable, Sendable {
    public var policy: String
    public var oracle: Bool
    public var jobs: Int
    public var finished: Int
    public var neverPlaceable: Int
    public var averageJCT: Double
    public var medianJCT: Double
    public var p95JCT: Double
    public var p99JCT: Double
    public var averageQueueing: Double
    public var p99Queueing: Double
    public var makespan: Double
    /// Time-weighted allocated GPUs ÷ capacity over the makespan. The traces carry no utilisation
    /// samples, so utilisation equals allocation here.
    public var gpuAllocation: Double
    public var preemptions: Int
    public var schedulingPasses: Int
    /// Per project: mean of (completion time ÷ run time), 1 = never waited.
    public var projectSlowdown: [String: Double]
    /// Sorted completion times, for CDF charts (not in the table).
    public var completionTimes: [Double]
    /// How good the server's start estimates were (with `estimateEveryMilliseconds`).
    public var startEstimates: EstimateAccuracy?

    /// Each job's first estimated start against when it started, in seconds.
    public struct EstimateAccuracy: Codable, Sendable {
        /// Jobs a sampled pass saw waiting and could estimate.
        public var jobs: Int
        /// Jobs a sampled pass saw waiting but could not estimate.
        public var withoutEstimate: Int
        public var medianAbsoluteError: Double
        public var p90AbsoluteError: Double
        /// How long those jobs still waited after their estimate was made (the scale of the errors).
        public var medianWaitAfterEstimate: Double
        /// Estimates within a quarter of the wait left, or within 5 minutes.
        public var withinAQuarter: Double
    }

    public init(_ result: SimulationResult) {
        policy = result.policy
        oracle = result.oracle
        jobs = result.outcomes.count + result.neverPlaceable
        neverPlaceable = result.neverPlaceable
        let done = result.outcomes.filter { $0.finishMilliseconds != nil }
        finished = done.count
        let jct = done.compactMap(\.completionMilliseconds).map { Double($0) / 1000 }.sorted()
        let queue = result.outcomes.compactMap(\.queueingMilliseconds).map { Double($0) / 1000 }.sorted()
        averageJCT = Self.mean(jct)
        medianJCT = Self.percentile(jct, 0.5)
        p95JCT = Self.percentile(jct, 0.95)
        p99JCT = Self.percentile(jct, 0.99)
        averageQueueing = Self.mean(queue)
        p99Queueing = Self.percentile(queue, 0.99)
        let span = max(0, result.lastFinishMilliseconds - result.firstSubmitMilliseconds)
        makespan = Double(span) / 1000
        gpuAllocation = span > 0 && result.capacityMilliGPUs > 0
            ? Double(result.allocatedMilliGPUMilliseconds) / (Double(result.capacityMilliGPUs) * Double(span)) : 0
        preemptions = result.preemptions
        schedulingPasses = result.schedulingPasses
        var slowdowns: [String: [Double]] = [:]
        for outcome in done where outcome.durationMilliseconds > 0 {
            slowdowns[outcome.project, default: []].append(Double(outcome.completionMilliseconds!) / Double(outcome.durationMilliseconds))
        }
        projectSlowdown = slowdowns.mapValues(Self.mean)
        completionTimes = jct
        if !result.firstEstimates.isEmpty {
            var errors: [Double] = []
            var waits: [Double] = []
            var close = 0
            let starts = Dictionary(result.outcomes.map { ($0.id, $0.firstStartMilliseconds) }, uniquingKeysWith: { first, _ in first })
            for (index, estimate) in result.firstEstimates.enumerated() {
                guard let estimate, let started = starts[index + 1] ?? nil else { continue }
                let error = Double(abs(estimate.start - started)) / 1000
                let wait = Double(max(0, started - estimate.madeAt)) / 1000
                errors.append(error)
                waits.append(wait)
                if error <= max(300, wait / 4) { close += 1 }
            }
            errors.sort()
            waits.sort()
            startEstimates = EstimateAccuracy(jobs: errors.count, withoutEstimate: result.waitedUnestimated, medianAbsoluteError: Self.percentile(errors, 0.5),
                                              p90AbsoluteError: Self.percentile(errors, 0.9), medianWaitAfterEstimate: Self.percentile(waits, 0.5),
                                              withinAQuarter: errors.isEmpty ? 0 : Double(close) / Double(errors.count))
        }
    }

    static func mean(_ values: [Double]) -> Double { values.isEmpty ? 0 : values.reduce(0, +) / Double(values.count) }

    public static func percentileForTesting(_ sorted: [Double], _ p: Double) -> Double { percentile(sorted, p) }

    /// Nearest-rank percentile of sorted values.
    static func percentile(_ sorted: [Double], _ p: Double) -> Double {
        guard !sorted.isEmpty else { return 0 }
        let rank = Int((p * Double(sorted.count)).rounded(.up))
        return sorted[min(sorted.count - 1, max(0, rank - 1))]
    }
}
