import FastGPUControlPlane
import FastGPUModel
import FastGPUStore
import FastGPUStoreSQLite
import FastGPUWorkloads
import Foundation
import Testing

/// Thousands of jobs through a control plane on a real SQLite file with simulated agents that
/// enforce run-time limits, exit, fail, lose their processes (agent restarts) and go silent
/// (node failures), high-priority work that preempts, control-plane restarts in the middle, and a
/// project whose budget runs out. At the end: every job billed exactly its metered time × price,
/// and the budgeted project spent nothing beyond its limit.
///
/// `FASTGPU_SOAK_JOBS` sets the number of jobs (the suite runs 2,000; the figures in the issue's
/// note are from 10,000).
@Suite("Billing soak")
struct BillingSoakTests {
    /// One simulated agent: what it runs, since when, for how long.
    struct SimulatedAgent {
        var node: NodeID
        var token: String
        var running: [AllocationID: (epoch: Epoch, since: Timestamp, runFor: Int64)] = [:]
        var silentUntil: Timestamp?
    }

    @Test func everyJobIsBilledItsMeteredTimeTimesThePriceAndNoBudgetIsOverspent() async throws {
        let total = ProcessInfo.processInfo.environment["FASTGPU_SOAK_JOBS"].flatMap(Int.init) ?? 2_000
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("fastgpu-soak-\(UInt64.random(in: 0...UInt64.max))").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let path = directory + "/fastgpu.db"
        let box = SecretBox.random()
        let clock = ManualClock()
        var configuration = ControlPlaneConfiguration()
        configuration.retryBackoff = .seconds(15)
        // Agents report every step (15 s); a node silent for 45 s is judged down.
        configuration.heartbeatTTL = .seconds(20)
        configuration.heartbeatGrace = .seconds(10)
        var controlPlane = try await ControlPlane(store: try SQLiteClusterStore(path: path), secretBox: box, clock: clock, configuration: configuration)
        let adminToken = try #require(try await controlPlane.bootstrapIfEmpty())
        var admin = try controlPlane.tokens.authenticate(adminToken, now: clock.now()).get()
        var scheduling = SchedulingService(controlPlane: controlPlane)
        var random = SeededGenerator(seed: 2026)
        let step: Int64 = 15_000
        let started = Date()

        _ = try await controlPlane.createProject(name: "capped", weight: 1, by: admin)
        // GPU time only, at 2.49 an H100-hour (spot 40 %), from now.
        _ = try await controlPlane.setPrices(["gpu": 2_490_000], spotPercent: 40, effectiveAt: nil, by: admin)
        let limit: Int64 = Int64(total) * 40_000 // about a quarter of what the project's jobs would cost
        _ = try await controlPlane.setBudget(project: "capped", Budget(limitMicros: limit, defaultMaxRuntimeSeconds: 300), by: admin)
        var agents: [SimulatedAgent] = []
        for index in 0..<24 {
            let gpus = (0..<8).map { GPU(index: $0, model: "H100-80GB", memoryMiB: 81_559) }
            let (view, token) = try await controlPlane.registerNode(name: "gpu-\(index)", gpus: gpus, cpuMillis: 64_000, memoryMiB: 512_000, labels: [:], by: admin)
            agents.append(SimulatedAgent(node: view.node.id, token: token))
        }

        var submitted = 0, refused = 0, agentRestarts = 0, nodeFailures = 0, controlPlaneRestarts = 0
        var steps = 0
        while true {
            steps += 1
            let now = clock.now()
            // New work: a few jobs each step, a high-priority one now and then (it preempts).
            for _ in 0..<(submitted < total ? Int.random(in: 4...14, using: &random) : 0) where submitted < total {
                submitted += 1
                let capped = Bool.random(using: &random)
                let priority: PriorityClass = Int.random(in: 0..<20, using: &random) == 0 ? .high : (Bool.random(using: &random) ? .low : .normal)
                let group = TaskGroup(resources: TaskResources(gpu: .whole(count: [1, 1, 2, 4].randomElement(using: &random)!)))
                // Run-time limits and run times are whole steps: the simulated agent stops a job at its limit exactly.
                let limitSeconds = Int64.random(in: 1...20, using: &random) * 15
                let submission = JobSubmission(project: capped ? "capped" : "default", taskGroups: [group], priority: priority,
                                               spot: priority == .low && Bool.random(using: &random), runtimeLimit: capped && Bool.random(using: &random) ? nil : .seconds(limitSeconds),
                                               launch: JobLaunch(command: ["train"], maxAttempts: 3))
                do {
                    _ = try await controlPlane.submit(submission, by: admin)
                } catch ControlPlaneError.budgetExhausted {
                    refused += 1
                }
            }
            _ = try await scheduling.pass()
            for index in agents.indices {
                var agent = agents[index]
                defer { agents[index] = agent }
                if let until = agent.silentUntil, now < until { continue }
                agent.silentUntil = nil
                let principal = try controlPlane.tokens.authenticate(agent.token, now: now).get()
                let assigned = try await controlPlane.assignments(node: agent.node, after: 0, wait: .zero, by: principal)
                let live = Dictionary(assigned.allocations.map { ($0.allocation.id, $0) }, uniquingKeysWith: { a, _ in a })
                // Stopped by the control plane (preempted, cancelled, lost): gone.
                for id in agent.running.keys where live[id] == nil { agent.running[id] = nil }
                for (id, assignment) in live.sorted(by: { $0.key < $1.key }) where agent.running[id] == nil && assignment.allocation.runningSince == nil {
                    try await controlPlane.report(node: agent.node, allocation: id, epoch: assignment.allocation.epoch, running: true, exitCode: nil, by: principal)
                    let limitMs = assignment.runtimeLimit.map { $0.wholeMilliseconds } ?? .max
                    agent.running[id] = (assignment.allocation.epoch, now, min(limitMs, Int64.random(in: 1...24, using: &random) * step))
                }
                for (id, entry) in agent.running.sorted(by: { $0.key < $1.key }) where now.milliseconds(since: entry.since) >= entry.runFor {
                    let code: Int32 = Int.random(in: 0..<10, using: &random) == 0 ? 1 : 0
                    try await controlPlane.report(node: agent.node, allocation: id, epoch: entry.epoch, running: false, exitCode: code, by: principal)
                    agent.running[id] = nil
                }
                // An agent restart loses its processes; a node failure silences it past the liveness deadline.
                if Int.random(in: 0..<400, using: &random) == 0 {
                    agent.running = [:]
                    agentRestarts += 1
                } else if Int.random(in: 0..<600, using: &random) == 0 {
                    agent.running = [:]
                    agent.silentUntil = now + .seconds(60)
                    nodeFailures += 1
                    continue
                }
                _ = try await controlPlane.heartbeat(node: agent.node, gpuHealth: [:], running: agent.running.mapValues(\.epoch),
                                                     reconciled: assigned.index, by: principal)
            }
            clock.advance(by: .milliseconds(step))
            try await controlPlane.tick()
            // A control-plane restart now and then: memory rebuilt from the store, metering resumed.
            if steps % 20 == 0 {
                controlPlane = try await ControlPlane(store: try SQLiteClusterStore(path: path), secretBox: box, clock: clock, configuration: configuration)
                admin = try controlPlane.tokens.authenticate(adminToken, now: clock.now()).get()
                scheduling = SchedulingService(controlPlane: controlPlane)
                controlPlaneRestarts += 1
                try await controlPlane.forgiveHeartbeatGap()
            }
            let snapshot = await controlPlane.snapshot()
            if steps % 100 == 0 {
                let unfinished = snapshot.jobs.filter { !$0.state.isFinished }

                FileHandle.standardError.write(Data("step \(steps): \(submitted) submitted, \(unfinished.count) unfinished (\(unfinished.prefix(3).map { "\($0.id) \($0.state)" })), \(Int(Date().timeIntervalSince(started))) s\n".utf8))
            }
            if submitted >= total && snapshot.jobs.allSatisfy({ $0.state.isFinished }) { break }
            #expect(steps < 100_000, "the soak does not converge")
            if steps >= 100_000 { return }
        }
        try await controlPlane.meterRunning()

        // Billed = metered time × price, job by job, from the store's own records.
        let store = try SQLiteClusterStore(path: path)
        let snapshot = await controlPlane.snapshot()
        var mismatches = 0, allocationsCharged = 0, charges = 0, preempted = 0, lost = 0
        for job in snapshot.jobs {
            var expected: [BillingTier: Int64] = [:]
            for record in try await store.allocations(job: job.id) {
                if record.outcome == .preempted { preempted += 1 }
                if record.outcome == .lost { lost += 1 }
                guard let since = record.allocation.runningSince, let end = record.endedAt else { continue }
                allocationsCharged += 1
                expected[record.allocation.spot ? .spot : .onDemand, default: 0] += Int64(record.allocation.milliGPUs) * end.milliseconds(since: since)
            }
            let ledger = try await store.charges(of: job.id, limit: 100_000)
            charges += ledger.count
            var metered: [BillingTier: Int64] = [:]
            for charge in ledger { metered[charge.tier, default: 0] += charge.usage }
            let view = try controlPlane.job(job.id, by: admin)
            let price: [BillingTier: Int64] = [.onDemand: 2_490_000, .spot: 996_000]
            let billed = expected.reduce(Int64(0)) { $0 + Int64(Int128($1.value) * Int128(price[$1.key]!) / 3_600_000_000) }
            if metered.filter({ $0.value != 0 }) != expected.filter({ $0.value != 0 }) || view.costMicros != billed { mismatches += 1 }
        }
        let budget = try await controlPlane.budget(project: "capped", by: admin)
        #expect(mismatches == 0)
        #expect(budget.spentMicros <= limit, "no budget is spent beyond its limit")
        #expect(refused > 0, "the budget ran out and refused work")
        #expect(agentRestarts > 0 && nodeFailures > 0 && controlPlaneRestarts > 0 && preempted > 0 && lost > 0)
        let figures = """
            billing soak: \(total) jobs (\(refused) refused by the budget), \(steps) steps of 15 s, \(allocationsCharged) allocations charged in \(charges) ledger entries, \
            \(preempted) preempted and \(lost) lost allocations, \(agentRestarts) agent restarts, \(nodeFailures) node failures, \(controlPlaneRestarts) control-plane restarts; \
            jobs whose bill differs from metered time × price: \(mismatches); capped project spent \(Money.text(budget.spentMicros)) of \(Money.text(limit)) \
            (overspend \(Money.text(max(0, budget.spentMicros - limit)))); \(Int(Date().timeIntervalSince(started))) s

            """
        FileHandle.standardError.write(Data(figures.utf8))
    }
}
