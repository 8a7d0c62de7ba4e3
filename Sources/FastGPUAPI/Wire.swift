import FastGPUControlPlane
import FastGPUModel
import FastGPUStore
import Foundation

// The v1 wire format. Domain types are not wire types: these structs are the JSON of
// `openapi.yaml`, and the API maps between them and the control plane's values at the edge.
// Request bodies are strict: an unknown field (a typo, or a server-owned field such as `state`,
// `epoch` or `node`) is refused by name instead of being silently dropped.

struct WireError: Error, CustomStringConvertible {
    var description: String
}

struct AnyKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init?(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}

extension Decoder {
    /// A keyed container that first refuses any key the type does not declare.
    func strictContainer<Key: CodingKey & CaseIterable>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        let any = try container(keyedBy: AnyKey.self)
        let allowed = Set(Key.allCases.map(\.stringValue))
        if let unknown = any.allKeys.map(\.stringValue).sorted().first(where: { !allowed.contains($0) }) {
            let path = (codingPath.map(\.stringValue) + [unknown]).joined(separator: ".")
            throw WireError(description: "field '\(path)' is not accepted")
        }
        // null is not "absent": a field is either left out or given a value.
        if let null = try any.allKeys.sorted(by: { $0.stringValue < $1.stringValue }).first(where: { try any.decodeNil(forKey: $0) }) {
            let path = (codingPath.map(\.stringValue) + [null.stringValue]).joined(separator: ".")
            throw WireError(description: "field '\(path)' must not be null; leave it out instead")
        }
        return try container(keyedBy: type)
    }
}

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
}

struct ResourcesBody: Decodable {
    var gpus: Int?
    var gpuModel: String?
    var gpuMemoryMiB: Int?
    var gpuMilli: Int?
    var mig: String?
    var cpuMillis: Int?
    var memoryMiB: Int?
    var nodeSelector: [String: String]?

    enum CodingKeys: String, CodingKey, CaseIterable { case gpus, gpuModel, gpuMemoryMiB, gpuMilli, mig, cpuMillis, memoryMiB, nodeSelector }

    init(from decoder: any Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        gpus = try c.decodeIfPresent(Int.self, forKey: .gpus)
        gpuModel = try c.decodeIfPresent(String.self, forKey: .gpuModel)
        gpuMemoryMiB = try c.decodeIfPresent(Int.self, forKey: .gpuMemoryMiB)
        gpuMilli = try c.decodeIfPresent(Int.self, forKey: .gpuMilli)
        mig = try c.decodeIfPresent(String.self, forKey: .mig)
        cpuMillis = try c.decodeIfPresent(Int.self, forKey: .cpuMillis)
        memoryMiB = try c.decodeIfPresent(Int.self, forKey: .memoryMiB)
        nodeSelector = try c.decodeIfPresent([String: String].self, forKey: .nodeSelector)
    }

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
        return TaskResources(gpu: gpu, gpuModel: gpuModel, cpuMillis: cpu, memoryMiB: memory, nodeSelector: nodeSelector ?? [:])
    }
}

struct JobSubmissionBody: Decodable {
    var project: String
    var name: String?
    var command: [String]
    var env: [String: String]?
    var resources: ResourcesBody?
    var tasks: Int?
    var gang: Bool?
    var placement: String?
    var priority: String?
    var spot: Bool?
    var maxRuntimeSeconds: Int64?
    var estimatedRuntimeSeconds: Int64?
    var maxAttempts: Int?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case project, name, command, env, resources, tasks, gang, placement, priority, spot, maxRuntimeSeconds, estimatedRuntimeSeconds, maxAttempts
    }

    init(from decoder: any Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        project = try c.decode(String.self, forKey: .project)
        name = try c.decodeIfPresent(String.self, forKey: .name)
        command = try c.decode([String].self, forKey: .command)
        env = try c.decodeIfPresent([String: String].self, forKey: .env)
        resources = try c.decodeIfPresent(ResourcesBody.self, forKey: .resources)
        tasks = try c.decodeIfPresent(Int.self, forKey: .tasks)
        gang = try c.decodeIfPresent(Bool.self, forKey: .gang)
        placement = try c.decodeIfPresent(String.self, forKey: .placement)
        priority = try c.decodeIfPresent(String.self, forKey: .priority)
        spot = try c.decodeIfPresent(Bool.self, forKey: .spot)
        maxRuntimeSeconds = try c.decodeIfPresent(Int64.self, forKey: .maxRuntimeSeconds)
        estimatedRuntimeSeconds = try c.decodeIfPresent(Int64.self, forKey: .estimatedRuntimeSeconds)
        maxAttempts = try c.decodeIfPresent(Int.self, forKey: .maxAttempts)
    }

    func submission() throws -> JobSubmission {
        guard !command.isEmpty, !command[0].isEmpty else { throw WireError(description: "command needs at least a program") }
        if let name, name.count > 128 { throw WireError(description: "name is longer than 128 characters") }
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
        if (env?.count ?? 0) > Limits.entries || command.count > 4096 { throw WireError(description: "too many env entries or command arguments") }
        let attempts = maxAttempts ?? 3
        guard (1...100).contains(attempts) else { throw WireError(description: "maxAttempts must be 1 to 100") }
        let group = TaskGroup(name: "main", count: tasks, resources: try (resources?.taskResources() ?? ResourcesBody.empty.taskResources()),
                              gang: gang ?? (tasks > 1), placement: placement)
        return JobSubmission(project: project, name: name, taskGroups: [group], priority: priority, spot: spot ?? false,
                             runtimeEstimate: estimatedRuntimeSeconds.map { .seconds($0) }, runtimeLimit: maxRuntimeSeconds.map { .seconds($0) },
                             launch: JobLaunch(command: command, environment: env ?? [:], maxAttempts: attempts))
    }
}

extension ResourcesBody {
    static var empty: ResourcesBody { try! JSONDecoder().decode(ResourcesBody.self, from: Data("{}".utf8)) }
}

struct GPUBody: Decodable {
    var uuid: String?
    var model: String
    var memoryMiB: Int
    var island: Int?
    var migEnabled: Bool?

    enum CodingKeys: String, CodingKey, CaseIterable { case uuid, model, memoryMiB, island, migEnabled }

    init(from decoder: any Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        uuid = try c.decodeIfPresent(String.self, forKey: .uuid)
        model = try c.decode(String.self, forKey: .model)
        memoryMiB = try c.decode(Int.self, forKey: .memoryMiB)
        island = try c.decodeIfPresent(Int.self, forKey: .island)
        migEnabled = try c.decodeIfPresent(Bool.self, forKey: .migEnabled)
    }
}

struct RegisterNodeBody: Decodable {
    var name: String
    var cpuMillis: Int
    var memoryMiB: Int
    var labels: [String: String]?
    var gpus: [GPUBody]

    enum CodingKeys: String, CodingKey, CaseIterable { case name, cpuMillis, memoryMiB, labels, gpus }

    init(from decoder: any Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        cpuMillis = try c.decode(Int.self, forKey: .cpuMillis)
        memoryMiB = try c.decode(Int.self, forKey: .memoryMiB)
        labels = try c.decodeIfPresent([String: String].self, forKey: .labels)
        gpus = try c.decode([GPUBody].self, forKey: .gpus)
    }
}

struct GPUHealthBody: Decodable {
    var index: Int
    var healthy: Bool
    var reason: String?

    enum CodingKeys: String, CodingKey, CaseIterable { case index, healthy, reason }

    init(from decoder: any Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        index = try c.decode(Int.self, forKey: .index)
        healthy = try c.decode(Bool.self, forKey: .healthy)
        reason = try c.decodeIfPresent(String.self, forKey: .reason)
    }
}

struct RunningAllocationBody: Decodable {
    var allocation: UInt64
    var epoch: UInt64

    enum CodingKeys: String, CodingKey, CaseIterable { case allocation, epoch }

    init(from decoder: any Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        allocation = try c.decode(UInt64.self, forKey: .allocation)
        epoch = try c.decode(UInt64.self, forKey: .epoch)
    }
}

struct HeartbeatBody: Decodable {
    var gpus: [GPUHealthBody]?
    var running: [RunningAllocationBody]?

    enum CodingKeys: String, CodingKey, CaseIterable { case gpus, running }

    init(from decoder: any Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        gpus = try c.decodeIfPresent([GPUHealthBody].self, forKey: .gpus)
        running = try c.decodeIfPresent([RunningAllocationBody].self, forKey: .running)
    }
}

struct AllocationStatusBody: Decodable {
    var epoch: UInt64
    var state: String
    var exitCode: Int32?

    enum CodingKeys: String, CodingKey, CaseIterable { case epoch, state, exitCode }

    init(from decoder: any Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        epoch = try c.decode(UInt64.self, forKey: .epoch)
        state = try c.decode(String.self, forKey: .state)
        exitCode = try c.decodeIfPresent(Int32.self, forKey: .exitCode)
    }
}

struct LogChunkBody: Decodable {
    var sequence: Int64
    var stream: String
    var text: String

    enum CodingKeys: String, CodingKey, CaseIterable { case sequence, stream, text }

    init(from decoder: any Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        sequence = try c.decode(Int64.self, forKey: .sequence)
        stream = try c.decode(String.self, forKey: .stream)
        text = try c.decode(String.self, forKey: .text)
    }
}

struct LogUploadBody: Decodable {
    var chunks: [LogChunkBody]

    enum CodingKeys: String, CodingKey, CaseIterable { case chunks }

    init(from decoder: any Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        chunks = try c.decode([LogChunkBody].self, forKey: .chunks)
    }
}

struct CreateProjectBody: Decodable {
    var name: String
    var weight: Int?

    enum CodingKeys: String, CodingKey, CaseIterable { case name, weight }

    init(from decoder: any Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        weight = try c.decodeIfPresent(Int.self, forKey: .weight)
    }
}

struct MemberBody: Decodable {
    var role: String

    enum CodingKeys: String, CodingKey, CaseIterable { case role }

    init(from decoder: any Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        role = try c.decode(String.self, forKey: .role)
    }
}

struct CreateTokenBody: Decodable {
    var name: String
    var kind: String?
    var subject: String?
    var clusterAdmin: Bool?
    var expiresInSeconds: Int64?

    enum CodingKeys: String, CodingKey, CaseIterable { case name, kind, subject, clusterAdmin, expiresInSeconds }

    init(from decoder: any Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        kind = try c.decodeIfPresent(String.self, forKey: .kind)
        subject = try c.decodeIfPresent(String.self, forKey: .subject)
        clusterAdmin = try c.decodeIfPresent(Bool.self, forKey: .clusterAdmin)
        expiresInSeconds = try c.decodeIfPresent(Int64.self, forKey: .expiresInSeconds)
    }
}

// MARK: - Responses

struct FreeFitWire: Encodable {
    var node: UInt64
    var freeGPUs: Int
    var gpuModel: String
}

struct ReasonWire: Encodable {
    /// `notNow` (waiting can help) or `never` (change the request).
    var kind: String
    /// What is short or impossible, for programs: `gpus`, `gpuShare`, `migSlots`, `cpu`, `memory`,
    /// `gangNodes`, `reservedFor`, `noReadyNode`, `backoff`; never: `unknownGPUModel`,
    /// `unknownMIGProfile`, `taskLargerThanAnyNode`, `noNodeFits`, `gangLargerThanCluster`, `invalidRequest`.
    var code: String
    var message: String
    var jobsAhead: Int?
    var largestFreeFit: FreeFitWire?
}

struct QueueWire: Encodable {
    var position: Int
    var reason: ReasonWire?
    var estimatedStart: String?
}

struct AllocationWire: Encodable {
    var id: UInt64
    var node: UInt64
    var taskGroup: Int
    var taskIndex: Int
    var devices: [String]
    var cpuMillis: Int
    var memoryMiB: Int
    var epoch: UInt64
    var live: Bool
    var report: String
    var outcome: String?
    var exitCode: Int32?
    var startedAt: String
    var endedAt: String?
}

struct JobWire: Encodable {
    var id: UInt64
    var name: String
    var project: String
    var submitter: String
    var state: String
    var priority: String
    var spot: Bool
    var command: [String]
    var env: [String: String]
    var tasks: Int
    var gang: Bool
    var gpus: String
    var gpuModel: String?
    var cpuMillis: Int
    var memoryMiB: Int
    var maxRuntimeSeconds: Int64?
    var estimatedRuntimeSeconds: Int64?
    var maxAttempts: Int
    var attempts: Int
    var submittedAt: String
    var finishedAt: String?
    var allocations: [AllocationWire]
    var queue: QueueWire?
}

struct JobListWire: Encodable {
    var items: [JobWire]
    var next: String?
}

struct QueueItemWire: Encodable {
    var position: Int
    var job: UInt64
    var project: String
    var name: String
    var submitter: String
    var reason: ReasonWire?
    var estimatedStart: String?
}

struct QueueListWire: Encodable {
    var items: [QueueItemWire]
}

struct EventWire: Encodable {
    var sequence: Int64
    var time: String
    var kind: String
    var job: UInt64?
    var node: UInt64?
    var allocation: UInt64?
    var message: String
}

struct EventListWire: Encodable {
    var items: [EventWire]
}

struct LogLineWire: Encodable {
    /// Pass as `after` to read what came later.
    var position: Int64
    var allocation: UInt64
    var sequence: Int64
    var stream: String
    var time: String
    var text: String
}

struct GPUWire: Encodable {
    var index: Int
    var uuid: String
    var model: String
    var memoryMiB: Int
    var healthy: Bool
    var healthReason: String?
    var migEnabled: Bool
    /// `free`, `whole`, `shared` or `mig`.
    var usage: String
    var freeMilli: Int
}

struct NodeWire: Encodable {
    var id: UInt64
    var name: String
    var state: String
    var cpuMillis: Int
    var memoryMiB: Int
    var allocatedCpuMillis: Int
    var allocatedMemoryMiB: Int
    var labels: [String: String]
    var gpus: [GPUWire]
    var allocations: [UInt64]
    var registeredAt: String
    var lastHeartbeatAt: String?
}

struct NodeListWire: Encodable {
    var items: [NodeWire]
}

struct RegisteredNodeWire: Encodable {
    var node: NodeWire
    /// The node's own credential, shown once.
    var token: String
}

struct HeartbeatWire: Encodable {
    var assignmentIndex: UInt64
}

struct AssignmentWire: Encodable {
    var allocation: AllocationWire
    var job: UInt64
    var jobName: String
    var command: [String]
    var env: [String: String]
    var groupSize: Int
    var rank: Int
    var peers: [UInt64]
    var maxRuntimeSeconds: Int64?
    var gpuMemoryLimitMiB: Int?
    var masterAddress: String?
    var masterPort: Int?
}

struct AssignmentsWire: Encodable {
    var index: UInt64
    var allocations: [AssignmentWire]
}

struct MemberWire: Encodable {
    var subject: String
    var role: String
}

struct UsageWire: Encodable {
    var gpuSeconds: Int64
    var cpuSeconds: Int64
}

struct ProjectWire: Encodable {
    var id: UInt64
    var name: String
    var weight: Int
    var usage: UsageWire
    var members: [MemberWire]
    var createdAt: String
}

struct ProjectListWire: Encodable {
    var items: [ProjectWire]
}

struct TokenWire: Encodable {
    var id: UInt64
    var name: String
    var kind: String
    var subject: String
    var clusterAdmin: Bool
    var prefix: String
    var createdAt: String
    var expiresAt: String?
    var revokedAt: String?
    /// Only in the answer that created the token.
    var token: String?
}

struct TokenListWire: Encodable {
    var items: [TokenWire]
}

struct ProblemWire: Encodable {
    var type: String
    var title: String
    var status: Int
    var detail: String
    var requestId: String
}

// MARK: - Mapping

enum Wire {
    static func time(_ t: Timestamp) -> String { RFC3339.format(t) }

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
                              startedAt: time(a.startTime), endedAt: view.endedAt.map(time))
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
            maxAttempts: view.launch.maxAttempts, attempts: job.attempts, submittedAt: time(job.submitTime), finishedAt: view.finishedAt.map(time),
            allocations: view.allocations.map(allocation),
            queue: view.queue.map { QueueWire(position: $0.position, reason: reason($0.reason, now: now), estimatedStart: $0.estimatedStart.map(time)) })
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
                return GPUWire(index: gpu.index, uuid: gpu.uuid, model: gpu.model, memoryMiB: gpu.memoryMiB, healthy: gpu.isHealthy, healthReason: reason,
                               migEnabled: gpu.migEnabled, usage: usage, freeMilli: gpu.freeMilli)
            },
            allocations: node.allocations.map(\.rawValue).sorted(), registeredAt: time(view.record.registeredAt), lastHeartbeatAt: view.lastHeartbeatAt.map(time))
    }

    static func project(_ view: ControlPlane.ProjectView) -> ProjectWire {
        ProjectWire(id: view.record.id.rawValue, name: view.record.name, weight: view.record.weight,
                    usage: UsageWire(gpuSeconds: view.record.usage.milliGPUMilliseconds / 1_000_000, cpuSeconds: view.record.usage.cpuMilliMilliseconds / 1_000_000),
                    members: view.members.map { MemberWire(subject: $0.subject, role: $0.role.rawValue) }, createdAt: time(view.record.createdAt))
    }

    static func token(_ view: ControlPlane.TokenView) -> TokenWire {
        let r = view.record
        return TokenWire(id: r.id, name: r.name, kind: r.kind.rawValue, subject: r.subject, clusterAdmin: r.clusterAdmin, prefix: r.displayPrefix,
                         createdAt: time(r.createdAt), expiresAt: r.expiresAt.map(time), revokedAt: r.revokedAt.map(time), token: view.secret)
    }

    static func event(_ e: EventRecord) -> EventWire {
        EventWire(sequence: e.sequence ?? 0, time: time(e.time), kind: e.kind, job: e.jobID?.rawValue, node: e.nodeID?.rawValue,
                  allocation: e.allocationID?.rawValue, message: e.message)
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
