import FastGPUModel

extension SchedulingPass {
    /// EASY backfill's reservation for the first blocked job: the earliest time at which all its
    /// waiting tasks fit as running work ends at its expected end, and the nodes they fit on.
    ///
    /// Per node, allocations are released in order of expected end on a copy until the task fits
    /// (repeatedly, for several tasks per node); the earliest `n` (time, node) pairs over the
    /// cluster give the start (the latest of them) and the reserved nodes. Reserved nodes are then
    /// closed to any later job that would still run at that start; other nodes stay open. A job
    /// whose tasks never fit this way (work without an expected end) gets no reservation.
    mutating func reserve(_ job: Job) {
        let tasks = job.unplacedTasks
        guard let first = tasks.first else { return }
        var slots: [(time: Timestamp, slot: Int)] = []
        // Tasks of one job may differ by group; the reservation plans with the first waiting
        // group's demand for all of them, which is exact for the common one-group job.
        let demand = TaskDemand(job: job, group: first.group, now: now, defaultRuntime: configuration.defaultRuntime)
        let staticChecks: [any FeasibilityCheck] = [GPUModelCheck(), NodeSelectorCheck()]
        for slot in nodes.indices where index.isIndexed(slot) {
            var node = nodes[slot]
            if staticChecks.contains(where: { $0.failure(of: node, for: demand) != nil }) { continue }
            if case .whole(let k) = demand.gpu, node.gpus.count < k { continue }
            var ending = node.allocations.compactMap { tentative[$0] ?? state.allocations[$0] }.map(planned)
            ending.sort { ($0.expectedEnd, $0.id) < ($1.expectedEnd, $1.id) }
            var time = now
            var next = 0
            var fitted = 0
            while fitted < tasks.count {
                if let devices = fits(demand, on: node) {
                    slots.append((time, slot))
                    fitted += 1
                    let placeholder = Allocation(
                        id: AllocationID(UInt64(fitted)), task: first, node: node.id, devices: devices,
                        cpuMillis: demand.resources.cpuMillis, memoryMiB: demand.resources.memoryMiB, project: demand.project,
                        priority: demand.priority, spot: demand.spot, milliGPUs: 0, epoch: Epoch(0), startTime: time, expectedEnd: .distantFuture)
                    if node.reserve(placeholder) != nil { break }
                    continue
                }
                guard next < ending.count, ending[next].expectedEnd < .distantFuture else { break }
                time = max(now, ending[next].expectedEnd)
                node.release(ending[next])
                next += 1
            }
        }
        guard slots.count >= tasks.count else {
            reservation = Reservation(job: job.id, start: .distantFuture, nodes: [])
            return
        }
        slots.sort { ($0.time, $0.slot) < ($1.time, $1.slot) }
        let chosen = slots.prefix(tasks.count)
        let start = chosen.last!.time
        reservedSlots = Set(chosen.map(\.slot))
        reservation = Reservation(job: job.id, start: start, nodes: reservedSlots.sorted().map { nodes[$0].id })
    }

    /// The allocation with the end backfill plans with: one without an estimate is given the
    /// configured default run time from its start, as the pass gave the tasks it placed.
    private func planned(_ allocation: Allocation) -> Allocation {
        guard allocation.expectedEnd == .distantFuture, let runtime = configuration.defaultRuntime else { return allocation }
        var copy = allocation
        copy.expectedEnd = allocation.startTime + runtime
        return copy
    }

    /// Whether the task fits on this node copy, ignoring its state (it is a future state).
    private func fits(_ demand: TaskDemand, on node: Node) -> [DeviceAssignment]? {
        guard demand.resources.cpuMillis <= node.freeCPUMillis, demand.resources.memoryMiB <= node.freeMemoryMiB else { return nil }
        if case .whole(let count) = demand.gpu, node.freeWholeGPUs < count { return nil }
        return DeviceSelection.devices(on: node, for: demand)
    }
}
