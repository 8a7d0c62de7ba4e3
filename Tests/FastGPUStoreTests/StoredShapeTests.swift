import FastGPUModel
import FastGPUStore
import Foundation
import Testing

/// `JobRecord.spec` and `launch` and `AllocationRecord.allocation` are the model's values stored
/// as JSON. A change to `Job`, `JobLaunch` or `Allocation` changes what is on disk: these golden
/// strings make such a change fail here, where its author decides on a migration (and adds the
/// old shape to `MigrationTests`), instead of passing silently. (Note how a `Duration` is stored:
/// Swift's own encoding, the two halves of its attoseconds.)
@Suite struct StoredShapeTests {
    static func json(_ value: some Encodable) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    @Test func aStoredJobKeepsItsShape() throws {
        let job = Job(id: JobID(7), name: "train", project: ProjectID(2), submitter: "alice", priority: .high, spot: true,
                      taskGroups: [TaskGroup(name: "workers", count: 2, resources: TaskResources(gpu: .whole(count: 4), gpuModel: "H100-80GB",
                                                                                                cpuMillis: 8000, memoryMiB: 65536), gang: true)],
                      runtimeEstimate: .seconds(3600), runtimeLimit: .seconds(7200), submitTime: .seconds(1_800_000_000))
        #expect(try Self.json(job) == #"{"attainedMilliGPUMilliseconds":0,"attempts":0,"completedTasks":[],"failedUploads":[],"history":[],"id":7,"liveAllocations":[],"name":"train","outputs":[],"pendingUploads":[],"priority":{"name":"high","value":1000},"project":2,"runtimeEstimate":[195,2884905626637434880],"runtimeLimit":[390,5769811253274869760],"spot":true,"state":"pending","submitTime":1800000000000,"submitter":"alice","taskGroups":[{"count":2,"gang":true,"name":"workers","placement":"pack","resources":{"cpuMillis":8000,"gpu":{"whole":{"count":4}},"gpuModel":"H100-80GB","memoryMiB":65536,"nodeSelector":{}}}],"uploadRetries":0}"#)
        // The shape before the history existed (schema v4) still reads, with no history (and,
        // as every row written before outputs existed, no outputs and no uploads pending).
        let v4 = Data(#"{"attainedMilliGPUMilliseconds":0,"attempts":0,"completedTasks":[],"id":7,"liveAllocations":[],"name":"train","priority":{"name":"high","value":1000},"project":2,"runtimeEstimate":[195,2884905626637434880],"runtimeLimit":[390,5769811253274869760],"spot":true,"state":"pending","submitTime":1800000000000,"submitter":"alice","taskGroups":[{"count":2,"gang":true,"name":"workers","placement":"pack","resources":{"cpuMillis":8000,"gpu":{"whole":{"count":4}},"gpuModel":"H100-80GB","memoryMiB":65536,"nodeSelector":{}}}]}"#.utf8)
        let read = try JSONDecoder().decode(Job.self, from: v4)
        #expect(read.history.isEmpty && read.finishedAt == nil && read.taskGroups == job.taskGroups && read.runtimeLimit == .seconds(7200))
        #expect(read.outputs.isEmpty && read.pendingUploads.isEmpty && read.failedUploads.isEmpty && read.stateAfterUploads == nil)
        let launch = JobLaunch(command: ["python", "train.py"], environment: ["EPOCHS": "3"], maxAttempts: 2, sealedSecrets: ["HF_TOKEN": "c2VhbGVk"])
        #expect(try Self.json(launch) == #"{"command":["python","train.py"],"environment":{"EPOCHS":"3"},"inputs":[],"maxAttempts":2,"outputs":[],"sealedSecrets":{"HF_TOKEN":"c2VhbGVk"}}"#)
    }

    @Test func aStoredAllocationKeepsItsShape() throws {
        let allocation = Allocation(id: AllocationID(3), task: TaskRef(job: JobID(7), group: 0, index: 1), node: NodeID(4),
                                    devices: [.whole(gpu: 0), .share(gpu: 1, milli: 500, memoryMiB: 20480), .mig(gpu: 2, profile: "1g.10gb", start: 3, slotCount: 1)],
                                    cpuMillis: 8000, memoryMiB: 65536, project: ProjectID(2), priority: .normal, spot: false, milliGPUs: 1643,
                                    epoch: Epoch(12), startTime: .seconds(1_800_000_100), expectedEnd: .distantFuture)
        #expect(try Self.json(allocation) == #"{"cpuMillis":8000,"devices":[{"whole":{"gpu":0}},{"share":{"gpu":1,"memoryMiB":20480,"milli":500}},{"mig":{"gpu":2,"profile":"1g.10gb","slotCount":1,"start":3}}],"epoch":12,"expectedEnd":2305843009213693951,"id":3,"memoryMiB":65536,"milliGPUs":1643,"node":4,"priority":{"name":"normal","value":100},"project":2,"spot":false,"startTime":1800000100000,"task":{"group":0,"index":1,"job":7}}"#)
    }
}
