public import FastGPUModel

/// Gittins-index scheduling (Gittins, 1979; on GPU time it is Tiresias' "2D-Gittins", Gu et al.,
/// NSDI'19): without knowing a job's size, run the job whose next stretch of service is most
/// likely to finish it per unit of service, given the distribution of service of similar jobs and
/// what this job has attained already. Service is run time by default (`Measure`).
///
/// For attained service a and the sorted samples s₁ ≤ … ≤ sₙ of the class that exceed a, the index
/// is max over k of  P(S ≤ sₖ | S > a) ÷ E[min(S, sₖ) − a | S > a]
///           = k ÷ (Σ_{j≤k} (sⱼ − a) + (n − k)(sₖ − a)).
/// A job past every sample gets the index of "as long again" (1 ÷ a) or of the longest sample
/// (`Table.Tail`). A waiting job claims a second index, with the victim's restart r added to its
/// stretch (`Table.claimIndices`), when it looks for work to preempt. It is the optimal
/// non-anticipating policy for mean response time on one server (Gittins); LAS is its special
/// case for decreasing-hazard distributions. Distributions come from outside (the control plane's
/// or simulator's history of finished jobs), per (project, submitter, GPUs), falling back to
/// (project, GPUs), (GPUs), then all — and to a coarser class for a job that outlived every
/// sample of its own tenfold; with none of them, `prior`.
public struct GittinsPolicy: QueuePolicy {
    public struct ClassKey: Hashable, Sendable {
        public var project: ProjectID?
        public var submitter: String?
        public var milliGPUs: Int?

        public init(project: ProjectID?, submitter: String? = nil, milliGPUs: Int?) {
            self.project = project
            self.submitter = submitter
            self.milliGPUs = milliGPUs
        }

        /// The classes of a job, most specific first.
        public static func chain(project: ProjectID, submitter: String, milliGPUs: Int) -> [ClassKey] {
            [ClassKey(project: project, submitter: submitter, milliGPUs: milliGPUs), ClassKey(project: project, milliGPUs: milliGPUs),
             ClassKey(project: nil, milliGPUs: milliGPUs), ClassKey(project: nil, milliGPUs: nil)]
        }
    }

    /// The index of a class as a step function of attained service, on power-of-two bands.
    public struct Table: Sendable {
        /// `indices[b]` holds for attained service in band b: b = 0 for under 1 s (of GPU time, or
        /// of run time scaled to it), b = k for [2^(k−1), 2^k) s, valued at the band's lower edge.
        public var indices: [Double]
        /// The same with a restart's cost added to every stretch of service: max over k of
        /// P(S ≤ sₖ | S > a) ÷ (E[min(S, sₖ) − a | S > a] + r). A waiting job claims this index when
        /// it looks for victims (see `GittinsPolicy.claimRank`).
        public var claimIndices: [Double]
        /// The longest sample, in milli-GPU × milliseconds (0 without samples).
        public var longest: Int64

        /// Builds the table from service samples in milli-GPU × milliseconds (a 1-GPU job's GPU
        /// time); `restartSeconds` is what a preemption costs its victim, in the samples' seconds.
        public init(samples: [Int64], restartSeconds: Double = 0, tail: Tail = .asLongAgain) {
            let sorted = samples.map { Double($0) / 1_000_000 }.sorted()  // GPU-seconds
            let attained = (0..<48).map { band in band == 0 ? 0 : Double(1 << (band - 1)) }
            longest = samples.max() ?? 0
            indices = attained.map { Self.index(attained: $0, sorted: sorted, restart: 0, tail: tail) }
            claimIndices = restartSeconds > 0 ? attained.map { Self.index(attained: $0, sorted: sorted, restart: restartSeconds, tail: tail) } : indices
        }

        /// What a job that has outrun every sample of its class is expected to have left.
        public enum Tail: String, Sendable {
            /// As long again as it has run (a Pareto-like tail): the older, the lower its index.
            case asLongAgain
            /// As long as the longest sample (a memoryless tail): all such jobs of a class rank
            /// the same, so they do not preempt each other.
            case flat
        }

        static func index(attained a: Double, sorted: [Double], restart r: Double, tail: Tail = .asLongAgain) -> Double {
            guard let first = sorted.firstIndex(where: { $0 > a }) else {
                switch tail {
                case .asLongAgain: return 1 / (max(1, a) + r)
                case .flat: return 1 / (max(1, sorted.last ?? a) + r)
                }
            }
            let n = Double(sorted.count - first)
            var best = 0.0
            var sum = 0.0
            for k in first..<sorted.count {
                sum += sorted[k] - a
                let taken = Double(k - first + 1)
                let denominator = sum + (n - taken) * (sorted[k] - a) + n * r
                if denominator > 0 { best = max(best, taken / denominator) }
            }
            return best
        }

        static func band(attainedMilliGPUMilliseconds attained: Int64, count: Int) -> Int {
            let seconds = attained / 1_000_000
            let band = seconds <= 0 ? 0 : 64 - seconds.leadingZeroBitCount
            return min(band, count - 1)
        }

        public func index(attainedMilliGPUMilliseconds attained: Int64) -> Double {
            indices[Self.band(attainedMilliGPUMilliseconds: attained, count: indices.count)]
        }

        public func claimIndex(attainedMilliGPUMilliseconds attained: Int64) -> Double {
            claimIndices[Self.band(attainedMilliGPUMilliseconds: attained, count: claimIndices.count)]
        }
    }

    /// What service is measured in; the tables' samples must be in the same measure.
    public enum Measure: String, Sendable {
        /// GPU time (milli-GPU × ms): Tiresias' 2D view; favours narrow jobs.
        case gpuTime
        /// Wall time run (ms, scaled to the tables' unit): favours short jobs whatever their width,
        /// which is what mean completion time rewards.
        case time
    }

    public var tables: [ClassKey: Table]
    public var measure: Measure
    /// Preempt only when the claim's completion rate exceeds the sum of the victims' (each index
    /// is a rate: completions per second of service). Without it, a wide job displaces many
    /// narrow ones whenever it out-ranks each of them alone.
    public var weighsVictims: Bool

    /// What a job of a class with no history at all is ranked by (nothing has finished yet): the
    /// table of no samples, where a job's index is 1 ÷ (what it has run) — least attained service,
    /// the Gittins policy of a decreasing-hazard prior — with the restart in its claim.
    ///
    /// Ranking every job alike instead (the queue in submit order, nothing preempted "on guesses")
    /// was the collapse of issue 20: the Philly window at 1.2–1.8 M s opens the trace, nothing has
    /// finished before it, and for 400,000 s days-long jobs held every GPU while 1,188 jobs of a
    /// median 211 s queued behind them (7.7 × srtf-oracle; las 1.02 ×).
    public var prior: Table

    public init(tables: [ClassKey: Table], measure: Measure = .time, weighsVictims: Bool = false, prior: Table = Table(samples: [])) {
        self.tables = tables
        self.measure = measure
        self.weighsVictims = weighsVictims
        self.prior = prior
    }

    public var name: String { "gittins" }

    public func index(of job: Job, in state: ClusterState, now: Timestamp) -> Double {
        lookUp(job, in: state, now: now) { $0.index(attainedMilliGPUMilliseconds: $1) }
    }

    /// The index a waiting job claims against running work: its stretch must pay for the restart
    /// it causes (see `Table.claimIndices`).
    public func claimIndex(of job: Job, in state: ClusterState, now: Timestamp) -> Double {
        lookUp(job, in: state, now: now) { $0.claimIndex(attainedMilliGPUMilliseconds: $1) }
    }

    private func lookUp(_ job: Job, in state: ClusterState, now: Timestamp, _ read: (Table, Int64) -> Double) -> Double {
        let attained: Int64 = switch measure {
        case .gpuTime: LeastAttainedServicePolicy().attainedService(of: job, in: state, now: now)
        // Wall milliseconds × 1000, so that both measures share the tables' unit (a 1-GPU job's GPU time).
        case .time: ShortestRemainingTimePolicy.elapsedMilliseconds(of: job, in: state, now: now) * 1000
        }
        // The most specific class whose runs this job has not outlived tenfold. One that ran ten
        // times longer than every sample of its class is evidence that the class does not
        // describe it, so a coarser one ranks it: else three quick jobs of one person would make
        // that person's next week-long job rank as if nearly done, under the flat tail, for its
        // whole run. (Falling back as soon as a job passes the longest sample cost the robustness
        // figure more: jobs that outlive their class by a little are common.)
        var found: Table?
        for key in ClassKey.chain(project: job.project, submitter: job.submitter, milliGPUs: job.milliGPUs) {
            guard let table = tables[key] else { continue }
            found = table
            if attained / 10 < table.longest { break }
        }
        return read(found ?? prior, attained)
    }

    public func order(_ waiting: [Job], in state: ClusterState, now: Timestamp) -> [Job] {
        // Higher index first; the index is a ratio, so it is sorted on its negation.
        waiting.sortedByKey { (-index(of: $0, in: state, now: now), $0.submitTime.millisecondsSinceEpoch, Int64(bitPattern: $0.id.rawValue)) }
    }

    /// Within a tier and class, a job preempts only work whose index is in a lower half-octave
    /// band (about 70 % or less of its own), so two jobs do not trade places at every crossing.
    public func preemptionRank(of job: Job, in state: ClusterState, now: Timestamp) -> PreemptionRank {
        PreemptionRank(nonSpot: !job.spot, priority: job.priority.value, level: Self.band(index(of: job, in: state, now: now)))
    }

    /// A waiting job claims its restart-adjusted index: it displaces running work only when running
    /// its next stretch first, restart included, lowers the expected sum of completion times.
    public func claimRank(of job: Job, in state: ClusterState, now: Timestamp) -> PreemptionRank {
        PreemptionRank(nonSpot: !job.spot, priority: job.priority.value, level: Self.band(claimIndex(of: job, in: state, now: now)))
    }

    public func preemptionPays(victims: [Job], for job: Job, in state: ClusterState, now: Timestamp) -> Bool {
        guard weighsVictims, victims.count > 1 else { return true }
        let lost = victims.reduce(0.0) { $0 + index(of: $1, in: state, now: now) }
        return claimIndex(of: job, in: state, now: now) > lost
    }

    /// Half-octave bands, ⌊2 log₂(index)⌋, from the binary exponent and significand.
    static func band(_ value: Double) -> Int {
        value > 0 ? 2 * Int(value.exponent) + (value.significand >= 1.414_213_562_373_095 ? 1 : 0) : Int.min / 2
    }
}
