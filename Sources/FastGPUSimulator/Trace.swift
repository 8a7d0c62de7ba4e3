public import FastGPUModel

/// One job of a trace, as the trace says it happened. `durationMilliseconds` is the truth the
/// engine replays; only oracle policies may see it (`Simulation` hands everyone else an estimate).
public struct TraceJob: Hashable, Sendable {
    /// 1-based position in the trace after sorting by submit time: the simulated job id.
    public var id: Int
    public var name: String
    /// Milliseconds since the trace's start.
    public var submitMilliseconds: Int64
    public var durationMilliseconds: Int64
    /// GPUs in all (whole GPUs), or 1 for a share.
    public var gpus: Int
    /// Per-GPU share for a single-GPU job: 1000 = a whole GPU (Alibaba's `gpu_milli`).
    public var gpuMilli: Int
    /// Nodes the trace says the job used, when it says.
    public var nodes: Int?
    public var project: String
    public var user: String
    public var priority: Int
    public var cpuMillis: Int
    public var memoryMiB: Int
    /// Allowed GPU models (`V100M16|V100M32`); empty accepts any.
    public var gpuModels: [String]

    public init(id: Int, name: String, submitMilliseconds: Int64, durationMilliseconds: Int64, gpus: Int, gpuMilli: Int = 1000,
                nodes: Int? = nil, project: String = "default", user: String = "", priority: Int = PriorityClass.normal.value,
                cpuMillis: Int = 0, memoryMiB: Int = 0, gpuModels: [String] = []) {
        self.id = id
        self.name = name
        self.submitMilliseconds = submitMilliseconds
        self.durationMilliseconds = durationMilliseconds
        self.gpus = gpus
        self.gpuMilli = gpuMilli
        self.nodes = nodes
        self.project = project
        self.user = user
        self.priority = priority
        self.cpuMillis = cpuMillis
        self.memoryMiB = memoryMiB
        self.gpuModels = gpuModels
    }

    /// GPU demand in milli-GPUs.
    public var milliGPUs: Int { gpus == 1 ? gpuMilli : gpus * 1000 }

    /// The job's task group on nodes of `gpusPerNode` GPUs: one task when it fits on a node, else
    /// a gang of equal tasks (the trace's node count when it gives one: 12 GPUs → 2 × 6).
    public func taskGroup(gpusPerNode: Int) -> TaskGroup {
        let model = gpuModels.isEmpty ? nil : gpuModels.joined(separator: "|")
        if gpus == 0 {
            return TaskGroup(resources: TaskResources(gpu: .none, cpuMillis: cpuMillis, memoryMiB: memoryMiB))
        }
        if gpus == 1 && gpuMilli < 1000 {
            return TaskGroup(resources: TaskResources(gpu: .share(milli: gpuMilli, memoryMiB: 0), gpuModel: model, cpuMillis: cpuMillis, memoryMiB: memoryMiB))
        }
        var tasks = max(nodes ?? 1, (gpus + gpusPerNode - 1) / gpusPerNode)
        while gpus % tasks != 0 { tasks += 1 }
        let resources = TaskResources(gpu: .whole(count: gpus / tasks), gpuModel: model, cpuMillis: cpuMillis / tasks, memoryMiB: memoryMiB / tasks)
        return TaskGroup(count: tasks, resources: resources, gang: tasks > 1)
    }
}

/// A trace: its jobs in submit order, and the cluster it implies when it gives one.
public struct Trace: Sendable {
    public var name: String
    public var jobs: [TraceJob]
    /// Nodes the trace comes with (Alibaba's node list), or empty.
    public var nodes: [Node]

    public init(name: String, jobs: [TraceJob], nodes: [Node] = []) {
        self.name = name
        self.jobs = jobs
        self.nodes = nodes
    }

    /// Jobs submitted in `[from, to)` (seconds since the trace start), re-based to start at 0.
    public func window(fromSeconds: Int64?, toSeconds: Int64?) -> Trace {
        let from = (fromSeconds ?? 0) * 1000
        let to = toSeconds.map { $0 * 1000 } ?? .max
        var kept = jobs.filter { $0.submitMilliseconds >= from && $0.submitMilliseconds < to }
        let base = kept.first?.submitMilliseconds ?? 0
        for i in kept.indices {
            kept[i].submitMilliseconds -= base
            kept[i].id = i + 1
        }
        return Trace(name: name, jobs: kept, nodes: nodes)
    }

    /// Jobs that were submitted and had finished before `seconds` into the trace: the past a
    /// window starting there may learn from.
    public func finished(beforeSeconds seconds: Int64) -> [TraceJob] {
        jobs.filter { $0.submitMilliseconds + $0.durationMilliseconds <= seconds * 1000 }
    }

    /// Sorts by submit time (stable on the input order) and numbers the jobs 1…n.
    static func ordered(_ jobs: [TraceJob]) -> [TraceJob] {
        var sorted = jobs.enumerated().sorted { ($0.element.submitMilliseconds, $0.offset) < ($1.element.submitMilliseconds, $1.offset) }.map(\.element)
        for i in sorted.indices { sorted[i].id = i + 1 }
        return sorted
    }
}
