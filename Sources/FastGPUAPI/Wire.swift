import FastGPUControlPlane
import FastGPUModel
import FastGPUStore
package import FastGPUWire
import Foundation

// The API's side of the v1 wire format (the structs themselves are in `FastGPUWire`): bounds on
// requests, and the mapping between wire values and the control plane's domain values.

// MARK: - Requests

/// Bounds on what a request may ask, far above any real machine, so that no arithmetic on them
/// (usage in MiB × ms, times in ms) can overflow.
enum Limits {
    static let cpuMillis = 100_000_000
    static let memoryMiB = 1 << 30
    static let gpusPerTask = 1024
    static let gpusPerNode = 64
    static let gpuMemoryMiB = 1 << 24
    static let seconds: Int64 = 315_360_000
    static let entries = 256
    /// The command and the environment together, in bytes: far above any real job's, far below
    /// what execve takes (2 MiB on Linux, 128 KiB for one string), so that every accepted job
    /// can start, and a queue of them fits in memory (`maxPendingJobsPerProject` × this).
    static let launchBytes = 64 * 1024
    static let commandArguments = 4096
}

// MARK: - Mapping

enum Wire {
    static func time(_ t: Timestamp) -> String { RFC3339.format(t) }

    /// What a queue entry's estimated start rests on; nil without one.
    static func startBasis(_ entry: QueueEntry) -> String? {
        entry.estimatedStart == nil ? nil : (entry.estimatedStartLearned ? "learned" : "given")
    }

    static func reason(_ reason: PendingReason?, now: Timestamp) -> ReasonWire? {
        guard let reason else { return nil }
        switch reason {
        case .never(let never):
            let code = switch never {
            case .unknownGPUModel: "unknownGPUModel"
            case .unknownMIGProfile: "unknownMIGProfile"
            case .taskLargerThanAnyNode: "taskLargerThanAnyNode"
            case .noNodeFits: "noNodeFits"
            case .gangLargerThanCluster: "gangLargerThanCluster"
            case .invalidRequest: "invalidRequest"
            }
            return ReasonWire(kind: "never", code: code, message: reason.explanation(now: now), jobsAhead: nil, largestFreeFit: nil)
        case .notNow(let shortfall, let fit, let ahead, _):
            let code = switch shortfall {
            case .gpus: "gpus"
            case .gpuShare: "gpuShare"
            case .migSlots: "migSlots"
            case .cpu: "cpu"
            case .memory: "memory"
            case .gangNodes: "gangNodes"
            case .reservedFor: "reservedFor"
            case .noReadyNode: "noReadyNode"
            case .backoff: "backoff"
            case .quotaExhausted: "quotaExhausted"
            case .cohortFenced: "cohortFenced"
            }
            return ReasonWire(kind: "notNow", code: code, message: reason.explanation(now: now), jobsAhead: ahead,
                              largestFreeFit: fit.map { FreeFitWire(node: $0.node.rawValue, freeGPUs: $0.freeGPUs, gpuModel: $0.gpuModel) })
        }
    }

    static func outcome(_ outcome: AllocationOutcome?) -> (String?, Int32?) {
        switch outcome {
        case nil: (nil, nil)
        case .succeeded?: ("succeeded", 0)
        case .failed(let code)?: ("failed", code)
        case .lost?: ("lost", nil)
        case .preempted?: ("preempted", nil)
        case .cancelled?: ("cancelled", nil)
        }
    }

    static func allocation(_ view: AllocationView) -> AllocationWire {
        let a = view.allocation
        let (outcome, code) = outcome(view.outcome)
        return AllocationWire(id: a.id.rawValue, node: a.node.rawValue, taskGroup: a.task.group, taskIndex: a.task.index,
                              devices: a.devices.map(\.description), cpuMillis: a.cpuMillis, memoryMiB: a.memoryMiB, epoch: a.epoch.rawValue,
                              live: view.live, report: view.report.rawValue, outcome: outcome, exitCode: code,
                              startedAt: time(a.startTime), endedAt: view.endedAt.map(time), slots: a.devices.map(slot),
                              runningSince: a.runningSince.map(time))
    }

    static func slot(_ device: DeviceAssignment) -> DeviceSlotWire {
        switch device {
        case .whole(let gpu): DeviceSlotWire(gpu: gpu, kind: "whole")
        case .share(let gpu, let milli, let memory): DeviceSlotWire(gpu: gpu, kind: "share", milli: milli, memoryMiB: memory)
        case .mig(let gpu, let profile, let start, _): DeviceSlotWire(gpu: gpu, kind: "mig", profile: profile, start: start)
        }
    }

    static func job(_ view: JobView, now: Timestamp) -> JobWire {
        let job = view.job
        let group = job.taskGroups[0]
        return JobWire(
            id: job.id.rawValue, name: job.name, project: view.projectName, submitter: job.submitter, state: job.state.rawValue,
            priority: job.priority.name, spot: job.spot, command: view.launch.command, env: view.launch.environment,
            tasks: group.count, gang: group.gang, gpus: group.resources.gpu.wireDescription, gpuModel: group.resources.gpuModel,
            cpuMillis: group.resources.cpuMillis, memoryMiB: group.resources.memoryMiB,
            maxRuntimeSeconds: job.runtimeLimit.map { $0.wholeMilliseconds / 1000 }, estimatedRuntimeSeconds: job.runtimeEstimate.map { $0.wholeMilliseconds / 1000 },
            maxAttempts: view.launch.maxAttempts, attempts: (job.attempts + group.count - 1) / max(1, group.count), submittedAt: time(job.submitTime), finishedAt: view.finishedAt.map(time),
            allocations: view.allocations.map(allocation),
            queue: view.queue.map { QueueWire(position: $0.position, reason: reason($0.reason, now: now), estimatedStart: $0.estimatedStart.map(time),
                                              estimatedStartBasis: startBasis($0)) },
            secrets: view.launch.sealedSecrets.isEmpty ? nil : view.launch.sealedSecrets.keys.sorted(),
            image: view.launch.image, network: view.launch.network?.rawValue,
            failure: job.outputUploadFailed ? "output_upload_failed" : nil,
            outputs: view.launch.outputs.isEmpty ? nil : view.launch.outputs.map(\.uri), minGpuMemoryMiB: group.resources.minGPUMemoryMiB,
            costMicros: view.costMicros)
    }

    static func secret(_ view: SecretView) -> SecretWire {
        SecretWire(name: view.name, updatedAt: time(view.updatedAt), updatedBy: view.updatedBy)
    }

    static func node(_ view: NodeView) -> NodeWire {
        let node = view.node
        return NodeWire(
            id: node.id.rawValue, name: node.name, state: node.state.rawValue, cpuMillis: node.cpuMillis, memoryMiB: node.memoryMiB,
            allocatedCpuMillis: node.allocatedCPUMillis, allocatedMemoryMiB: node.allocatedMemoryMiB, labels: node.labels,
            gpus: node.gpus.map { gpu in
                let usage: String
                switch gpu.usage {
                case .free: usage = "free"
                case .whole: usage = "whole"
                case .shared: usage = "shared"
                case .mig: usage = "mig"
                }
                var reason: String?
                if case .unhealthy(let why) = gpu.health { reason = why }
                let reading = view.telemetry[gpu.index]
                var wire = GPUWire(index: gpu.index, uuid: gpu.uuid, model: gpu.model, memoryMiB: gpu.memoryMiB, healthy: gpu.isHealthy, healthReason: reason,
                                   migEnabled: gpu.migEnabled, usage: usage, freeMilli: gpu.freeMilli, island: gpu.island,
                                   powerWatts: reading?.powerWatts, energyJoules: reading?.energyMillijoules.map { Double($0) / 1000 })
                wire.utilizationPercent = reading?.utilizationPercent
                wire.memoryUsedMiB = reading?.memoryUsedMiB
                wire.temperatureCelsius = reading?.temperatureCelsius
                wire.xidErrors = reading?.xidErrors
                wire.simulated = reading?.simulated == true ? true : nil
                wire.idleSince = view.idleSince[gpu.index].map(time)
                return wire
            },
            allocations: node.allocations.map(\.rawValue).sorted(), registeredAt: time(view.record.registeredAt), lastHeartbeatAt: view.lastHeartbeatAt.map(time))
    }

    static func project(_ view: ControlPlane.ProjectView) -> ProjectWire {
        ProjectWire(id: view.record.id.rawValue, name: view.record.name, weight: view.record.weight,
                    usage: UsageWire(gpuSeconds: view.record.usage.milliGPUMilliseconds / 1_000_000, cpuSeconds: view.record.usage.cpuMilliMilliseconds / 1_000_000),
                    members: view.members.map { MemberWire(subject: $0.subject, role: $0.role.rawValue) }, createdAt: time(view.record.createdAt),
                    maxPriority: view.record.maxPriority)
    }

    static func audit(_ record: AuditRecord) -> AuditRecordWire {
        AuditRecordWire(sequence: record.sequence ?? 0, time: time(record.time), subject: record.subject, tokenId: record.tokenID, action: record.action,
                        target: record.target, remoteAddress: record.remoteAddress, status: record.status, failure: record.failure, requestId: record.requestID)
    }

    static func token(_ view: ControlPlane.TokenView) -> TokenWire {
        let r = view.record
        return TokenWire(id: r.id, name: r.name, kind: r.kind.rawValue, subject: r.subject, clusterAdmin: r.clusterAdmin, prefix: r.displayPrefix,
                         createdAt: time(r.createdAt), expiresAt: r.expiresAt.map(time), revokedAt: r.revokedAt.map(time), token: view.secret)
    }

    static func event(_ e: EventRecord, names: EventNames = EventNames()) -> EventWire {
        EventWire(sequence: e.sequence ?? 0, time: time(e.time), kind: e.kind, job: e.jobID?.rawValue, node: e.nodeID?.rawValue,
                  allocation: e.allocationID?.rawValue, message: EventText.message(e.event, at: e.time, names: names), actor: e.actor)
    }
}

extension GPURequest {
    /// `none`, `2`, `share:500m:20480MiB`, `mig:1g.10gb`.
    var wireDescription: String {
        switch self {
        case .none: "none"
        case .whole(let count): "\(count)"
        case .share(let milli, let memory): "share:\(milli)m:\(memory)MiB"
        case .mig(let profile): "mig:\(profile)"
        }
    }
}

/// RFC 3339 UTC timestamps with milliseconds, without Foundation's formatters (this is on the
/// path of every read).
enum RFC3339 {
    static func format(_ t: Timestamp) -> String {
        let ms = t.millisecondsSinceEpoch
        var days = ms >= 0 ? ms / 86_400_000 : (ms - 86_399_999) / 86_400_000
        let msOfDay = ms - days * 86_400_000
        // Howard Hinnant's civil_from_days.
        days += 719_468
        let era = (days >= 0 ? days : days - 146_096) / 146_097
        let dayOfEra = days - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let mp = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        func pad(_ v: Int64, _ width: Int) -> String {
            let s = String(v)
            return s.count >= width ? s : String(repeating: "0", count: width - s.count) + s
        }
        return "\(pad(year, 4))-\(pad(month, 2))-\(pad(day, 2))T\(pad(msOfDay / 3_600_000, 2)):\(pad(msOfDay / 60_000 % 60, 2)):\(pad(msOfDay / 1000 % 60, 2)).\(pad(msOfDay % 1000, 3))Z"
    }
}

extension ResourcesBody {
    func taskResources() throws -> TaskResources {
        let kinds = [(gpus ?? 0) > 0, gpuMemoryMiB != nil || gpuMilli != nil, mig != nil].filter { $0 }.count
        guard kinds <= 1 else { throw WireError(description: "ask for whole GPUs (gpus), a share (gpuMemoryMiB, gpuMilli) or a MIG profile (mig), not several") }
        let gpu: GPURequest
        if let gpus, gpus != 0 {
            guard gpus > 0 else { throw WireError(description: "gpus must not be negative") }
            gpu = .whole(count: gpus)
        } else if gpuMemoryMiB != nil || gpuMilli != nil {
            let memory = gpuMemoryMiB ?? 0
            guard memory >= 0 else { throw WireError(description: "gpuMemoryMiB must not be negative") }
            let milli = gpuMilli ?? 500
            guard (1...999).contains(milli) else { throw WireError(description: "gpuMilli must be 1 to 999 (1000 is a whole GPU: ask gpus: 1)") }
            gpu = .share(milli: milli, memoryMiB: memory)
        } else if let mig {
            guard !mig.isEmpty else { throw WireError(description: "mig needs a profile such as 1g.10gb") }
            gpu = .mig(profile: mig)
        } else {
            gpu = .none
        }
        let cpu = cpuMillis ?? 1000, memory = memoryMiB ?? 1024
        guard (0...Limits.cpuMillis).contains(cpu), (0...Limits.memoryMiB).contains(memory) else {
            throw WireError(description: "cpuMillis must be 0 to \(Limits.cpuMillis) and memoryMiB 0 to \(Limits.memoryMiB)")
        }
        if let gpus, gpus > Limits.gpusPerTask { throw WireError(description: "gpus must be at most \(Limits.gpusPerTask)") }
        if let gpuMemoryMiB, gpuMemoryMiB > Limits.gpuMemoryMiB { throw WireError(description: "gpuMemoryMiB must be at most \(Limits.gpuMemoryMiB)") }
        if (nodeSelector?.count ?? 0) > Limits.entries { throw WireError(description: "nodeSelector has more than \(Limits.entries) entries") }
        if let gpuModel, gpuModel.isEmpty { throw WireError(description: "gpuModel must not be empty") }
        if let floor = minGpuMemoryMiB {
            guard case .whole = gpu else { throw WireError(description: "minGpuMemoryMiB goes with gpus (whole GPUs with at least that much memory each)") }
            guard (1...Limits.gpuMemoryMiB).contains(floor) else { throw WireError(description: "minGpuMemoryMiB must be 1 to \(Limits.gpuMemoryMiB)") }
        }
        return TaskResources(gpu: gpu, gpuModel: gpuModel, cpuMillis: cpu, memoryMiB: memory, nodeSelector: nodeSelector ?? [:], minGPUMemoryMiB: minGpuMemoryMiB)
    }
}

extension JobSubmissionBody {
    /// Checks that the job can be started as written: no NUL (execve cuts a string there),
    /// environment names a shell can read, and the whole launch within `Limits.launchBytes`.
    func checkLaunchSize() throws {
        guard command.count <= Limits.commandArguments, (env?.count ?? 0) + (secrets?.count ?? 0) + (secretRefs?.count ?? 0) <= Limits.entries else {
            throw WireError(description: "a job has at most \(Limits.commandArguments) command arguments and \(Limits.entries) env entries")
        }
        var bytes = 0
        for argument in command {
            guard !argument.utf8.contains(0) else { throw WireError(description: "a command argument holds a NUL byte") }
            bytes += argument.utf8.count + 1
        }
        for (name, value) in (env ?? [:]).merging(secrets ?? [:], uniquingKeysWith: { first, _ in first }).merging(secretRefs ?? [:], uniquingKeysWith: { first, _ in first }) {
            guard Self.isEnvironmentName(name) else {
                throw WireError(description: "env name \(name.utf8.count <= 64 ? name : String(name.prefix(32)) + "…") must be letters, digits, '_', '-' or '.', not starting with a digit, at most 256 bytes")
            }
            guard !value.utf8.contains(0) else { throw WireError(description: "env \(name) holds a NUL byte") }
            bytes += name.utf8.count + value.utf8.count + 2
        }
        guard bytes <= Limits.launchBytes else {
            throw WireError(description: "the command and env take \(bytes) bytes; at most \(Limits.launchBytes) (put large data in a file or an input)")
        }
    }

    /// An OCI image reference as `podman pull` takes it: `[registry[:port]/]path[:tag][@sha256:hex]`,
    /// lower-case path components, at most 255 bytes. Checked here so that a typo is a 400, not a
    /// job that fails on a node.
    func checkedImage() throws -> String? {
        guard let image else { return nil }
        let pattern = #"^([a-zA-Z0-9.-]+(:[0-9]{1,5})?/)?[a-z0-9]+([._-]+[a-z0-9]+)*(/[a-z0-9]+([._-]+[a-z0-9]+)*)*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?$"#
        // Letters or digits first (a leading '-' would be an option to podman); no line breaks
        // (the pattern's `$` would allow one at the end).
        guard image.utf8.count <= 255, image.first.map({ $0.isASCII && ($0.isLetter || $0.isNumber) }) == true,
              !image.contains(where: \.isNewline), image.range(of: pattern, options: .regularExpression) != nil else {
            throw WireError(description: "image must be an OCI image reference such as pytorch/pytorch:2.3.0-cuda12.1-cudnn8-runtime or registry.example.com:5000/team/train@sha256:…, at most 255 bytes")
        }
        return image
    }

    func checkedNetwork() throws -> NetworkMode? {
        guard let network else { return nil }
        guard let mode = NetworkMode(rawValue: network) else { throw WireError(description: "network must be none, isolated or host, not '\(network.prefix(32))'") }
        guard mode != .isolated || image != nil else {
            throw WireError(description: "network isolated needs an image: a host process runs with none or host")
        }
        return mode
    }

    /// Kubernetes' rule for an environment variable's name.
    static func isEnvironmentName(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard let first = bytes.first, bytes.count <= 256, !(first >= 0x30 && first <= 0x39) else { return false }
        return bytes.allSatisfy { ($0 >= 0x41 && $0 <= 0x5a) || ($0 >= 0x61 && $0 <= 0x7a) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x5f || $0 == 0x2d || $0 == 0x2e }
    }

    func submission() throws -> JobSubmission {
        guard !command.isEmpty, !command[0].isEmpty else { throw WireError(description: "command needs at least a program") }
        if let name, let why = InputText.problem(name, field: "name", maxBytes: 128) { throw WireError(description: why) }
        try checkLaunchSize()
        let tasks = self.tasks ?? 1
        guard (1...4096).contains(tasks) else { throw WireError(description: "tasks must be 1 to 4096") }
        let placement: PlacementPreference
        switch self.placement {
        case nil: placement = tasks > 1 ? .spread : .pack
        case let text?:
            guard let parsed = PlacementPreference(rawValue: text) else { throw WireError(description: "placement must be pack or spread, not \(text)") }
            placement = parsed
        }
        let priority: PriorityClass
        switch self.priority ?? "normal" {
        case "low": priority = .low
        case "normal": priority = .normal
        case "high": priority = .high
        case let other: throw WireError(description: "priority must be low, normal or high, not \(other)")
        }
        if let limit = maxRuntimeSeconds, limit <= 0 { throw WireError(description: "maxRuntimeSeconds must be positive") }
        if let estimate = estimatedRuntimeSeconds, estimate <= 0 { throw WireError(description: "estimatedRuntimeSeconds must be positive") }
        if max(maxRuntimeSeconds ?? 0, estimatedRuntimeSeconds ?? 0) > Limits.seconds {
            throw WireError(description: "runtimes must be at most \(Limits.seconds) seconds")
        }
        let attempts = maxAttempts ?? 3
        guard (1...100).contains(attempts) else { throw WireError(description: "maxAttempts must be 1 to 100") }
        guard (outputs?.count ?? 0) <= 16, (inputs?.count ?? 0) <= 16 else { throw WireError(description: "a job has at most 16 outputs and 16 inputs") }
        let outputRequests = try (outputs ?? []).map { output in
            guard let when = OutputWhen(rawValue: output.when ?? "always") else {
                throw WireError(description: "an output's when must be always, success or failure, not \((output.when ?? "").prefix(32))")
            }
            return JobSubmission.OutputRequest(path: output.path, to: output.to, when: when)
        }
        let group = TaskGroup(name: "main", count: tasks, resources: try (resources?.taskResources() ?? ResourcesBody().taskResources()),
                              gang: gang ?? (tasks > 1), placement: placement)
        return JobSubmission(project: project, name: name, taskGroups: [group], priority: priority, spot: spot ?? false,
                             runtimeEstimate: estimatedRuntimeSeconds.map { .seconds($0) }, runtimeLimit: maxRuntimeSeconds.map { .seconds($0) },
                             launch: JobLaunch(command: command, environment: env ?? [:], maxAttempts: attempts, image: try checkedImage(), network: try checkedNetwork()),
                             secrets: secrets ?? [:], secretRefs: secretRefs ?? [:], outputs: outputRequests,
                             inputs: (inputs ?? []).map { JobSubmission.InputRequest(from: $0.from, path: $0.path) })
    }
}
