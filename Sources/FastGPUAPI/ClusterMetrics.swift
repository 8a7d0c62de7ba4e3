import FastGPUControlPlane
import FastGPUModel

/// The cluster's state on `/metrics`, written from one `ControlPlaneStats` per scrape.
///
/// Per GPU (`node`, `gpu`, `model`, `simulated="true"` on readings the agent made up): the gauges
/// (allocation, health, utilisation, memory, power, temperature, idle time) also carry `job_id`
/// and `project` of the holder when one job holds it (empty when free or shared; not `job`, which
/// Prometheus keeps for its scrape job); the counters (energy, ECC, XID) do not, so that a job
/// ending with an error does not start a new series and hide the increase. `fastgpu_gpu_allocation`
/// names every job of a shared GPU.
/// Per project: allocated GPUs, waiting jobs, the oldest wait, queue wait at placement (histogram)
/// and spend. Per node: up and heartbeat age. Per service: replicas (the gateway adds traffic).
enum ClusterMetrics {
    static func text(_ stats: ControlPlaneStats) -> String {
        var out = PrometheusText()
        for state in JobState.allCases {
            out.add("fastgpu_jobs", help: "Jobs by state.", ["state": state.rawValue], Double(stats.jobsByState[state] ?? 0))
        }
        for state in NodeState.allCases {
            out.add("fastgpu_nodes", help: "Nodes by state.", ["state": state.rawValue], Double(stats.nodesByState[state] ?? 0))
        }
        out.add("fastgpu_queue_length", help: "Jobs waiting to be placed.", [:], Double(stats.queueLength))
        out.add("fastgpu_gpus_total", help: "GPUs registered.", [:], Double(stats.gpusTotal))
        out.add("fastgpu_gpus_allocated", help: "GPUs allocated (shares count as fractions).", [:], Double(stats.gpusAllocatedMilli) / 1000)
        out.add("fastgpu_state_index", help: "Index of the last change applied to the cluster state.", [:], Double(stats.stateIndex))
        out.add("fastgpu_store_failed", help: "1 when the store refused a commit and the control plane stopped accepting changes.", [:],
                stats.storeFailed ? 1 : 0)

        for node in stats.nodes {
            out.add("fastgpu_node_up", help: "1 when the node is not down (its agent sends heartbeats).", ["node": node.name], node.state == .down ? 0 : 1)
            out.add("fastgpu_node_ready", help: "1 when the node takes work (not cordoned, draining or down).", ["node": node.name],
                    node.state == .ready ? 1 : 0)
            if let age = node.heartbeatAgeSeconds {
                out.add("fastgpu_node_heartbeat_age_seconds", help: "Seconds since the node's last heartbeat.", ["node": node.name], age)
            }
        }

        for gpu in stats.gpus {
            let jobs = Array(Set(gpu.holders)).sorted { ($0.job, $0.project) < ($1.job, $1.project) }
            let single = jobs.count == 1 ? jobs.first : nil
            let device: [(String, String)] = [("node", gpu.node), ("gpu", String(gpu.index)), ("model", gpu.model)]
                + (gpu.telemetry?.simulated == true ? [("simulated", "true")] : [])
            let base = device + [("job_id", single.map { String($0.job) } ?? ""), ("project", single?.project ?? "")]
            out.add("fastgpu_gpu_allocated", help: "Share of the GPU allocated (1: all of it).", base, Double(gpu.allocatedMilli) / 1000)
            out.add("fastgpu_gpu_healthy", help: "1 when the GPU takes work; 0 after an XID, uncorrected ECC errors or a lost GPU.", base,
                    gpu.healthy ? 1 : 0)
            for holder in jobs {
                out.add("fastgpu_gpu_allocation", help: "Jobs holding the GPU, one series per job (several on a shared GPU).",
                        [("node", gpu.node), ("gpu", String(gpu.index)), ("job_id", String(holder.job)), ("project", holder.project)], 1)
            }
            if !gpu.holders.isEmpty {
                out.add("fastgpu_gpu_idle_seconds", help: "Seconds a held GPU has been at 0 % utilisation (0 when busy).", base,
                        Double(gpu.idleSeconds ?? 0))
                out.add("fastgpu_gpu_idle_allocated", help: "1 when a held GPU has been idle longer than the server's --idle-gpu-after.", base,
                        gpu.idleReported ? 1 : 0)
            }
            guard let reading = gpu.telemetry else { continue }
            if let value = reading.utilizationPercent {
                out.add("fastgpu_gpu_utilization_ratio", help: "GPU utilisation over the driver's last sample period (0 to 1).", base, Double(value) / 100)
            }
            if let value = reading.memoryUsedMiB {
                out.add("fastgpu_gpu_memory_used_bytes", help: "GPU memory in use.", base, Double(value) * 1_048_576)
            }
            if let value = reading.powerWatts { out.add("fastgpu_gpu_power_watts", help: "Power draw now.", base, value) }
            if let value = reading.energyMillijoules {
                out.add("fastgpu_gpu_energy_joules_total", type: "counter", help: "Energy since the driver loaded: use increase().", device, Double(value) / 1000)
            }
            if let value = reading.temperatureCelsius {
                out.add("fastgpu_gpu_temperature_celsius", help: "GPU core temperature.", base, Double(value))
            }
            if let value = reading.eccCorrected {
                out.add("fastgpu_gpu_ecc_errors_total", type: "counter", help: "ECC errors since the driver loaded, by kind.", device + [("kind", "corrected")], Double(value))
            }
            if let value = reading.eccUncorrected {
                out.add("fastgpu_gpu_ecc_errors_total", type: "counter", help: "ECC errors since the driver loaded, by kind.", device + [("kind", "uncorrected")], Double(value))
            }
            out.add("fastgpu_gpu_xid_errors_total", type: "counter", help: "XID errors the kernel logged for the GPU since its agent started.", device,
                    Double(reading.xidErrors ?? 0))
            if let value = reading.lastXid {
                out.add("fastgpu_gpu_last_xid", help: "The code of the last XID error logged for the GPU.", device, Double(value))
            }
        }

        for project in stats.projects {
            let labels = [("project", project.name)]
            out.add("fastgpu_project_gpus_allocated", help: "GPUs the project's allocations hold.", labels, Double(project.allocatedMilli) / 1000)
            out.add("fastgpu_project_jobs_pending", help: "The project's jobs waiting to be placed.", labels, Double(project.pendingJobs))
            out.add("fastgpu_project_oldest_pending_seconds", help: "How long the project's oldest waiting job has waited (0: none waits).", labels,
                    project.oldestPendingSeconds ?? 0)
            out.histogram("fastgpu_queue_wait_seconds", help: "Time from submission to a job's first placement, since the server started.",
                          labels, bounds: WaitHistogram.bounds, counts: project.queueWait.counts, sum: project.queueWait.sum)
        }
        for spend in stats.spend {
            // In currency units (Prometheus' base unit), from the ledger's micro-units.
            let labels = [("project", spend.project)]
            out.add("fastgpu_project_spend_this_month", help: "The project's spend this month.", labels, Double(spend.spentMicros) / 1_000_000)
            out.add("fastgpu_project_budget_reserved", help: "Spend reserved by running jobs against the budget.", labels, Double(spend.reservedMicros) / 1_000_000)
            if let limit = spend.limitMicros {
                out.add("fastgpu_project_budget_limit", help: "The project's monthly budget.", labels, Double(limit) / 1_000_000)
                out.add("fastgpu_project_budget_soft_limit", help: "Where the project's budget warns (its soft threshold).", labels,
                        Double(spend.softLimitMicros ?? limit) / 1_000_000)
                out.add("fastgpu_project_budget_used_ratio", help: "Spend this month over the budget (1: exhausted).", labels,
                        limit > 0 ? Double(spend.spentMicros) / Double(limit) : 1)
            }
        }
        for service in stats.services {
            out.add("fastgpu_service_desired_replicas", help: "Replicas the service's autoscaler wants.", [("service", service.name), ("project", service.project)],
                    Double(service.desired))
            for state in ReplicaState.allCases {
                out.add("fastgpu_service_replicas", help: "The service's replicas by state.",
                        [("service", service.name), ("project", service.project), ("state", state.rawValue)], Double(service.replicas[state] ?? 0))
            }
        }
        return out.rendered
    }
}

/// Prometheus' text format, one family's samples together after its HELP and TYPE lines.
struct PrometheusText {
    private var families: [String] = []
    private var samples: [String: (help: String, type: String, lines: [String])] = [:]

    mutating func add(_ name: String, type: String = "gauge", help: String, _ labels: [(String, String)], _ value: Double) {
        line(family: name, type: type, help: help, sample: name + Self.labels(labels) + " " + Self.number(value))
    }

    mutating func add(_ name: String, type: String = "gauge", help: String, _ labels: [String: String], _ value: Double) {
        add(name, type: type, help: help, labels.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }, value)
    }

    mutating func histogram(_ name: String, help: String, _ labels: [(String, String)], bounds: [Double], counts: [Int], sum: Double) {
        var cumulative = 0
        for (index, bound) in bounds.enumerated() {
            cumulative += counts[index]
            line(family: name, type: "histogram", help: help, sample: name + "_bucket" + Self.labels(labels + [("le", Self.number(bound))]) + " \(cumulative)")
        }
        cumulative += counts[bounds.count]
        line(family: name, type: "histogram", help: help, sample: name + "_bucket" + Self.labels(labels + [("le", "+Inf")]) + " \(cumulative)")
        line(family: name, type: "histogram", help: help, sample: name + "_sum" + Self.labels(labels) + " " + Self.number(sum))
        line(family: name, type: "histogram", help: help, sample: name + "_count" + Self.labels(labels) + " \(cumulative)")
    }

    private mutating func line(family: String, type: String, help: String, sample: String) {
        if samples[family] == nil {
            families.append(family)
            samples[family] = (help, type, [])
        }
        samples[family]?.lines.append(sample)
    }

    var rendered: String {
        var out = ""
        for family in families {
            guard let entry = samples[family] else { continue }
            out += "# HELP \(family) \(entry.help)\n# TYPE \(family) \(entry.type)\n"
            for line in entry.lines { out += line + "\n" }
        }
        return out
    }

    static func labels(_ pairs: [(String, String)]) -> String {
        guard !pairs.isEmpty else { return "" }
        return "{" + pairs.map { "\($0.0)=\"\(escaped($0.1))\"" }.joined(separator: ",") + "}"
    }

    static func escaped(_ value: String) -> String {
        var out = ""
        for character in value {
            switch character {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            default: out.append(character)
            }
        }
        return out
    }

    static func number(_ value: Double) -> String {
        if value.isNaN { return "NaN" }
        if value.isInfinite { return value > 0 ? "+Inf" : "-Inf" }
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return String(value)
    }
}
