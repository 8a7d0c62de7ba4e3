public import FastGPUModel

/// Predicts a job's run time from the run times of jobs that already finished: the median of the
/// most specific history that has enough samples — (project, user, GPUs), then (project, GPUs),
/// then (GPUs), then every job. Learned online: a job teaches the predictor only when it ends, so
/// the prediction for a job never depends on its own or any later job's duration.
///
/// The simulator and the control plane feed it alike (`LearnedRuntimes`).
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
        case projectUserGPUs(ProjectID, String, Int)
        case projectGPUs(ProjectID, Int)
        case gpus(Int)
        case all
    }

    public init(window: Int = 64, minimumSamples: Int = 3, defaultMilliseconds: Int64 = 3_600_000) {
        self.window = window
        self.minimumSamples = minimumSamples
        self.defaultMilliseconds = defaultMilliseconds
    }

    private static func keys(project: ProjectID, user: String, gpus: Int) -> [Key] {
        [.projectUserGPUs(project, user, gpus), .projectGPUs(project, gpus), .gpus(gpus), .all]
    }

    public func estimateMilliseconds(project: ProjectID, user: String, gpus: Int) -> Int64 {
        samples(project: project, user: user, gpus: gpus).map { $0[$0.count / 2] } ?? defaultMilliseconds
    }

    /// The run time of a job that has run `elapsed` milliseconds already: the median of the
    /// samples longer than that, or as long again as it has run when it outlived every sample
    /// (heavy-tailed run times: the longer a job has run, the longer it is likely to run).
    public func estimateMilliseconds(project: ProjectID, user: String, gpus: Int, ranFor elapsed: Int64) -> Int64 {
        guard elapsed > 0 else { return estimateMilliseconds(project: project, user: user, gpus: gpus) }
        guard let sorted = samples(project: project, user: user, gpus: gpus) else { return max(defaultMilliseconds, 2 * elapsed) }
        let longer = sorted.drop { $0 <= elapsed }
        return longer.isEmpty ? 2 * elapsed : longer[longer.startIndex + longer.count / 2]
    }

    /// The samples of the most specific history with enough of them, sorted; nil before any.
    private func samples(project: ProjectID, user: String, gpus: Int) -> [Int64]? {
        for key in Self.keys(project: project, user: user, gpus: gpus) {
            if let samples = history[key], samples.count >= (key == .all ? 1 : minimumSamples) { return samples.sorted() }
        }
        return nil
    }

    public mutating func learn(project: ProjectID, user: String, gpus: Int, milliseconds: Int64) {
        for key in Self.keys(project: project, user: user, gpus: gpus) {
            var samples = history[key, default: []]
            samples.append(milliseconds)
            if samples.count > window { samples.removeFirst(samples.count - window) }
            history[key] = samples
        }
    }
}
