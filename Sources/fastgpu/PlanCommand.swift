import ArgumentParser
import FastGPUModel
import FastGPUScheduler
import FastGPUWorkloads

/// `fastgpu plan`: one scheduling pass on a synthetic cluster with a Philly-shaped queue, printed
/// as a person would want to read it. Shows what the scheduler core decides before the server exists.
struct PlanCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plan",
        abstract: "Run the scheduler once on a synthetic cluster and queue, and print the plan."
    )

    @Option(help: "Number of nodes.") var nodes = 16
    @Option(name: .customLong("gpus-per-node"), help: "GPUs per node.") var gpusPerNode = 8
    @Option(name: .customLong("gpu-model"), help: "GPU model of every node.") var gpuModel = "H100-80GB"
    @Option(help: "Pending jobs, with GPU counts drawn from the Philly trace's distribution.") var jobs = 200
    @Option(help: "Policy: \(SchedulingPolicy.liveNames.joined(separator: ", ")) (the server's --policy names).") var policy = SchedulingPolicy.defaultName
    @Option(help: "Backfill: strict, easy, greedy (default: the policy's).") var backfill: String?
    @Option(help: "Seed for the synthetic queue and the tie-breaks.") var seed: UInt64 = 1
    @Option(help: "How many pending jobs to list with their reasons.") var show = 8

    func validate() throws {
        guard nodes >= 1, nodes <= 100_000 else { throw ValidationError("--nodes must be between 1 and 100000") }
        guard gpusPerNode >= 1, gpusPerNode <= 64 else { throw ValidationError("--gpus-per-node must be between 1 and 64") }
        guard jobs >= 0, jobs <= 1_000_000 else { throw ValidationError("--jobs must be between 0 and 1000000") }
        guard let named = SchedulingPolicy.named(policy), !named.isOracle else {
            throw ValidationError("unknown --policy '\(policy)'; use \(SchedulingPolicy.liveNames.joined(separator: ", ")) (or fastgpu:claim=N:…)")
        }
        if let backfill, BackfillMode(rawValue: backfill) == nil { throw ValidationError("unknown --backfill '\(backfill)'; use strict, easy or greedy") }
    }

    func run() throws {
        var rng = SeededGenerator(seed: seed)
        let cluster = Workloads.uniformCluster(nodes: nodes, gpus: gpusPerNode, model: gpuModel)
        let queue = Workloads.philly(count: jobs, gpusPerNode: gpusPerNode, using: &rng)
        var state = ClusterState()
        for node in cluster { try state.apply(.registerNode(node)) }
        for job in queue { try state.apply(.submit(job)) }
        // The synthetic queue has no finished jobs to learn from: the policy as it starts on a new cluster.
        var configuration = SchedulingPolicy.named(policy, seed: seed)!.schedulerConfiguration(restartCost: .seconds(30))
        if let backfill { configuration.backfill = BackfillMode(rawValue: backfill)! }
        // The synthetic jobs arrive one per second; the pass runs when the last has arrived.
        let now = Timestamp.seconds(Int64(jobs))
        let plan = Scheduler(configuration: configuration).process(state, now: now)
        let verified = PlanVerifier().verify(plan, against: state)

        let gpusPlaced = verified.placements.reduce(0) { $0 + $1.devices.count }
        let jobsPlaced = Set(verified.placements.map(\.task.job)).count
        print("cluster   \(nodes) nodes × \(gpusPerNode) \(gpuModel) = \(nodes * gpusPerNode) GPUs")
        print("queue     \(jobs) jobs (Philly GPU-count mix), policy \(policy), backfill \(configuration.backfill.rawValue)")
        print("placed    \(jobsPlaced) jobs, \(verified.placements.count) tasks, \(gpusPlaced) GPUs (\(percent(gpusPlaced, nodes * gpusPerNode)) of the cluster)")
        print("verified  \(verified.placements.count) placements accepted, \(verified.rejected.count) rejected")
        let never = plan.pending.filter(\.reason.isNever).count
        print("pending   \(plan.pending.count) jobs: \(plan.pending.count - never) not now, \(never) never")
        if let reservation = plan.reservation {
            let start = reservation.start == .distantFuture ? "at an unknown time" : "in \(reservation.start.milliseconds(since: now) / 1000) s"
            print("reserved  \(reservation.job) starts \(start) on \(reservation.nodes.count) node(s)")
        }
        // Expected starts from a shadow run of the scheduler; each step is a pass over the queue,
        // so large synthetic queues skip it.
        let starts = jobs <= 5_000 ? StartEstimator(configuration: configuration).estimatedStarts(state: state, plan: plan, now: now) : [:]
        for pending in plan.pending.prefix(show) {
            let job = state.jobs[pending.job]!
            var line = "  #\(pending.position) \(pending.job) (\(job.taskGroups[0].count) × \(job.taskGroups[0].resources.gpu)): \(pending.reason.explanation(now: now))"
            if case .notNow(_, _, _, nil) = pending.reason, let start = starts[pending.job] {
                line += "; estimated start in \(start.milliseconds(since: now) / 1000) s"
            }
            print(line)
        }
    }

    private func percent(_ part: Int, _ whole: Int) -> String {
        whole == 0 ? "0%" : "\(part * 100 / whole)%"
    }
}
