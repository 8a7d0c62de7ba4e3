public import FastGPUModel

/// Synthetic clusters and job mixes shaped like real ones, from a seeded generator: the input of
/// `fastgpu plan`, the scheduling benchmark and, later, the simulator's synthetic runs.
public enum Workloads {
    /// GPUs per job in the Philly trace as shipped by the Pollux artifact (82,247 jobs,
    /// `../shared/traces/philly-pollux/SOURCE.md`): 1: 76,627 · 2: 1,818 · 4: 1,870 · 8: 1,643 ·
    /// 12: 7 · 16: 199 · 24: 7 · 32: 67 · 64: 6 · 128: 3.
    public static let phillyGPUCounts: [(gpus: Int, jobs: Int)] = [
        (1, 76_627), (2, 1_818), (4, 1_870), (8, 1_643), (12, 7), (16, 199), (24, 7), (32, 67), (64, 6), (128, 3),
    ]

    /// `count` jobs whose GPU counts follow the Philly distribution. Jobs of more than
    /// `gpusPerNode` GPUs become gangs of tasks of at most `gpusPerNode` GPUs (12 → 2 × 6),
    /// as a distributed training job is launched. Submit times are one second apart; estimates are
    /// drawn from 1 minute to 10 hours.
    public static func philly(count: Int, gpusPerNode: Int = 8, projects: Int = 8, firstID: UInt64 = 1, using rng: inout some RandomNumberGenerator) -> [Job] {
        let total = phillyGPUCounts.reduce(0) { $0 + $1.jobs }
        return (0..<count).map { i in
            var pick = Int.random(in: 0..<total, using: &rng)
            var gpus = 1
            for (g, n) in phillyGPUCounts {
                if pick < n { gpus = g; break }
                pick -= n
            }
            let tasks = (gpus + gpusPerNode - 1) / gpusPerNode
            let perTask = gpus / tasks
            let resources = TaskResources(gpu: .whole(count: perTask), cpuMillis: perTask * 4000, memoryMiB: perTask * 32 * 1024)
            return Job(
                id: JobID(firstID + UInt64(i)), project: ProjectID(UInt64(1 + i % projects)),
                taskGroups: [TaskGroup(count: tasks, resources: resources, gang: tasks > 1)],
                runtimeEstimate: .seconds(Int64.random(in: 60...36_000, using: &rng)), submitTime: .seconds(Int64(i)))
        }
    }

    /// `count` nodes of `gpus` GPUs (80 GiB each), two NVLink islands each, sized like a DGX (CPU
    /// and memory ample for the Philly mix above).
    public static func uniformCluster(nodes count: Int, gpus: Int = 8, model: String = "H100-80GB") -> [Node] {
        (0..<count).map { i in
            let id = NodeID(UInt64(i + 1))
            let devices = (0..<gpus).map { g in
                GPU(index: g, uuid: "GPU-\(id.rawValue)-\(g)", model: model, memoryMiB: 80 * 1024, island: g < (gpus + 1) / 2 ? 0 : 1)
            }
            return Node(id: id, name: "node-\(id.rawValue)", gpus: devices, cpuMillis: gpus * 16_000, memoryMiB: gpus * 256 * 1024)
        }
    }

}
