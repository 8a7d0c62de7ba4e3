public import FastGPUModel

/// Fluent builder for nodes in tests: `Node.make(3).gpus(8, model: "H100-80GB").islands(2).build()`.
public struct NodeBuilder: Sendable {
    var id: NodeID
    var gpus: [GPU] = []
    var cpuMillis = 64_000
    var memoryMiB = 512 * 1024
    var labels: [String: String] = [:]
    var state: NodeState = .ready
    var crossProject = false

    /// Adds `count` GPUs of a model (memory from the model's name, `H100-80GB` → 80 GiB).
    public func gpus(_ count: Int, model: String = "H100-80GB", memoryMiB: Int? = nil) -> NodeBuilder {
        var copy = self
        for _ in 0..<count {
            copy.gpus.append(GPU(index: copy.gpus.count, uuid: "GPU-\(id.rawValue)-\(copy.gpus.count)", model: model,
                                 memoryMiB: memoryMiB ?? Self.memory(of: model)))
        }
        return copy
    }

    /// Adds `count` GPUs in MIG mode.
    public func migGPUs(_ count: Int, model: String = "A100-40GB") -> NodeBuilder {
        var copy = self
        for _ in 0..<count {
            copy.gpus.append(GPU(index: copy.gpus.count, uuid: "GPU-\(id.rawValue)-\(copy.gpus.count)", model: model,
                                 memoryMiB: Self.memory(of: model), migEnabled: true))
        }
        return copy
    }

    /// Splits the GPUs into `count` NVLink islands of equal size, in index order.
    public func islands(_ count: Int) -> NodeBuilder {
        var copy = self
        let size = max(1, (gpus.count + count - 1) / count)
        for i in copy.gpus.indices { copy.gpus[i].island = i / size }
        return copy
    }

    public func cpu(millis: Int) -> NodeBuilder { var c = self; c.cpuMillis = millis; return c }
    public func memory(mib: Int) -> NodeBuilder { var c = self; c.memoryMiB = mib; return c }
    public func label(_ key: String, _ value: String) -> NodeBuilder { var c = self; c.labels[key] = value; return c }
    public func state(_ state: NodeState) -> NodeBuilder { var c = self; c.state = state; return c }
    public func crossProjectSharing() -> NodeBuilder { var c = self; c.crossProject = true; return c }
    public func unhealthy(gpu index: Int) -> NodeBuilder {
        var c = self
        c.gpus[index].health = .unhealthy(reason: "XID 79")
        return c
    }

    public func build() -> Node {
        Node(id: id, name: "node-\(id.rawValue)", gpus: gpus, cpuMillis: cpuMillis, memoryMiB: memoryMiB, labels: labels,
             state: state, allowsCrossProjectSharing: crossProject)
    }

    static func memory(of model: String) -> Int {
        // "H100-80GB" → 80 GiB; models without a size get 16 GiB.
        let digits = model.split(separator: "-").last.map { $0.uppercased().hasSuffix("GB") ? String($0.dropLast(2)) : "" } ?? ""
        return (Int(digits) ?? 16) * 1024
    }
}

extension Node {
    public static func make(_ id: UInt64 = 1) -> NodeBuilder { NodeBuilder(id: NodeID(id)) }
}

/// Fluent builder for jobs in tests: `Job.make(7).gpus(2, model: "H100").estimate(600).build()`.
public struct JobBuilder: Sendable {
    var id: JobID
    var project = ProjectID(1)
    var priority = PriorityClass.normal
    var spot = false
    var groups: [TaskGroup] = []
    var resources = TaskResources(cpuMillis: 1000, memoryMiB: 4096)
    var count = 1
    var gang = false
    var placement = PlacementPreference.pack
    var estimate: Duration?
    var limit: Duration?
    var submit = Timestamp.zero
    var submitter = ""

    public func project(_ id: UInt64) -> JobBuilder { var c = self; c.project = ProjectID(id); return c }
    public func submitter(_ subject: String) -> JobBuilder { var c = self; c.submitter = subject; return c }
    public func priority(_ p: PriorityClass) -> JobBuilder { var c = self; c.priority = p; return c }
    public func spot(_ flag: Bool = true) -> JobBuilder { var c = self; c.spot = flag; return c }
    public func gpus(_ count: Int, model: String? = nil, minMemoryMiB: Int? = nil) -> JobBuilder {
        var c = self; c.resources.gpu = .whole(count: count); c.resources.gpuModel = model; c.resources.minGPUMemoryMiB = minMemoryMiB; return c
    }
    public func share(milli: Int, memoryMiB: Int = 0, model: String? = nil) -> JobBuilder {
        var c = self; c.resources.gpu = .share(milli: milli, memoryMiB: memoryMiB); c.resources.gpuModel = model; return c
    }
    public func mig(_ profile: String, model: String? = nil) -> JobBuilder {
        var c = self; c.resources.gpu = .mig(profile: profile); c.resources.gpuModel = model; return c
    }
    public func noGPU() -> JobBuilder { var c = self; c.resources.gpu = .none; return c }
    public func cpu(millis: Int) -> JobBuilder { var c = self; c.resources.cpuMillis = millis; return c }
    public func memory(mib: Int) -> JobBuilder { var c = self; c.resources.memoryMiB = mib; return c }
    public func selector(_ key: String, _ value: String) -> JobBuilder { var c = self; c.resources.nodeSelector[key] = value; return c }
    /// `count` tasks in the group; `gang` makes them start all together or not at all.
    public func tasks(_ count: Int, gang: Bool = false) -> JobBuilder { var c = self; c.count = count; c.gang = gang; return c }
    public func spread() -> JobBuilder { var c = self; c.placement = .spread; return c }
    public func estimate(seconds: Int64) -> JobBuilder { var c = self; c.estimate = .seconds(seconds); return c }
    public func limit(seconds: Int64) -> JobBuilder { var c = self; c.limit = .seconds(seconds); return c }
    public func submitted(atSecond second: Int64) -> JobBuilder { var c = self; c.submit = .seconds(second); return c }
    /// Closes the current group and starts another one.
    public func thenGroup() -> JobBuilder {
        var c = self
        c.groups.append(TaskGroup(name: "group\(groups.count)", count: count, resources: resources, gang: gang, placement: placement))
        c.resources = TaskResources(cpuMillis: 1000, memoryMiB: 4096)
        c.count = 1
        c.gang = false
        c.placement = .pack
        return c
    }

    public func build() -> Job {
        let groups = self.groups + [TaskGroup(name: "group\(self.groups.count)", count: count, resources: resources, gang: gang, placement: placement)]
        return Job(id: id, project: project, submitter: submitter, priority: priority, spot: spot, taskGroups: groups,
                   runtimeEstimate: estimate, runtimeLimit: limit, submitTime: submit)
    }
}

extension Job {
    public static func make(_ id: UInt64 = 1) -> JobBuilder { JobBuilder(id: JobID(id)) }
}

extension ClusterState {
    /// A state holding these nodes and submitted jobs. Traps on invalid test input.
    public static func make(nodes: [Node], jobs: [Job] = []) -> ClusterState {
        var state = ClusterState()
        do {
            for node in nodes { try state.apply(.registerNode(node)) }
            for job in jobs { try state.apply(.submit(job)) }
        } catch {
            // Test fixtures are written by hand; an invalid one is a bug in the test.
            preconditionFailure("invalid test cluster: \(error)")
        }
        return state
    }
}
