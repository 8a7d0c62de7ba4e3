import Foundation

/// Readings for simulated GPUs (`--simulate-gpus`), which have no driver to read: plausible
/// values that move with what runs on them, so that dashboards, alerts and the idle-GPU
/// detection work on a machine without GPUs. Every reading carries `simulated`, and `/metrics`
/// labels it so.
///
/// A GPU's utilisation is the CPU time its workload used since the last reading, in cores (one
/// busy core: 100 %), capped at 100 %: a job that computes shows busy GPUs, a job that sleeps
/// shows idle ones — what an idle allocated GPU looks like on a real node.
extension Agent {
    func simulateReadings() {
        guard gpus.contains(where: \.simulated) else { return }
        let now = ContinuousClock.now
        let elapsed = lastSimulated.map { (now - $0).seconds } ?? 0
        lastSimulated = now
        var busy: [Int: Double] = [:]
        var held: Set<Int> = []
        var fresh: [UInt64: UInt64] = [:]
        for workload in state?.workloads.values ?? [:].values {
            let ticks = WorkloadProcesses.cpuTicks(group: workload.pid, cgroups: workload.cgroups ?? [])
            fresh[workload.allocation] = ticks
            guard let indices = workload.gpus else { continue }
            held.formUnion(indices)
            guard elapsed > 0, let before = simulatedLoad[workload.allocation], ticks >= before else { continue }
            let cores = Double(ticks - before) / Double(WorkloadProcesses.ticksPerSecond) / elapsed
            for index in indices { busy[index, default: 0] = min(1, busy[index, default: 0] + cores) }
        }
        simulatedLoad = fresh
        gpus = gpus.map { gpu in
            guard gpu.simulated else { return gpu }
            var gpu = gpu
            let load = busy[gpu.index] ?? 0
            let isHeld = held.contains(gpu.index)
            let maxWatts: Double = gpu.model.hasPrefix("H1") || gpu.model.hasPrefix("H2") || gpu.model.hasPrefix("B") ? 700 : gpu.model.hasPrefix("A100") ? 400 : 300
            let watts = (60 + load * (maxWatts - 60) + Double(gpu.index % 3)).rounded()
            gpu.utilizationPercent = Int((load * 100).rounded())
            gpu.memoryUsedMiB = isHeld ? 512 + Int(load * Double(gpu.memoryMiB) * 0.6) : 0
            gpu.powerWatts = watts
            gpu.temperatureCelsius = 30 + Int((load * 45).rounded()) + gpu.index % 4
            simulatedEnergy[gpu.index, default: 0] += watts * elapsed * 1000
            gpu.energyMillijoules = Int64(simulatedEnergy[gpu.index] ?? 0)
            gpu.eccCorrected = 0
            gpu.eccUncorrected = 0
            return gpu
        }
    }
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}

extension WorkloadProcesses {
    static let ticksPerSecond = max(1, sysconf(Int32(_SC_CLK_TCK)))

    /// CPU time (user and system, in clock ticks) of the workload's live processes.
    static func cpuTicks(group: Int32, cgroups: [String]) -> UInt64 {
        members(group: group, cgroups: cgroups).reduce(0) { $0 + (Stat(pid: $1)?.cpuTicks ?? 0) }
    }
}
