public import FastGPUModel

/// GPU time of finished jobs per class — (project, submitter, GPUs), (project, GPUs), (GPUs), all — as Gittins tables,
/// rebuilt only for the classes that learned something since they were last asked for.
/// A sliding window of recent samples per class follows a drifting workload.
public struct ServiceDistributions: Sendable {
    public var window: Int
    public var minimumSamples: Int
    /// What a preemption costs its victim, in the samples' seconds (for the tables' claim indices).
    public var restartSeconds: Double = 0
    public var tail: GittinsPolicy.Table.Tail = .asLongAgain
    private var samples: [GittinsPolicy.ClassKey: [Int64]] = [:]
    private var cached: [GittinsPolicy.ClassKey: GittinsPolicy.Table] = [:]
    private var dirty: Set<GittinsPolicy.ClassKey> = []

    public init(window: Int = 64, minimumSamples: Int = 3) {
        self.window = window
        self.minimumSamples = minimumSamples
    }

    public mutating func learn(project: ProjectID, submitter: String, milliGPUs: Int, milliGPUMilliseconds: Int64) {
        for key in GittinsPolicy.ClassKey.chain(project: project, submitter: submitter, milliGPUs: milliGPUs) {
            var list = samples[key, default: []]
            list.append(milliGPUMilliseconds)
            if list.count > window { list.removeFirst(list.count - window) }
            samples[key] = list
            dirty.insert(key)
        }
    }

    /// The tables as the last `tables()` left them.
    public var builtTables: [GittinsPolicy.ClassKey: GittinsPolicy.Table] { cached }

    /// Tables for every class with enough samples (the all-jobs class needs one).
    public mutating func tables() -> [GittinsPolicy.ClassKey: GittinsPolicy.Table] {
        for key in dirty {
            let list = samples[key] ?? []
            let needed = key.project == nil && key.milliGPUs == nil ? 1 : minimumSamples
            cached[key] = list.count >= needed ? GittinsPolicy.Table(samples: list, restartSeconds: restartSeconds, tail: tail) : nil
        }
        dirty.removeAll(keepingCapacity: true)
        return cached
    }
}
