import FastGPUModel
import FastGPUScheduler
import FastGPUSimulator
import Testing

/// The default policy must never be a disaster: the shapes that made it one, small.
@Suite struct RobustnessTests {
    /// The collapse of issue 20 in miniature. Philly's window at 1.2–1.8 M s opens the trace: nothing
    /// has finished before it, days-long jobs fill the cluster, then a burst of short 1-GPU jobs
    /// comes. Here: two nodes of 8 GPUs filled by an 8-GPU, a 4-GPU and four 1-GPU jobs of
    /// 200,000 s; from t = 1,000 s, forty 1-GPU jobs of 200 s, one every 30 s.
    static let collapse: Trace = {
        var rows = ["submit_s,gpus,duration_s", "0,8,200000", "10,4,200000"]
        rows += (0..<4).map { "\(20 + $0),1,200000" }
        rows += (0..<40).map { "\(1000 + 30 * $0),1,200" }
        return try! TraceReader.parse(rows.joined(separator: "\n") + "\n", format: .csv, file: "collapse.csv")  // swiftlint:disable:this force_try
    }()

    static func averageJCT(_ policy: String, _ trace: Trace) -> Double {
        SimulationMetrics(Simulation(trace: trace, policy: SchedulingPolicy.named(policy)!, options: .uniform(nodes: 2, gpusPerNode: 8, gpuModel: "V100-32GB")).run()).averageJCT
    }

    @Test func shortJobsAfterLongOnesOnAColdClusterDoNotWaitForThem() throws {
        let oracle = Self.averageJCT("srtf-oracle", Self.collapse)
        let las = Self.averageJCT("las", Self.collapse)
        let result = Simulation(trace: Self.collapse, policy: SchedulingPolicy.named("fastgpu")!, options: .uniform(nodes: 2, gpusPerNode: 8, gpuModel: "V100-32GB")).run()
        let fastgpu = SimulationMetrics(result).averageJCT
        // Before the fix every job ranked alike without history, which is FIFO without
        // preemption: the short jobs waited about 200,000 s for the long ones, 7.5 × the oracle's
        // average (fastgpu 1.16 ×, las 1.16 × after it).
        #expect(fastgpu <= 1.5 * oracle, "fastgpu \(fastgpu) s, srtf-oracle \(oracle) s")
        #expect(fastgpu <= 1.1 * las, "fastgpu \(fastgpu) s, las \(las) s")
        let shortWaits = result.outcomes.filter { $0.durationMilliseconds == 200_000 }.compactMap(\.queueingMilliseconds)
        #expect(shortWaits.count == 40)
        // No short job waits longer than the grace of the work it displaces (8 restarts of 30 s).
        #expect(shortWaits.max()! <= 240_000, "\(shortWaits)")
    }
}
