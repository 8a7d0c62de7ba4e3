import FastGPUControlPlane
import FastGPUModel
import FastGPUStoreSQLite
import Foundation
import Testing

/// A control plane on a temporary SQLite file and a hand-moved clock, driven by direct calls:
/// no HTTP, no real time.
struct Harness {
    let clock: ManualClock
    let controlPlane: ControlPlane
    let scheduling: SchedulingService
    let admin: Principal

    static func make(configuration: ControlPlaneConfiguration = ControlPlaneConfiguration()) async throws -> Harness {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("fastgpu-cp-\(UInt64.random(in: 0...UInt64.max))").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let clock = ManualClock()
        let controlPlane = try await ControlPlane(store: try SQLiteClusterStore(path: directory + "/fastgpu.db"), secretBox: SecretBox.random(),
                                                  clock: clock, configuration: configuration)
        let token = try #require(try await controlPlane.bootstrapIfEmpty())
        let admin = try controlPlane.tokens.authenticate(token, now: clock.now()).get()
        return Harness(clock: clock, controlPlane: controlPlane, scheduling: SchedulingService(controlPlane: controlPlane), admin: admin)
    }

    /// Registers a node of `gpus` H100s; returns its id and its agent's principal.
    func node(_ name: String, gpus: Int) async throws -> (id: NodeID, agent: Principal) {
        let list = (0..<gpus).map { GPU(index: $0, model: "H100-80GB", memoryMiB: 81_559) }
        let (view, token) = try await controlPlane.registerNode(name: name, gpus: list, cpuMillis: 64_000, memoryMiB: 512_000, labels: [:], by: admin)
        return (view.node.id, try controlPlane.tokens.authenticate(token, now: clock.now()).get())
    }

    func submit(gpus: Int) async throws -> JobID {
        let group = TaskGroup(resources: TaskResources(gpu: .whole(count: gpus)))
        return try await controlPlane.submit(JobSubmission(project: "default", taskGroups: [group], launch: JobLaunch(command: ["train"])), by: admin).view.job.id
    }

    func assigned(_ node: NodeID, _ agent: Principal) async throws -> [AllocationID] {
        try await controlPlane.assignments(node: node, after: 0, wait: .zero, by: agent).allocations.map(\.allocation.id)
    }
}

@Suite("Control plane without HTTP")
struct ControlPlaneTests {
    @Test func eventsAreRecordedTypedWithWhoAskedForThem() async throws {
        let h = try await Harness.make()
        let (node, agent) = try await h.node("gpu-1", gpus: 2)
        let job = try await h.submit(gpus: 1)
        try await h.scheduling.pass()
        let allocation = try #require(try await h.assigned(node, agent).first)
        let epoch = try #require(await h.controlPlane.snapshot().allocations.first?.epoch)
        h.clock.advance(by: .seconds(2))
        try await h.controlPlane.report(node: node, allocation: allocation, epoch: epoch, running: true, exitCode: nil, by: agent)
        try await h.controlPlane.report(node: node, allocation: allocation, epoch: epoch, running: false, exitCode: 3, by: agent)
        let records = try await h.controlPlane.events(of: job, by: h.admin, after: 0, limit: 10)
        #expect(records.map(\.kind) == ["submitted", "placed", "started", "exited"])
        #expect(records.map(\.actor) == ["admin", nil, nil, nil], "the scheduler and the agent's reports are the control plane's own doing")
        guard case .ended(let ended, .failed(exitCode: 3), cause: .exited) = records.last?.event else {
            Issue.record("the last event is the exit: \(String(describing: records.last?.event))")
            return
        }
        #expect(ended.runningSince == ended.startTime + .seconds(2), "the actual start is the agent's report, not the commit")
        let view = try h.controlPlane.job(job, by: h.admin)
        #expect(view.job.state == .failed)
        #expect(view.finishedAt == h.clock.now())
    }

    @Test func aNodeGoesDownOnTheInjectedClockWithoutWaiting() async throws {
        var configuration = ControlPlaneConfiguration()
        configuration.startupGrace = .zero
        let h = try await Harness.make(configuration: configuration)
        let (node, _) = try await h.node("gpu-1", gpus: 1)
        let liveness = Task { try await LivenessService(controlPlane: h.controlPlane).run() }
        defer { liveness.cancel() }
        // Tick by tick, a second each: silent past TTL + grace (10 s), it goes down at the 11th.
        var ticks = 0
        while try await h.controlPlane.node(node, by: h.admin).node.state != .down {
            ticks += 1
            try #require(ticks <= 30, "still up after \(ticks) s")
            while h.clock.sleeperCount == 0 { await Task.yield() }
            h.clock.advance(by: .seconds(1))
        }
        #expect((11...12).contains(ticks))
    }

    @Test func aLongPollTimesOutOnTheInjectedClock() async throws {
        let h = try await Harness.make()
        let job = try await h.submit(gpus: 1)
        let version = await h.controlPlane.jobVersion(job)
        let waiting = Task { await h.controlPlane.waitForJobChange(job, after: version, timeout: .seconds(60)) }
        while h.clock.sleeperCount == 0 { await Task.yield() }
        h.clock.advance(by: .seconds(59))
        #expect(h.clock.sleeperCount == 1, "not before its timeout")
        h.clock.advance(by: .seconds(1))
        await waiting.value
        #expect(await h.controlPlane.jobVersion(job) == version, "it returned for its timeout, not for a change")
    }

    /// Runs one job on the node's only GPU, confirmed running by its agent; returns its allocation.
    func runFirst(_ h: Harness, _ node: NodeID, _ agent: Principal, priority: PriorityClass = .normal) async throws -> (job: JobID, allocation: AllocationID, epoch: Epoch) {
        let group = TaskGroup(resources: TaskResources(gpu: .whole(count: 1)))
        let job = try await h.controlPlane.submit(JobSubmission(project: "default", taskGroups: [group], priority: priority, launch: JobLaunch(command: ["train"])),
                                                  by: h.admin).view.job.id
        try await h.scheduling.pass()
        let allocation = try #require(try await h.assigned(node, agent).first)
        let epoch = try #require(await h.controlPlane.snapshot().allocations.first?.epoch)
        try await h.controlPlane.report(node: node, allocation: allocation, epoch: epoch, running: true, exitCode: nil, by: agent)
        _ = try await h.controlPlane.heartbeat(node: node, gpuHealth: [:], running: [allocation: epoch], by: agent)
        return (job, allocation, epoch)
    }

    @Test func aCancelledAllocationsGPUIsNotFreeUntilItsAgentNoLongerRunsIt() async throws {
        let h = try await Harness.make()
        let (node, agent) = try await h.node("gpu-1", gpus: 1)
        let old = try await runFirst(h, node, agent)
        // Cancelled: its process may ignore SIGTERM for the whole stop grace.
        _ = try await h.controlPlane.cancel(old.job, by: h.admin)
        let second = try await h.submit(gpus: 1)
        #expect(try await h.scheduling.pass() == 0, "the GPU is held while the agent stops the old workload")
        #expect(try h.controlPlane.job(second, by: h.admin).job.state == .pending)
        _ = try await h.controlPlane.heartbeat(node: node, gpuHealth: [:], running: [old.allocation: old.epoch], by: agent)
        #expect(try await h.scheduling.pass() == 0, "still stopping")

        _ = try await h.controlPlane.heartbeat(node: node, gpuHealth: [:], running: [:], by: agent)
        #expect(try await h.scheduling.pass() == 1, "gone from the agent: the GPU is free")
        #expect(try await h.controlPlane.assignments(node: node, after: 0, wait: .zero, by: agent).allocations.map(\.allocation.task.job) == [second])
    }

    @Test func aHeartbeatFromBeforeTheAgentSawTheStopDoesNotFreeTheGPU() async throws {
        let h = try await Harness.make()
        let (node, agent) = try await h.node("gpu-1", gpus: 1)
        let old = try await runFirst(h, node, agent)
        let seenBefore = try await h.controlPlane.assignments(node: node, after: 0, wait: .zero, by: agent).index
        _ = try await h.controlPlane.cancel(old.job, by: h.admin)
        let second = try await h.submit(gpus: 1)
        // A heartbeat the agent built before it fetched the assignments without the old one: it
        // does not list it (it may be starting it this very moment), and it must not free the GPU.
        _ = try await h.controlPlane.heartbeat(node: node, gpuHealth: [:], running: [:], reconciled: seenBefore, by: agent)
        #expect(try await h.scheduling.pass() == 0)
        let seenAfter = try await h.controlPlane.assignments(node: node, after: 0, wait: .zero, by: agent).index
        #expect(seenAfter > seenBefore)
        _ = try await h.controlPlane.heartbeat(node: node, gpuHealth: [:], running: [:], reconciled: seenAfter, by: agent)
        #expect(try await h.scheduling.pass() == 1, "the agent has seen the stop and runs nothing: the GPU is free")
        #expect(try h.controlPlane.job(second, by: h.admin).job.state == .running)
    }

    @Test func aPreemptionsBeneficiaryReachesTheAgentOnlyOnceTheVictimIsGone() async throws {
        let h = try await Harness.make()
        let (node, agent) = try await h.node("gpu-1", gpus: 1)
        let victim = try await runFirst(h, node, agent, priority: .low)
        let group = TaskGroup(resources: TaskResources(gpu: .whole(count: 1)))
        let urgent = try await h.controlPlane.submit(JobSubmission(project: "default", taskGroups: [group], priority: .high, launch: JobLaunch(command: ["infer"])),
                                                     by: h.admin).view.job.id
        #expect(try await h.scheduling.pass() == 1, "one plan preempts the victim and places the urgent job on its GPU")
        #expect(try h.controlPlane.job(urgent, by: h.admin).job.state == .running)
        #expect(try await h.assigned(node, agent).isEmpty, "but the agent does not get it while the victim may still run")
        #expect(try await h.scheduling.pass() == 0, "and no pass places anything else there meanwhile")

        let index = try await h.controlPlane.heartbeat(node: node, gpuHealth: [:], running: [:], by: agent)
        let now = try await h.controlPlane.assignments(node: node, after: 0, wait: .zero, by: agent)
        #expect(now.allocations.map(\.allocation.task.job) == [urgent], "the victim is gone: the urgent job goes")
        #expect(index == now.index)
        #expect(try h.controlPlane.job(victim.job, by: h.admin).job.state == .pending, "the victim waits to run again")
    }

    @Test func anAgentThatDoesNotListWhatItRunsIsNotHeldBack() async throws {
        let h = try await Harness.make()
        let (node, agent) = try await h.node("gpu-1", gpus: 1)
        let first = try await h.submit(gpus: 1)
        try await h.scheduling.pass()
        _ = try await h.controlPlane.cancel(first, by: h.admin)
        let second = try await h.submit(gpus: 1)
        try await h.scheduling.pass()
        #expect(try await h.controlPlane.assignments(node: node, after: 0, wait: .zero, by: agent).allocations.map(\.allocation.task.job) == [second],
                "nothing would ever say the old one is gone")
    }

    @Test func heartbeatsCarryPowerAndEnergyPerGPU() async throws {
        let h = try await Harness.make()
        let (node, agent) = try await h.node("gpu-1", gpus: 2)
        _ = try await h.controlPlane.heartbeat(node: node, gpuHealth: [:], telemetry: [1: GPUTelemetry(powerWatts: 612.5, energyMillijoules: 9_000_000)],
                                               by: agent)
        let view = try await h.controlPlane.node(node, by: h.admin)
        #expect(view.telemetry[1] == GPUTelemetry(powerWatts: 612.5, energyMillijoules: 9_000_000))
        #expect(view.telemetry[0] == nil)
        let stats = await h.controlPlane.stats()
        #expect(stats.gpus.map(\.telemetry?.powerWatts) == [nil, 612.5])
        await #expect(throws: ControlPlaneError.self) {
            try await h.controlPlane.heartbeat(node: node, gpuHealth: [:], telemetry: [7: GPUTelemetry(powerWatts: 1, energyMillijoules: nil)], by: agent)
        }
    }
}

extension ControlPlaneTests {
    /// A GPU a running job holds at 0 % for `idleGPUAfter` is idle: one `gpu-idle` event on the
    /// job, and `/metrics`' stats say so; a busy reading ends the run; a free GPU is never idle.
    @Test func aHeldGPUAtZeroUtilisationBecomesIdleOnceAndABusyReadingEndsIt() async throws {
        var configuration = ControlPlaneConfiguration()
        configuration.idleGPUAfter = .seconds(60)
        let h = try await Harness.make(configuration: configuration)
        let (node, agent) = try await h.node("gpu-1", gpus: 2)
        let job = try await h.submit(gpus: 1)
        try await h.scheduling.pass()
        let allocation = try #require(try await h.assigned(node, agent).first)
        let snapshot = await h.controlPlane.snapshot()
        let placed = try #require(snapshot.allocations.first)
        let held = try #require(placed.devices.first?.gpuIndex)
        let free = 1 - held
        func beat(_ held: Int, _ free: Int) async throws {
            _ = try await h.controlPlane.heartbeat(node: node, gpuHealth: [:], telemetry: [
                0: GPUTelemetry(utilizationPercent: held == 0 ? 0 : free), 1: GPUTelemetry(utilizationPercent: held == 1 ? 0 : free)], by: agent)
        }
        // Placed but not yet running: starting, not idle.
        try await beat(held, 0)
        h.clock.advance(by: .seconds(120))
        try await beat(held, 0)
        #expect(await h.controlPlane.stats().gpus.allSatisfy { $0.idleSeconds == nil })
        try await h.controlPlane.report(node: node, allocation: allocation, epoch: placed.epoch, running: true, exitCode: nil, by: agent)
        for _ in 0..<4 {
            try await beat(held, 0)
            h.clock.advance(by: .seconds(30))
        }
        try await beat(held, 0)
        var stats = await h.controlPlane.stats()
        let idle = try #require(stats.gpus.first { $0.index == held })
        #expect(idle.idleSeconds == 120 && idle.idleReported)
        #expect(idle.holders.map(\.job) == [job.rawValue] && idle.holders.map(\.project) == ["default"])
        #expect(stats.gpus.first { $0.index == free }?.idleSeconds == nil, "a free GPU at 0 % is not idle")
        var kinds = try await h.controlPlane.events(of: job, by: h.admin, after: 0, limit: 20).map(\.kind)
        #expect(kinds.filter { $0 == "gpu-idle" }.count == 1, "\(kinds)")
        guard case .gpuIdle(let which, _, let on, let gpu, let seconds)? = try await h.controlPlane.events(of: job, by: h.admin, after: 0, limit: 20)
            .first(where: { $0.kind == "gpu-idle" })?.event else { Issue.record("no gpu-idle event"); return }
        #expect(which == allocation && on == node && gpu == held && seconds == 60)
        // Busy again: the run ends; idle again later: a new run, reported again only after the threshold.
        try await h.controlPlane.heartbeat(node: node, gpuHealth: [:], telemetry: [held: GPUTelemetry(utilizationPercent: 87)], by: agent)
        stats = await h.controlPlane.stats()
        #expect(stats.gpus.first { $0.index == held }?.idleSeconds == nil)
        try await beat(held, 0)
        h.clock.advance(by: .seconds(59))
        try await beat(held, 0)
        kinds = try await h.controlPlane.events(of: job, by: h.admin, after: 0, limit: 20).map(\.kind)
        #expect(kinds.filter { $0 == "gpu-idle" }.count == 1)
        let view = try await h.controlPlane.node(node, by: h.admin)
        #expect(view.idleSince[held] != nil && view.idleSince[free] == nil)
    }

    @Test func queueWaitIsMeasuredFromSubmissionToFirstPlacementPerProject() async throws {
        let h = try await Harness.make()
        let (node, agent) = try await h.node("gpu-1", gpus: 1)
        let first = try await h.submit(gpus: 1)
        _ = try await h.submit(gpus: 1)
        h.clock.advance(by: .seconds(3))
        try await h.scheduling.pass()
        var project = try #require(await h.controlPlane.stats().projects.first { $0.name == "default" })
        #expect(project.queueWait.count == 1 && project.queueWait.sum == 3)
        #expect(project.pendingJobs == 1 && project.oldestPendingSeconds == 3 && project.allocatedMilli == 1000)
        let allocation = try #require(try await h.assigned(node, agent).first)
        let epoch = try #require(await h.controlPlane.snapshot().allocations.first?.epoch)
        h.clock.advance(by: .seconds(100))
        try await h.controlPlane.report(node: node, allocation: allocation, epoch: epoch, running: false, exitCode: 0, by: agent)
        try await h.scheduling.pass()
        project = try #require(await h.controlPlane.stats().projects.first { $0.name == "default" })
        #expect(project.queueWait.count == 2 && project.queueWait.sum == 106, "the second waited 103 s")
        #expect(project.pendingJobs == 0 && project.oldestPendingSeconds == nil)
        _ = first
    }
}

@Suite("Watchers and the manual clock")
struct WatcherTests {
    @Test func aSleeperWakesWhenTheClockPassesItsDeadlineOrItsTaskIsCancelled() async throws {
        let clock = ManualClock()
        let sleeper = Task { try await clock.sleep(for: .seconds(5)) }
        while clock.sleeperCount == 0 { await Task.yield() }
        clock.advance(by: .seconds(4))
        #expect(clock.sleeperCount == 1)
        clock.advance(by: .seconds(1))
        try await sleeper.value
        let cancelled = Task { try await clock.sleep(for: .seconds(5)) }
        while clock.sleeperCount == 0 { await Task.yield() }
        cancelled.cancel()
        await #expect(throws: CancellationError.self) { try await cancelled.value }
        #expect(clock.sleeperCount == 0)
    }
}
