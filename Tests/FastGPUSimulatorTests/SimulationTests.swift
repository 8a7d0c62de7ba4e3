import FastGPUModel
import FastGPUScheduler
import FastGPUSimulator
import Testing

/// Golden runs on tiny hand-made traces: every figure below is worked out by hand in the comments.
@Suite struct SimulationTests {
    /// One node of 4 GPUs. A: t=0, 4 GPUs, 100 s. B: t=10, 2 GPUs, 50 s. C: t=20, 1 GPU, 10 s.
    static let trace = try! TraceReader.parse("submit_s,gpus,duration_s\n0,4,100\n10,2,50\n20,1,10\n", format: .csv, file: "golden.csv")  // swiftlint:disable:this force_try

    static func run(_ policy: String, trace: Trace = trace, nodes: Int = 1, gpus: Int = 4) -> SimulationResult {
        Simulation(trace: trace, policy: SchedulingPolicy.named(policy)!, options: .uniform(nodes: nodes, gpusPerNode: gpus, gpuModel: "H100-80GB")).run()
    }

    static func starts(_ result: SimulationResult) -> [Int64?] { result.outcomes.map { $0.firstStartMilliseconds.map { $0 / 1000 } } }
    static func finishes(_ result: SimulationResult) -> [Int64?] { result.outcomes.map { $0.finishMilliseconds.map { $0 / 1000 } } }

    @Test func theDefaultPolicyTakesParametersForExperiments() throws {
        let policy = try #require(SchedulingPolicy.named("fastgpu:grace=4:measure=gpu"))
        #expect(policy.name == "fastgpu:grace=4:measure=gpu")
        #expect(policy.graceInRestartPenalties == 4)
        #expect((policy.configuration.policy as? GittinsPolicy)?.measure == .gpuTime)
        #expect(SchedulingPolicy.named("fastgpu")?.graceInRestartPenalties == 8)
        // The default claims with two restarts and ranks jobs past every sample flat.
        #expect(SchedulingPolicy.named("fastgpu")?.claimInRestartPenalties == 2)
        #expect(SchedulingPolicy.named("fastgpu")?.tail == .flat)
        let varied = try #require(SchedulingPolicy.named("fastgpu:claim=0:tail=asLongAgain:window=16:weigh=true"))
        #expect(varied.claimInRestartPenalties == 0 && varied.tail == .asLongAgain && varied.window == 16)
        #expect((varied.configuration.policy as? GittinsPolicy)?.weighsVictims == true)
        for bad in ["fastgpu:grace", "fastgpu:grace=-1", "fastgpu:measure=wall", "fastgpu:speed=2", "fifo:grace=2",
                    "fastgpu:claim=x", "fastgpu:tail=long", "fastgpu:window=0", "fastgpu:weigh=yes"] {
            #expect(SchedulingPolicy.named(bad) == nil, "\(bad)")
        }
    }

    @Test func fifoRunsInOrderAndPacksWhatFits() {
        // A runs 0–100. At 100 B (2 GPUs) and C (1 GPU) both fit: B 100–150, C 100–110.
        let result = Self.run("fifo")
        #expect(Self.starts(result) == [0, 100, 100])
        #expect(Self.finishes(result) == [100, 150, 110])
        let metrics = SimulationMetrics(result)
        // JCT 100, 140, 90: mean 110, median 100. Queueing 0, 90, 80. Makespan 150.
        #expect(metrics.averageJCT == 110 && metrics.medianJCT == 100)
        #expect(metrics.averageQueueing == 170.0 / 3 && metrics.p99Queueing == 90)
        #expect(metrics.makespan == 150)
        // Allocated 4 × 100 + 2 × 50 + 1 × 10 = 510 GPU-s of 4 GPUs × 150 s = 600: 85 %.
        #expect(metrics.gpuAllocation == 0.85)
        #expect(metrics.preemptions == 0)
    }

    @Test func srtfOraclePreemptsTheLongerJobAndChargesTheRestartPenalty() {
        // At 10 B (50 s left) preempts A (90 s left); A has 90 + 30 s penalty = 120 s to go.
        // At 20 C fits beside B: 20–30. At 60 B ends; A runs 60–180.
        let result = Self.run("srtf-oracle")
        #expect(Self.starts(result) == [0, 10, 20])
        #expect(Self.finishes(result) == [180, 60, 30])
        #expect(result.preemptions == 1 && result.outcomes[0].preemptions == 1)
        let metrics = SimulationMetrics(result)
        #expect(metrics.averageJCT == (180 + 50 + 10) / 3)
    }

    @Test func placementsPackSmallJobsAndKeepANodeWholeForTheWideOne() throws {
        // Two nodes of 2 GPUs. A and B (1 GPU each) then C (2 GPUs), all at t = 0.
        // A: both nodes tie (fragmentation 480 each: one node loses its 2-GPU fit) → the seed picks.
        // B: A's node scores 520 (fills the stranded GPU), the empty node 480 → B joins A.
        // C: the other node, both GPUs.
        let trace = try TraceReader.parse("submit_s,gpus,duration_s\n0,1,100\n0,1,100\n0,2,50\n", format: .csv, file: "t.csv")
        let result = Self.run("fifo", trace: trace, nodes: 2, gpus: 2)
        let byJob = Dictionary(grouping: result.placements, by: \.job)
        let a = try #require(byJob[1]?.first), b = try #require(byJob[2]?.first), c = try #require(byJob[3]?.first)
        #expect(result.placements.allSatisfy { $0.milliseconds == 0 })
        #expect(a.node == b.node && c.node != a.node)
        #expect(Set(a.devices + b.devices) == [.whole(gpu: 0), .whole(gpu: 1)])
        #expect(c.devices == [.whole(gpu: 0), .whole(gpu: 1)])
    }

    @Test func aJobNoNodeCouldHostIsLeftOutAndCounted() {
        let trace = try! TraceReader.parse("submit_s,gpus,duration_s\n0,1,10\n0,16,10\n", format: .csv, file: "t.csv")  // swiftlint:disable:this force_try
        let result = Self.run("fifo", trace: trace, nodes: 1, gpus: 8)
        #expect(result.neverPlaceable == 1)
        #expect(result.outcomes.map(\.id) == [1])
    }

    @Test func fixedRoundsScheduleOnlyOnTheirTicks() {
        var options = SimulationOptions.uniform(nodes: 1, gpusPerNode: 4, gpuModel: "H100-80GB")
        options.intervalMilliseconds = 60_000
        let result = Simulation(trace: Self.trace, policy: SchedulingPolicy.named("fifo")!, options: options).run()
        // Rounds at 60, 120, 180 s after the first arrival: A starts at 60 and ends at 160; B and C at 180.
        #expect(Self.starts(result) == [60, 180, 180])
    }

    /// The default policy must never read true durations: two traces that differ only in the
    /// durations of jobs that have not finished yet must get the same decisions. Two 1-GPU jobs
    /// hold the node's 2 GPUs; J3 and J4 wait; J1 ends at 100 s, and the policy must choose
    /// between J3 and J4 without knowing that one of them is short.
    @Test func theDefaultPolicyNeverReadsTrueDurations() {
        func trace(_ x: Int, _ y: Int) -> Trace {
            try! TraceReader.parse("submit_s,gpus,duration_s\n0,1,100\n0,1,500\n1,1,\(x)\n1,1,\(y)\n", format: .csv, file: "t.csv")  // swiftlint:disable:this force_try
        }
        func firstToStart(_ policy: String, _ t: Trace) -> Int {
            let result = Self.run(policy, trace: t, nodes: 1, gpus: 2)
            return result.outcomes[2...].min { ($0.firstStartMilliseconds ?? .max, $0.id) < ($1.firstStartMilliseconds ?? .max, $1.id) }!.id
        }
        // The oracle picks the short one, so it sees durations: the test can tell.
        #expect(firstToStart("srtf-oracle", trace(10, 1000)) == 3)
        #expect(firstToStart("srtf-oracle", trace(1000, 10)) == 4)
        for policy in ["fastgpu", "las", "fifo", "srtf-predicted", "fair-share"] {
            #expect(firstToStart(policy, trace(10, 1000)) == firstToStart(policy, trace(1000, 10)), "\(policy) reads true durations")
        }
    }

    @Test func onlyOraclePoliciesAreGivenTrueEstimates() {
        for name in SchedulingPolicy.names {
            var estimates: [Int64?] = []
            _ = Simulation(trace: Self.trace, policy: SchedulingPolicy.named(name)!, options: .uniform(nodes: 1, gpusPerNode: 4, gpuModel: "H100-80GB"))
                .run { estimates.append($0.runtimeEstimate?.wholeMilliseconds) }
            let truth = Self.trace.jobs.map(\.durationMilliseconds)
            if name.hasSuffix("-oracle") {
                #expect(estimates == truth.map(Optional.some))
            } else {
                #expect(zip(estimates, truth).allSatisfy { $0 != $1 }, "\(name) got a true duration")
            }
        }
    }

    @Test func poolsConfineJobsToTheirProjectsNodes() throws {
        // Two pools of one 1-GPU node; both jobs belong to project a, so the second waits for
        // the first although b's node is idle.
        let trace = try TraceReader.parse("submit_s,gpus,duration_s,gpu_milli,project\n0,1,10,1000,a\n0,1,10,1000,a\n", format: .csv, file: "t.csv")
        let options = SimulationOptions.pools([("a", 1), ("b", 1)], gpusPerNode: 1, gpuModel: "H100-80GB")
        let result = Simulation(trace: trace, policy: SchedulingPolicy.named("fifo")!, options: options).run()
        #expect(Self.starts(result) == [0, 10])
        let pooled = Self.run("fifo", trace: trace, nodes: 2, gpus: 1)
        #expect(Self.starts(pooled) == [0, 0])
    }

    @Test func percentilesAreNearestRank() {
        #expect(SimulationMetrics.percentileForTesting([1, 2, 3, 4], 0.5) == 2)
        #expect(SimulationMetrics.percentileForTesting([1, 2, 3, 4], 0.99) == 4)
        #expect(SimulationMetrics.percentileForTesting([], 0.5) == 0)
    }
}

@Suite struct PackingExperimentTests {
    static func nodes(_ count: Int, gpus: Int, cpu: Int = 64_000) -> [Node] {
        (1...count).map { i in
            Node(id: NodeID(UInt64(i)), gpus: (0..<gpus).map { GPU(index: $0, model: "T4", memoryMiB: 16_384) }, cpuMillis: cpu, memoryMiB: 262_144)
        }
    }

    @Test func allocationStaysUnderItsBoundAndEveryLoadIsReported() throws {
        let pods = try TraceReader.parse("""
            name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time
            a,4000,8192,1,500,,LS,Running,0,10
            b,4000,8192,1,1000,,LS,Running,1,10
            c,8000,8192,2,1000,,LS,Running,2,10
            d,2000,4096,0,0,,BE,Running,3,10
            """, format: .alibaba, file: "pods.csv").jobs
        let experiment = PackingExperiment(pods: pods, nodes: Self.nodes(4, gpus: 2), loadsPercent: [100, 120], seed: 3)
        for policy in PackingExperiment.policies {
            let outcome = try #require(experiment.run(policy: policy))
            #expect(outcome.points.map(\.loadPercent) == [100, 120])
            for point in outcome.points {
                #expect(point.allocationRatio <= point.upperBound)
                #expect(point.allocationRatio > 0.5)
            }
        }
        // What was not allocated is accounted for: partly used GPUs plus whole free ones.
        for policy in PackingExperiment.policies {
            let outcome = try #require(experiment.run(policy: policy))
            let stranded = try #require(outcome.stranded)
            let allocated = (outcome.points.last?.allocationRatio ?? 0) * 8000
            let free = Double(stranded.partlyFreeMilli + 1000 * (stranded.wholeGPUsWithoutCPUOrMemory + stranded.wholeGPUsOther))
            #expect(abs(allocated + free - 8000) < 0.5, "\(policy): \(allocated) + \(free)")
            #expect(stranded.partlyFreeGPUs.values.reduce(0, +) <= 8)
        }
        // The sequence is the same for every policy (seeded) and reaches the top load.
        let arrived = experiment.arrivals().reduce(0) { $0 + $1.milliGPUs }
        #expect(arrived >= 8000 * 120 / 100)
        #expect(experiment.arrivals().map(\.name) == experiment.arrivals().map(\.name))
    }

    @Test func cpuStarvedNodesStrandGPUsUnlessFragmentationSeesCPU() throws {
        // Two nodes of 2 GPUs; node 1 has CPU for only one pod. Pods each take 1 GPU and 6 cores.
        // Placing the first pod on node 1 strands its second GPU; the fragmentation scorer, which
        // now counts CPU, sends it to node 2 first... and both GPUs of node 2 stay usable.
        let pods = try TraceReader.parse("""
            name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time
            a,6000,1024,1,1000,,LS,Running,0,10
            """, format: .alibaba, file: "pods.csv").jobs
        let nodes = [Self.nodes(1, gpus: 2, cpu: 8000)[0], Node(id: NodeID(2), gpus: (0..<2).map { GPU(index: $0, model: "T4", memoryMiB: 16_384) }, cpuMillis: 16_000, memoryMiB: 262_144)]
        let experiment = PackingExperiment(pods: pods, nodes: nodes, loadsPercent: [100], seed: 1)
        let fgd = try #require(experiment.run(policy: "fgd"))
        // 4 pods arrive (4 GPUs of demand): node 2 takes two, node 1 one: 3 of 4 GPUs.
        #expect(fgd.points.first?.allocationRatio == 0.75)
    }
}

/// Quotas, spot and cost in the simulator, worked out by hand (the default policy: work of the
/// same tier and class is safe from preemption for 8 restart penalties after it starts).
@Suite struct SimulationQuotaTests {
    /// One node of 4 GPUs. `lab` at t=0 asks 4 GPUs for 100 s; `team` at t=10 asks 4 GPUs for 20 s.
    static let trace = try! TraceReader.parse("submit_s,gpus,duration_s,gpu_milli,project,priority\n0,4,100,1000,lab,100\n10,4,20,1000,team,100\n",  // swiftlint:disable:this force_try
                                              format: .csv, file: "quota.csv")

    static func run(quotas: [String: Quota] = [:], spot: Set<String> = []) -> SimulationResult {
        var options = SimulationOptions.uniform(nodes: 1, gpusPerNode: 4, gpuModel: "H100-80GB")
        options.quotas = quotas
        options.spotProjects = spot
        return Simulation(trace: trace, policy: SchedulingPolicy.named("fastgpu")!, options: options).run()
    }

    @Test func withoutQuotasTheLaterJobWaits() {
        let result = Self.run()
        #expect(result.outcomes.map { $0.firstStartMilliseconds.map { $0 / 1000 } } == [0, 100])
    }

    @Test func anOwnerReclaimsItsGuaranteeAndEveryRunIsBilled() {
        // team is guaranteed 4 GPUs, lab nothing: lab's run is borrowed and yields at once.
        // team runs 10–30; lab restarts at 30 with 90 s + 30 s penalty left and ends at 150.
        let result = Self.run(quotas: ["team": Quota(guaranteedMilliGPUs: 4000)])
        #expect(result.outcomes.map { $0.firstStartMilliseconds.map { $0 / 1000 } } == [0, 10])
        #expect(result.outcomes.map { $0.finishMilliseconds.map { $0 / 1000 } } == [150, 30])
        // Both of lab's runs are billed: 4 GPUs × 130 s × 2.49 / 3600 = 0.359666; team 4 × 20 s: 0.055333.
        #expect(result.costMicrosByProject["lab"] == 359_666)
        #expect(result.costMicrosByProject["team"] == 55_333)
        #expect(result.gpuMillisecondsByProject["lab"] == Int64(520_000_000))
    }

    @Test func aNamedCohortKeepsOutsidersOffItsIdleGuarantee() {
        // Two nodes of 4 GPUs; lab is guaranteed 4 and idle. team asks 4 GPUs twice at t=0.
        let trace = try! TraceReader.parse("submit_s,gpus,duration_s,gpu_milli,project,priority\n0,4,100,1000,team,100\n0,4,100,1000,team,100\n",  // swiftlint:disable:this force_try
                                           format: .csv, file: "cohort.csv")
        func starts(_ quota: Quota) -> [Int64?] {
            var options = SimulationOptions.uniform(nodes: 2, gpusPerNode: 4, gpuModel: "H100-80GB")
            options.quotas = ["lab": quota]
            return Simulation(trace: trace, policy: SchedulingPolicy.named("fastgpu")!, options: options).run()
                .outcomes.map { $0.firstStartMilliseconds.map { $0 / 1000 } }
        }
        // Lending to the whole cluster: team borrows lab's idle 4 GPUs at once.
        #expect(starts(Quota(guaranteedMilliGPUs: 4000)) == [0, 0])
        // Lending only within cohort lab: team's second job waits for its first.
        #expect(starts(Quota(guaranteedMilliGPUs: 4000, cohort: "lab")) == [0, 100])
    }

    @Test func spotWorkYieldsAndCostsItsSpotPrice() {
        // Non-spot work preempts spot work with or without quotas; lab pays 40 % of 2.49:
        // 4 × 130 s × 0.996 / 3600 = 0.143866.
        let result = Self.run(spot: ["lab"])
        #expect(result.outcomes.map { $0.finishMilliseconds.map { $0 / 1000 } } == [150, 30])
        #expect(result.costMicrosByProject["lab"] == 143_866)
    }
}
