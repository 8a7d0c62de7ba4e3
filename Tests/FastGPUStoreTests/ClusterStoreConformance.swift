import FastGPUModel
import FastGPUStore
import FastGPUStoreSQLite
import FastGPUTestSupport
import Foundation
import Testing

/// What every `ClusterStore` must do. A later store (PostgreSQL) runs the same checks with its
/// own `make`; each check gets a fresh, empty store, and `reopen` gives a second handle on the
/// same data, as a restarted server would get.
struct ClusterStoreConformance {
    let make: @Sendable () async throws -> (store: any ClusterStore, reopen: @Sendable () async throws -> any ClusterStore)

    static let t0 = Timestamp.seconds(1_800_000_000)

    static func project(_ id: UInt64, _ name: String) -> ProjectRecord {
        ProjectRecord(id: ProjectID(id), name: name, weight: 1, createdAt: t0)
    }

    static func job(_ id: UInt64, project: UInt64 = 1) -> JobRecord {
        let job = Job.make(id).project(project).gpus(1).build()
        return JobRecord(job: job, launch: JobLaunch(command: ["python", "train.py"], environment: ["A": "1"]))
    }

    static func node(_ id: UInt64) -> (NodeRecord, [GPURecord]) {
        let node = Node.make(id).gpus(2).build()
        let record = NodeRecord(id: node.id, name: "n\(id)", state: .ready, cpuMillis: node.cpuMillis, memoryMiB: node.memoryMiB, labels: ["zone": "a"],
                                allowsCrossProjectSharing: false, registeredAt: t0, lastHeartbeatAt: t0)
        return (record, node.gpus.map { GPURecord(nodeID: node.id, gpu: $0) })
    }

    static func allocation(_ id: UInt64, job: UInt64, node: UInt64, live: Bool) -> AllocationRecord {
        let allocation = Allocation(id: AllocationID(id), task: TaskRef(job: JobID(job), group: 0, index: 0), node: NodeID(node), devices: [.whole(gpu: 0)],
                                    cpuMillis: 1000, memoryMiB: 1024, project: ProjectID(1), priority: .normal, spot: false, milliGPUs: 1000,
                                    epoch: Epoch(7), startTime: t0, expectedEnd: .distantFuture)
        return AllocationRecord(allocation: allocation, live: live, report: live ? .running : .exited,
                                outcome: live ? nil : .failed(exitCode: 3), endedAt: live ? nil : t0 + .seconds(5))
    }

    func everything() async throws {
        let (store, reopen) = try await make()
        #expect(try await store.load().isEmpty)
        let (node, gpus) = Self.node(1)
        let token = TokenRecord(id: 1, name: "admin", secretHash: "ab", displayPrefix: "fgpu_ab", kind: .user, subject: "alice", clusterAdmin: true, createdAt: Self.t0)
        let key = IdempotencyRecord(subject: "alice", key: "k1", requestHash: "h", jobID: JobID(1), createdAt: Self.t0)
        try await store.commit(StoreBatch([
            .saveProject(Self.project(1, "default")),
            .saveMember(MemberRecord(projectID: ProjectID(1), subject: "alice", role: .admin)),
            .saveMember(MemberRecord(projectID: ProjectID(1), subject: "bob", role: .viewer)),
            .saveToken(token),
            .saveNode(node, gpus: gpus),
            .submitJob(Self.job(1), idempotency: key),
            .submitJob(Self.job(2), idempotency: nil),
            .saveAllocation(Self.allocation(1, job: 1, node: 1, live: true)),
            .saveAllocation(Self.allocation(2, job: 2, node: 1, live: false)),
            .appendEvent(EventRecord(time: Self.t0, event: .submitted(JobID(1), project: ProjectID(1)), actor: "alice")),
            .appendEvent(EventRecord(time: Self.t0, event: .ended(Self.allocation(1, job: 1, node: 1, live: true).allocation, .failed(exitCode: 3),
                                                                  cause: .preempted(for: JobID(2))))),
            .appendEvent(EventRecord(time: Self.t0, event: .submitted(JobID(2), project: ProjectID(1)))),
            .setMeta(StoreMeta(stateIndex: 12, nextAllocationID: 3)),
        ]))
        for candidate in [store, try await reopen()] {
            let loaded = try await candidate.load()
            #expect(loaded.meta == StoreMeta(stateIndex: 12, nextAllocationID: 3))
            #expect(loaded.projects == [Self.project(1, "default")])
            #expect(loaded.members.map(\.subject) == ["alice", "bob"])
            #expect(loaded.tokens == [token])
            #expect(loaded.nodes == [node])
            #expect(loaded.gpus == gpus)
            #expect(loaded.jobs == [Self.job(1), Self.job(2)])
            #expect(loaded.liveAllocations == [Self.allocation(1, job: 1, node: 1, live: true)], "ended allocations are history, not state")
            #expect(loaded.idempotencyKeys == [key])
            let events = try await candidate.events(job: JobID(1), after: 0, limit: 10)
            #expect(events.map(\.event) == [.submitted(JobID(1), project: ProjectID(1)),
                                             .ended(Self.allocation(1, job: 1, node: 1, live: true).allocation, .failed(exitCode: 3), cause: .preempted(for: JobID(2)))],
                    "events come back typed, as written")
            #expect(events.map(\.actor) == ["alice", nil])
            #expect(events.map(\.nodeID) == [nil, NodeID(1)])
            #expect(try await candidate.allocations(job: JobID(2)) == [Self.allocation(2, job: 2, node: 1, live: false)])
            #expect(try await candidate.allocation(AllocationID(2)) == Self.allocation(2, job: 2, node: 1, live: false))
            #expect(try await candidate.allocation(AllocationID(9)) == nil)
        }
    }

    func upsertsReplaceAndRemovalsRemove() async throws {
        let (store, _) = try await make()
        var job = Self.job(1)
        try await store.commit(StoreBatch([.saveProject(Self.project(1, "default")), .submitJob(job, idempotency: nil),
                                           .saveMember(MemberRecord(projectID: ProjectID(1), subject: "bob", role: .viewer))]))
        job.state = .cancelled
        job.finishedAt = Self.t0 + .seconds(9)
        var project = Self.project(1, "default")
        project.weight = 4
        try await store.commit(StoreBatch([.saveJob(job), .saveProject(project), .saveJob(job),
                                           .saveMember(MemberRecord(projectID: ProjectID(1), subject: "bob", role: .member)),
                                           .removeMember(ProjectID(1), subject: "bob")]))
        let loaded = try await store.load()
        #expect(loaded.jobs == [job])
        #expect(loaded.projects == [project])
        #expect(loaded.members.isEmpty)

        let old = IdempotencyRecord(subject: "a", key: "k", requestHash: "h1", jobID: JobID(1), createdAt: Self.t0)
        let fresh = IdempotencyRecord(subject: "a", key: "k2", requestHash: "h2", jobID: JobID(1), createdAt: Self.t0 + .seconds(100))
        var second = Self.job(2)
        second.spec = Job.make(2).project(1).gpus(1).build()
        try await store.commit(StoreBatch([.submitJob(second, idempotency: old), .appendEvent(EventRecord(time: Self.t0, event: .nodeReplaced(NodeID(1))))]))
        var reused = old
        reused.requestHash = "h3"
        try await store.commit(StoreBatch([.submitJob(Self.job(3), idempotency: reused), .submitJob(Self.job(4), idempotency: fresh)]))
        #expect(try await store.load().idempotencyKeys.first { $0.key == "k" }?.requestHash == "h3", "a key past retention is taken over")
        try await store.commit(StoreBatch([.expireIdempotencyKeys(before: Self.t0 + .seconds(50))]))
        #expect(try await store.load().idempotencyKeys.map(\.key) == ["k2"])
    }

    func aBatchIsAllOrNothing() async throws {
        let (store, _) = try await make()
        try await store.commit(StoreBatch([.saveProject(Self.project(1, "default")), .submitJob(Self.job(1), idempotency: nil)]))
        // The second submission of job 1 violates the primary key: nothing of the batch lands.
        await #expect(throws: (any Error).self) {
            try await store.commit(StoreBatch([.saveProject(Self.project(2, "other")), .submitJob(Self.job(2), idempotency: nil), .submitJob(Self.job(1), idempotency: nil)]))
        }
        let loaded = try await store.load()
        #expect(loaded.projects.map(\.name) == ["default"])
        #expect(loaded.jobs.map(\.id) == [JobID(1)])
    }

    func logsPageInOrderAndIgnoreRepeats() async throws {
        let (store, _) = try await make()
        let (node, gpus) = Self.node(1)
        try await store.commit(StoreBatch([.saveProject(Self.project(1, "default")), .saveNode(node, gpus: gpus), .submitJob(Self.job(1), idempotency: nil)]))
        func chunk(_ allocation: UInt64, _ sequence: Int64, _ text: String) -> StoreWrite {
            .appendLog(LogChunkRecord(allocationID: AllocationID(allocation), sequence: sequence, jobID: JobID(1), stream: .stdout, time: Self.t0, text: text))
        }
        try await store.commit(StoreBatch([chunk(1, 0, "a"), chunk(1, 1, "b"), chunk(2, 0, "d")]))
        try await store.commit(StoreBatch([chunk(1, 1, "b again"), chunk(1, 2, "c")]))
        // In the order they were stored, whichever allocation wrote them; a repeat is ignored.
        let all = try await store.logs(job: JobID(1), after: 0, limit: 100)
        #expect(all.map(\.chunk.text) == ["a", "b", "d", "c"])
        #expect(zip(all, all.dropFirst()).allSatisfy { $0.position < $1.position })
        #expect(try await store.logs(job: JobID(1), after: all[1].position, limit: 100).map(\.chunk.text) == ["d", "c"])
        #expect(try await store.logs(job: JobID(1), after: 0, limit: 2).map(\.chunk.text) == ["a", "b"])
        #expect(try await store.logs(job: JobID(2), after: 0, limit: 100).isEmpty)
    }

    func eventsPageBySequence() async throws {
        let (store, _) = try await make()
        let requeued = { (n: Int) in ClusterEvent.requeued(JobID(1), notBefore: Self.t0 + .seconds(n)) }
        try await store.commit(StoreBatch((1...5).map { .appendEvent(EventRecord(time: Self.t0, event: requeued($0))) }))
        let first = try await store.events(job: JobID(1), after: 0, limit: 2)
        #expect(first.map(\.event) == [requeued(1), requeued(2)])
        let rest = try await store.events(job: JobID(1), after: first.last!.sequence!, limit: 10)
        #expect(rest.map(\.event) == [requeued(3), requeued(4), requeued(5)])
    }

    func auditRecordsAppendAndPageBySequenceAndSubject() async throws {
        let (store, reopen) = try await make()
        let records = (1...4).map { i in
            AuditRecord(time: Self.t0, subject: i % 2 == 0 ? "bob" : "alice", tokenID: UInt64(i), action: "POST /v1/jobs", target: "/v1/jobs",
                        remoteAddress: "10.0.0.\(i)", status: 201, failure: nil, requestID: "r\(i)")
        }
        try await store.commit(StoreBatch(records.map { .appendAudit($0) }))
        let all = try await reopen().audit(after: 0, limit: 10, subject: nil)
        #expect(all.map(\.requestID) == ["r1", "r2", "r3", "r4"])
        #expect(all.map { $0.sequence ?? 0 } == all.map { $0.sequence ?? 0 }.sorted() && Set(all.map(\.sequence)).count == 4)
        #expect(try await store.audit(after: 0, limit: 10, subject: "bob").map(\.requestID) == ["r2", "r4"])
        #expect(try await store.audit(after: all[1].sequence!, limit: 1, subject: nil).map(\.requestID) == ["r3"])
    }
}

@Suite("SQLite store")
struct SQLiteClusterStoreTests {
    static func directory() -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("fastgpu-store-\(UInt64.random(in: 0...UInt64.max))").path
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    let conformance = ClusterStoreConformance {
        let path = Self.directory() + "/fastgpu.db"
        return (try SQLiteClusterStore(path: path), { try SQLiteClusterStore(path: path) })
    }

    @Test func everything() async throws { try await conformance.everything() }
    @Test func upsertsReplaceAndRemovalsRemove() async throws { try await conformance.upsertsReplaceAndRemovalsRemove() }
    @Test func aBatchIsAllOrNothing() async throws { try await conformance.aBatchIsAllOrNothing() }
    @Test func logsPageInOrderAndIgnoreRepeats() async throws { try await conformance.logsPageInOrderAndIgnoreRepeats() }
    @Test func eventsPageBySequence() async throws { try await conformance.eventsPageBySequence() }
    @Test func auditRecordsAppendAndPageBySequenceAndSubject() async throws { try await conformance.auditRecordsAppendAndPageBySequenceAndSubject() }

    @Test func theFileIsWALWithFullSynchronousCommits() async throws {
        let path = Self.directory() + "/fastgpu.db"
        let store = try SQLiteClusterStore(path: path)
        #expect(try await store.pragma("journal_mode") == "wal")
        #expect(try await store.pragma("synchronous") == "2", "2 is FULL")
    }

    @Test func aBadPathIsOneClearError() {
        #expect {
            _ = try SQLiteClusterStore(path: "/proc/no-such-dir/fastgpu.db")
        } throws: { error in
            "\(error)".hasPrefix("cannot open the database at /proc/no-such-dir/fastgpu.db")
        }
    }
}
