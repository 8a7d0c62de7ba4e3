import FastGPUModel
import FastGPUScheduler
import FastGPUTestSupport
import Testing

@Suite struct ScorerTests {
    static func node(_ gpus: Int, wholeTaken: Int = 0, shares: [Int: Int] = [:], islands: Int = 1) -> Node {
        var node = Node.make(1).gpus(gpus).islands(islands).build()
        var id: UInt64 = 100
        for gpu in 0..<wholeTaken {
            _ = node.reserve(allocation(id, [.whole(gpu: gpu)]))
            id += 1
        }
        for (gpu, milli) in shares.sorted(by: { $0.key < $1.key }) {
            _ = node.reserve(allocation(id, [.share(gpu: gpu, milli: milli, memoryMiB: 0)]))
            id += 1
        }
        return node
    }

    static func allocation(_ id: UInt64, _ devices: [DeviceAssignment]) -> Allocation {
        Allocation(id: AllocationID(id), task: TaskRef(job: JobID(id), group: 0, index: 0), node: NodeID(1), devices: devices,
                   cpuMillis: 0, memoryMiB: 0, project: ProjectID(1), priority: .normal, spot: false, milliGPUs: 0, epoch: Epoch(1),
                   startTime: .zero, expectedEnd: .distantFuture)
    }

    static func input(_ node: Node, _ job: Job, _ devices: [DeviceAssignment], mix: [(GPUShape, Int)] = [], sameGroup: Int = 0) -> ScoringInput {
        ScoringInput(node: node, devices: devices, task: TaskDemand(job: job, group: 0, now: .zero, defaultRuntime: nil),
                     sameGroupOnNode: sameGroup, mix: WorkloadMix(shapes: mix.map { (WorkloadShape(gpu: $0.0), $0.1) }))
    }

    struct Case: Sendable, CustomTestStringConvertible {
        var name: String
        var scorer: any PlacementScorer
        var input: @Sendable () -> ScoringInput
        var expected: Int
        var testDescription: String { name }
    }

    static let cases: [Case] = [
        // Best fit: 1000 × the mean of used-after ÷ capacity over GPU, CPU and memory. The test
        // nodes have 64,000m CPU and 524,288 MiB; jobs ask 1,000m and 4,096 MiB, so CPU adds
        // 1000 × 1000 ÷ 64000 = 15 and memory 1000 × 4096 ÷ 524288 = 7.
        Case(name: "best fit, empty node, 1 GPU", scorer: BestFitScorer(), input: { input(node(8), Job.make().gpus(1).build(), [.whole(gpu: 0)]) },
             expected: 49),  // GPU 1000 × 1000 ÷ 8000 = 125; (125 + 15 + 7) ÷ 3 = 49
        Case(name: "best fit, 6 of 8 taken, 2 GPUs", scorer: BestFitScorer(), input: { input(node(8, wholeTaken: 6), Job.make().gpus(2).build(), [.whole(gpu: 6), .whole(gpu: 7)]) },
             expected: 340),  // GPU 1000 × 8000 ÷ 8000 = 1000; (1000 + 15 + 7) ÷ 3 = 340
        Case(name: "best fit, share on a half-used GPU", scorer: BestFitScorer(), input: { input(node(2, shares: [0: 500]), Job.make().share(milli: 250).build(), [.share(gpu: 0, milli: 250, memoryMiB: 0)]) },
             expected: 132),  // GPU 1000 × (500 + 250) ÷ 2000 = 375; (375 + 15 + 7) ÷ 3 = 132
        // Fragmentation: 50 − 50 × Δ ÷ capacity.
        Case(name: "fragmentation, whole GPU on an empty node, mix of 8-GPU jobs", scorer: FragmentationScorer(),
             input: { input(node(8), Job.make().gpus(1).build(), [.whole(gpu: 0)], mix: [(.whole(8), 1)]) },
             expected: 63),  // before 0 (8 whole free ≥ 8); after 7 whole free < 8 → 7 × 1000 = 7000; Δ 7000: 500 − 7000 ÷ 16 = 500 − 437 = 63
        Case(name: "fragmentation, share onto a partial GPU, mix of 1-GPU jobs", scorer: FragmentationScorer(),
             input: { input(node(2, shares: [0: 500]), Job.make().share(milli: 500).build(), [.share(gpu: 0, milli: 500, memoryMiB: 0)], mix: [(.whole(1), 1)]) },
             expected: 531),  // before: partial 500 is a fragment for whole(1) → 500; after 0; Δ −500: 500 − (−500 ÷ 16 = −31) = 531
        Case(name: "fragmentation, share onto a free GPU, mix of 1-GPU jobs", scorer: FragmentationScorer(),
             input: { input(node(2, shares: [0: 500]), Job.make().share(milli: 500).build(), [.share(gpu: 1, milli: 500, memoryMiB: 0)], mix: [(.whole(1), 1)]) },
             expected: 469),  // before 500 (1 whole free, the partial 500 is a fragment); after no whole GPU → 500 + 500 = 1000; Δ 500: 500 − 500 ÷ 16 = 500 − 31 = 469
        // Balanced allocation: 1000 − (largest − smallest used fraction). GPU 125, CPU 15, memory 7.
        Case(name: "balanced, 1 GPU on an empty node", scorer: BalancedAllocationScorer(), input: { input(node(8), Job.make().gpus(1).build(), [.whole(gpu: 0)]) },
             expected: 882),  // 1000 − (125 − 7)
        // Fragmentation sees CPU: a 1-GPU shape needing 64,000m cannot use a node with 63,000m left,
        // so after the placement all 7 free GPUs are fragments for it.
        Case(name: "fragmentation counts GPUs stranded by CPU", scorer: FragmentationScorer(),
             input: { ScoringInput(node: node(8), devices: [.whole(gpu: 0)], task: TaskDemand(job: Job.make().gpus(1).build(), group: 0, now: .zero, defaultRuntime: nil),
                                   sameGroupOnNode: 0, mix: WorkloadMix(shapes: [(WorkloadShape(gpu: .whole(1), cpuMillis: 64_000), 1)])) },
             expected: 63),  // before 0; after 7 × 1000 = 7000 (CPU short); 500 − 7000 ÷ 16 = 63
        Case(name: "topology, 2 GPUs on one island", scorer: TopologyScorer(), input: { input(node(8, islands: 2), Job.make().gpus(2).build(), [.whole(gpu: 0), .whole(gpu: 1)]) },
             expected: 1000),
        Case(name: "topology, 2 GPUs over two islands", scorer: TopologyScorer(), input: { input(node(8, islands: 2), Job.make().gpus(2).build(), [.whole(gpu: 3), .whole(gpu: 4)]) },
             expected: 500),  // 1000 ÷ 2 islands
        Case(name: "spread, 1 of 4 replicas already here", scorer: SpreadScorer(), input: { input(node(8), Job.make().gpus(1).tasks(4).spread().build(), [.whole(gpu: 0)], sameGroup: 1) },
             expected: 750),  // 1000 − 1000 × 1 ÷ 4
        Case(name: "spread is neutral for packing groups", scorer: SpreadScorer(), input: { input(node(8), Job.make().gpus(1).tasks(4).build(), [.whole(gpu: 0)], sameGroup: 3) },
             expected: 1000),
    ]

    @Test(arguments: cases)
    func score(_ c: Case) {
        #expect(c.scorer.score(c.input()) == c.expected)
    }
}
