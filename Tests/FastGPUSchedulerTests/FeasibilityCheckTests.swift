import FastGPUModel
import FastGPUScheduler
import FastGPUTestSupport
import Testing

@Suite struct FeasibilityCheckTests {
    struct Case: Sendable, CustomTestStringConvertible {
        var name: String
        var check: any FeasibilityCheck
        var node: Node
        var job: Job
        var expected: CheckFailure?
        var testDescription: String { name }
    }

    static func demand(_ job: Job) -> TaskDemand { TaskDemand(job: job, group: 0, now: .zero, defaultRuntime: nil) }

    /// A node whose GPU 0 is shared by project 1 at 600m / 40 GiB.
    static var sharedNode: Node {
        var node = Node.make(1).gpus(1, model: "A100-80GB").build()
        let holder = Allocation(id: AllocationID(9), task: TaskRef(job: JobID(9), group: 0, index: 0), node: NodeID(1),
                                devices: [.share(gpu: 0, milli: 600, memoryMiB: 40 * 1024)], cpuMillis: 0, memoryMiB: 0,
                                project: ProjectID(1), priority: .normal, spot: false, milliGPUs: 600, epoch: Epoch(1), startTime: .zero, expectedEnd: .distantFuture)
        _ = node.reserve(holder)
        return node
    }

    /// An A100-40GB in MIG mode holding a 3g.20gb at slot 4 (slots 4–7).
    static var migNode: Node {
        var node = Node.make(1).migGPUs(1, model: "A100-40GB").build()
        let holder = Allocation(id: AllocationID(9), task: TaskRef(job: JobID(9), group: 0, index: 0), node: NodeID(1),
                                devices: [.mig(gpu: 0, profile: "3g.20gb", start: 4, slotCount: 4)], cpuMillis: 0, memoryMiB: 0,
                                project: ProjectID(1), priority: .normal, spot: false, milliGPUs: 428, epoch: Epoch(1), startTime: .zero, expectedEnd: .distantFuture)
        _ = node.reserve(holder)
        return node
    }

    static let cases: [Case] = [
        Case(name: "ready node passes", check: NodeReadyCheck(), node: Node.make().gpus(1).build(), job: Job.make().gpus(1).build(), expected: nil),
        Case(name: "cordoned node fails", check: NodeReadyCheck(), node: Node.make().gpus(1).state(.cordoned).build(), job: Job.make().gpus(1).build(), expected: .nodeNotReady),
        Case(name: "draining node fails", check: NodeReadyCheck(), node: Node.make().gpus(1).state(.draining).build(), job: Job.make().gpus(1).build(), expected: .nodeNotReady),
        Case(name: "model prefix matches", check: GPUModelCheck(), node: Node.make().gpus(1, model: "H100-80GB").build(), job: Job.make().gpus(1, model: "H100").build(), expected: nil),
        Case(name: "other model fails", check: GPUModelCheck(), node: Node.make().gpus(1, model: "A100-80GB").build(), job: Job.make().gpus(1, model: "H100").build(), expected: .gpuModel),
        Case(name: "CPU-only task ignores model", check: GPUModelCheck(), node: Node.make().build(), job: Job.make().noGPU().build(), expected: nil),
        Case(name: "selector matches", check: NodeSelectorCheck(), node: Node.make().label("zone", "a").build(), job: Job.make().selector("zone", "a").build(), expected: nil),
        Case(name: "selector value differs", check: NodeSelectorCheck(), node: Node.make().label("zone", "b").build(), job: Job.make().selector("zone", "a").build(), expected: .nodeSelector),
        Case(name: "selector label missing", check: NodeSelectorCheck(), node: Node.make().build(), job: Job.make().selector("zone", "a").build(), expected: .nodeSelector),
        Case(name: "CPU exactly fits", check: CPUCheck(), node: Node.make().cpu(millis: 4000).build(), job: Job.make().cpu(millis: 4000).build(), expected: nil),
        Case(name: "CPU short by 1m", check: CPUCheck(), node: Node.make().cpu(millis: 3999).build(), job: Job.make().cpu(millis: 4000).build(), expected: .cpu),
        Case(name: "memory exactly fits", check: MemoryCheck(), node: Node.make().memory(mib: 4096).build(), job: Job.make().memory(mib: 4096).build(), expected: nil),
        Case(name: "memory short", check: MemoryCheck(), node: Node.make().memory(mib: 4095).build(), job: Job.make().memory(mib: 4096).build(), expected: .memory),
        Case(name: "8 of 8 GPUs fit", check: GPUCountCheck(), node: Node.make().gpus(8).build(), job: Job.make().gpus(8).build(), expected: nil),
        Case(name: "9 GPUs on 8 fail", check: GPUCountCheck(), node: Node.make().gpus(8).build(), job: Job.make().gpus(9).build(), expected: .gpuCount),
        Case(name: "unhealthy GPU does not count", check: GPUCountCheck(), node: Node.make().gpus(2).unhealthy(gpu: 1).build(), job: Job.make().gpus(2).build(), expected: .gpuCount),
        Case(name: "MIG GPUs are not whole GPUs", check: GPUCountCheck(), node: Node.make().migGPUs(2).build(), job: Job.make().gpus(1).build(), expected: .gpuCount),
        Case(name: "share fits beside the same project", check: GPUShareCheck(), node: sharedNode, job: Job.make().project(1).share(milli: 400, memoryMiB: 40 * 1024).build(), expected: nil),
        Case(name: "share over 1000m fails", check: GPUShareCheck(), node: sharedNode, job: Job.make().project(1).share(milli: 401).build(), expected: .gpuShare),
        Case(name: "share over GPU memory fails", check: GPUShareCheck(), node: sharedNode, job: Job.make().project(1).share(milli: 100, memoryMiB: 40 * 1024 + 1).build(), expected: .gpuShare),
        Case(name: "another project's shared GPU fails", check: GPUShareCheck(), node: sharedNode, job: Job.make().project(2).share(milli: 100).build(), expected: .gpuShare),
        Case(name: "share on a free GPU fits", check: GPUShareCheck(), node: Node.make().gpus(1).build(), job: Job.make().project(2).share(milli: 999).build(), expected: nil),
        Case(name: "MIG 3g fits at slot 0 beside a 3g at 4", check: MIGSlotCheck(), node: migNode, job: Job.make().mig("3g.20gb").build(), expected: nil),
        Case(name: "MIG 4g fits at slot 0", check: MIGSlotCheck(), node: migNode, job: Job.make().mig("4g.20gb").build(), expected: nil),
        Case(name: "MIG 7g no longer fits", check: MIGSlotCheck(), node: migNode, job: Job.make().mig("7g.40gb").build(), expected: .migSlots),
        Case(name: "MIG profile of another model fails", check: MIGSlotCheck(), node: migNode, job: Job.make().mig("1g.10gb+me").build(), expected: .migSlots),
        Case(name: "MIG on a non-MIG GPU fails", check: MIGSlotCheck(), node: Node.make().gpus(1, model: "A100-40GB").build(), job: Job.make().mig("1g.5gb").build(), expected: .migSlots),
    ]

    @Test(arguments: cases)
    func check(_ c: Case) {
        #expect(c.check.failure(of: c.node, for: Self.demand(c.job)) == c.expected)
    }
}
