import FastGPUModel
import Foundation
import Testing

/// Events are stored as JSON: every case must come back as it went, and the stored form is named,
/// not Swift's synthesised `_0`.
@Suite struct EventCodingTests {
    static let allocation = Allocation(id: AllocationID(4), task: TaskRef(job: JobID(2), group: 0, index: 1), node: NodeID(3),
                                       devices: [.mig(gpu: 1, profile: "1g.10gb", start: 2, slotCount: 1)], cpuMillis: 500, memoryMiB: 512,
                                       project: ProjectID(1), priority: .high, spot: true, milliGPUs: 143, epoch: Epoch(9), startTime: .seconds(7),
                                       expectedEnd: .distantFuture)

    static let every: [ClusterEvent] = [
        .submitted(JobID(2), project: ProjectID(1)),
        .placed(allocation),
        .started(AllocationID(4), task: allocation.task, node: NodeID(3)),
        .ended(allocation, .failed(exitCode: 137), cause: .preempted(for: JobID(8))),
        .ended(allocation, .lost, cause: .partnerEnded(partner: AllocationID(5))),
        .ended(allocation, .succeeded, cause: .exited),
        .requeued(JobID(2), notBefore: .seconds(40)),
        .cancelled(JobID(2)),
        .nodeRegistered(NodeID(3), name: "gpu-3", gpus: 8, again: true),
        .nodeStateChanged(NodeID(3), from: .draining, to: .down),
        .nodeReplaced(NodeID(3)),
        .gpuHealthChanged(NodeID(3), gpu: 5, .unhealthy(reason: "xid 48")),
        .projectChanged(ProjectID(1), weight: 3, maxPriority: "high"),
        .secretChanged(ProjectID(1), name: "HF_TOKEN", removed: true),
        .recorded(kind: "placed", message: "task 0/0 placed on gpu-1 with gpu0"),
    ]

    @Test func everyEventRoundTrips() throws {
        for event in Self.every {
            let data = try JSONEncoder().encode(event)
            #expect(try JSONDecoder().decode(ClusterEvent.self, from: data) == event)
            #expect(!String(decoding: data, as: UTF8.self).contains("\"_0\""), "named fields only: \(String(decoding: data, as: UTF8.self))")
        }
    }

    @Test func anEventOfANewerServerReadsAsRecordedNotAsAFailure() throws {
        let event = try JSONDecoder().decode(ClusterEvent.self, from: Data(#"{"type":"replicaReady","service":3}"#.utf8))
        #expect(event == .recorded(kind: "replicaReady", message: ""))
    }
}
