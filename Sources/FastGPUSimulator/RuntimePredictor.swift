/// Predicts a job's run time from the run times of jobs that already finished: the median of the
/// most specific history that has enough samples — (project, user, GPUs), then (project, GPUs),
/// then (GPUs), then every job. Learned online: a job teaches the predictor only when it ends, so
/// the prediction for a job never depends on its own or any later job's duration.
///
/// Source: the idea of Helios' QSSF service (Hu et al., SC'21), which predicts a job's GPU time from
/// the history of similar jobs of the same user and VC; here with a median rather than their GBDT.
public struct HistoryPredictor: Sendable {
    /// The most recent run times kept per key (a sliding window follows drifting workloads).
    public var window: Int
    /// Samples a key needs before it is trusted over a coarser one.
    public var minimumSamples: Int
    /// Used before anything has finished.
    public var defaultMilliseconds: Int64

    private var history: [Key: [Int64]] = [:]

    private enum Key: Hashable {
        case projectUserGPUs(String, String, Int)
        case projectGPUs(String, Int)
        case gpus(Int)
        case all
    }

    public init(window: Int = 64, minimumSamples: Int = 3, defaultMilliseconds: Int64 = 3_600_000) {
        self.window = window
        self.minimumSamples = minimumSamples
        self.defaultMilliseconds = defaultMilliseconds
    }

    private static func keys(project: String, user: String, gpus: Int) -> [Key] {
        [.projectUserGPUs(project, user, gpus), .projectGPUs(project, gpus), .gpus(gpus), .all]
    }

    public func estimateMilliseconds(project: String, user: String, gpus: Int) -> Int64 {
        for key in Self.keys(project: project, user: user, gpus: gpus) {
            if let samples = history[key], samples.count >= (key == .all ? 1 : minimumSamples) {
                let sorted = samples.sorted()
                return sorted[sorted.count / 2]
            }
        }
        return defaultMilliseconds
    }

    public mutating func learn(project: String, user: String, gpus: Int, milliseconds: Int64) {
        for key in Self.keys(project: project, user: user, gpus: gpus) {
            var samples = history[key, default: []]
            samples.append(milliseconds)
            if samples.count > window { samples.removeFirst(samples.count - window) }
            history[key] = samples
        }
    }
}
