// The v1 wire format, shared by the API server, the agent and the `fastgpu` command-line tool:
// one definition of every request and reply body of `openapi.yaml`, so that the server and its
// clients cannot drift apart. No domain types here: the API maps between these structs and the
// control plane's values at its edge.
//
// Request bodies decode strictly: an unknown field (a typo, or a server-owned field such as
// `state`, `epoch` or `node`) is refused by name instead of being silently dropped, and `null` is
// refused instead of being read as "absent". Replies decode leniently, so that a newer server may
// add fields without breaking older clients.

package struct WireError: Error, CustomStringConvertible {
    package var description: String
    package init(description: String) { self.description = description }
}

package struct AnyKey: CodingKey {
    package var stringValue: String
    package var intValue: Int? { nil }
    package init?(stringValue: String) { self.stringValue = stringValue }
    package init?(intValue: Int) { nil }
}

extension Decoder {
    /// A keyed container that first refuses any key the type does not declare.
    package func strictContainer<Key: CodingKey & CaseIterable>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
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

package struct ResourcesBody: Codable, Sendable, Equatable {
    package var gpus: Int?
    package var gpuModel: String?
    package var gpuMemoryMiB: Int?
    package var gpuMilli: Int?
    package var mig: String?
    package var cpuMillis: Int?
    package var memoryMiB: Int?
    package var nodeSelector: [String: String]?

    package enum CodingKeys: String, CodingKey, CaseIterable { case gpus, gpuModel, gpuMemoryMiB, gpuMilli, mig, cpuMillis, memoryMiB, nodeSelector }

    package init(from decoder: any Decoder) throws {
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

    package init(gpus: Int? = nil, gpuModel: String? = nil, gpuMemoryMiB: Int? = nil, gpuMilli: Int? = nil, mig: String? = nil, cpuMillis: Int? = nil, memoryMiB: Int? = nil, nodeSelector: [String: String]? = nil) {
        self.gpus = gpus
        self.gpuModel = gpuModel
        self.gpuMemoryMiB = gpuMemoryMiB
        self.gpuMilli = gpuMilli
        self.mig = mig
        self.cpuMillis = cpuMillis
        self.memoryMiB = memoryMiB
        self.nodeSelector = nodeSelector
    }
}

package struct JobSubmissionBody: Codable, Sendable, Equatable {
    package var project: String
    package var name: String?
    package var command: [String]
    package var env: [String: String]?
    package var resources: ResourcesBody?
    package var tasks: Int?
    package var gang: Bool?
    package var placement: String?
    package var priority: String?
    package var spot: Bool?
    package var maxRuntimeSeconds: Int64?
    package var estimatedRuntimeSeconds: Int64?
    package var maxAttempts: Int?
    /// Secret environment values: stored encrypted, never returned, given only to the agent.
    package var secrets: [String: String]?
    /// Environment names taken from the project's secret store: env name → secret name.
    package var secretRefs: [String: String]?

    package enum CodingKeys: String, CodingKey, CaseIterable {
        case project, name, command, env, resources, tasks, gang, placement, priority, spot, maxRuntimeSeconds, estimatedRuntimeSeconds, maxAttempts, secrets, secretRefs
    }

    package init(from decoder: any Decoder) throws {
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
        secrets = try c.decodeIfPresent([String: String].self, forKey: .secrets)
        secretRefs = try c.decodeIfPresent([String: String].self, forKey: .secretRefs)
    }

    package init(project: String, name: String? = nil, command: [String], env: [String: String]? = nil, resources: ResourcesBody? = nil, tasks: Int? = nil, gang: Bool? = nil, placement: String? = nil, priority: String? = nil, spot: Bool? = nil, maxRuntimeSeconds: Int64? = nil, estimatedRuntimeSeconds: Int64? = nil, maxAttempts: Int? = nil,
                 secrets: [String: String]? = nil, secretRefs: [String: String]? = nil) {
        self.secrets = secrets
        self.secretRefs = secretRefs
        self.project = project
        self.name = name
        self.command = command
        self.env = env
        self.resources = resources
        self.tasks = tasks
        self.gang = gang
        self.placement = placement
        self.priority = priority
        self.spot = spot
        self.maxRuntimeSeconds = maxRuntimeSeconds
        self.estimatedRuntimeSeconds = estimatedRuntimeSeconds
        self.maxAttempts = maxAttempts
    }
}

package struct GPUBody: Codable, Sendable, Equatable {
    package var uuid: String?
    package var model: String
    /// 0 only for a GPU registered unhealthy (a lost GPU whose size the driver cannot read).
    package var memoryMiB: Int
    package var island: Int?
    package var migEnabled: Bool?
    /// Absent means healthy.
    package var healthy: Bool?
    package var healthReason: String?

    package enum CodingKeys: String, CodingKey, CaseIterable { case uuid, model, memoryMiB, island, migEnabled, healthy, healthReason }

    package init(from decoder: any Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        uuid = try c.decodeIfPresent(String.self, forKey: .uuid)
        model = try c.decode(String.self, forKey: .model)
        memoryMiB = try c.decode(Int.self, forKey: .memoryMiB)
        island = try c.decodeIfPresent(Int.self, forKey: .island)
        migEnabled = try c.decodeIfPresent(Bool.self, forKey: .migEnabled)
        healthy = try c.decodeIfPresent(Bool.self, forKey: .healthy)
        healthReason = try c.decodeIfPresent(String.self, forKey: .healthReason)
    }

    package init(uuid: String? = nil, model: String, memoryMiB: Int, island: Int? = nil, migEnabled: Bool? = nil, healthy: Bool? = nil, healthReason: String? = nil) {
        self.uuid = uuid
        self.model = model
        self.memoryMiB = memoryMiB
        self.island = island
        self.migEnabled = migEnabled
        self.healthy = healthy
        self.healthReason = healthReason
    }
}

package struct RegisterNodeBody: Codable, Sendable, Equatable {
    package var name: String
    package var cpuMillis: Int
    package var memoryMiB: Int
    package var labels: [String: String]?
    package var gpus: [GPUBody]

    package enum CodingKeys: String, CodingKey, CaseIterable { case name, cpuMillis, memoryMiB, labels, gpus }

    package init(from decoder: any Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        cpuMillis = try c.decode(Int.self, forKey: .cpuMillis)
        memoryMiB = try c.decode(Int.self, forKey: .memoryMiB)
        labels = try c.decodeIfPresent([String: String].self, forKey: .labels)
        gpus = try c.decode([GPUBody].self, forKey: .gpus)
    }

    package init(name: String, cpuMillis: Int, memoryMiB: Int, labels: [String: String]? = nil, gpus: [GPUBody]) {
        self.name = name
        self.cpuMillis = cpuMillis
        self.memoryMiB = memoryMiB
        self.labels = labels
        self.gpus = gpus
    }
}

package struct GPUHealthBody: Codable, Sendable, Equatable {
    package var index: Int
    package var healthy: Bool
    package var reason: String?
    /// Power draw now, in watts, as the driver reads it.
    package var powerWatts: Double?
    /// Energy used since the driver loaded, in millijoules (a counter: it only grows until a reload).
    package var energyMillijoules: Int64?

    package enum CodingKeys: String, CodingKey, CaseIterable { case index, healthy, reason, powerWatts, energyMillijoules }

    package init(from decoder: any Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        index = try c.decode(Int.self, forKey: .index)
        healthy = try c.decode(Bool.self, forKey: .healthy)
        reason = try c.decodeIfPresent(String.self, forKey: .reason)
        powerWatts = try c.decodeIfPresent(Double.self, forKey: .powerWatts)
        energyMillijoules = try c.decodeIfPresent(Int64.self, forKey: .energyMillijoules)
    }

    package init(index: Int, healthy: Bool, reason: String? = nil, powerWatts: Double? = nil, energyMillijoules: Int64? = nil) {
        self.index = index
        self.healthy = healthy
        self.reason = reason
        self.powerWatts = powerWatts
        self.energyMillijoules = energyMillijoules
    }
}

package struct RunningAllocationBody: Codable, Sendable, Equatable {
    package var allocation: UInt64
    package var epoch: UInt64

    package enum CodingKeys: String, CodingKey, CaseIterable { case allocation, epoch }

    package init(from decoder: any Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        allocation = try c.decode(UInt64.self, forKey: .allocation)
        epoch = try c.decode(UInt64.self, forKey: .epoch)
    }

    package init(allocation: UInt64, epoch: UInt64) {
        self.allocation = allocation
        self.epoch = epoch
    }
}

package struct HeartbeatBody: Codable, Sendable, Equatable {
    package var gpus: [GPUHealthBody]?
    package var running: [RunningAllocationBody]?
    /// The index of the last assignments the agent has acted on: `running` reflects every
    /// assignment change up to it.
    package var assignmentIndex: UInt64?

    package enum CodingKeys: String, CodingKey, CaseIterable { case gpus, running, assignmentIndex }

    package init(from decoder: any Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        gpus = try c.decodeIfPresent([GPUHealthBody].self, forKey: .gpus)
        running = try c.decodeIfPresent([RunningAllocationBody].self, forKey: .running)
        assignmentIndex = try c.decodeIfPresent(UInt64.self, forKey: .assignmentIndex)
    }

    package init(gpus: [GPUHealthBody]? = nil, running: [RunningAllocationBody]? = nil, assignmentIndex: UInt64? = nil) {
        self.gpus = gpus
        self.running = running
        self.assignmentIndex = assignmentIndex
    }
}

package struct AllocationStatusBody: Codable, Sendable, Equatable {
    package var epoch: UInt64
    package var state: String
    package var exitCode: Int32?

    package enum CodingKeys: String, CodingKey, CaseIterable { case epoch, state, exitCode }

    package init(from decoder: any Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        epoch = try c.decode(UInt64.self, forKey: .epoch)
        state = try c.decode(String.self, forKey: .state)
        exitCode = try c.decodeIfPresent(Int32.self, forKey: .exitCode)
    }

    package init(epoch: UInt64, state: String, exitCode: Int32? = nil) {
        self.epoch = epoch
        self.state = state
        self.exitCode = exitCode
    }
}

package struct LogChunkBody: Codable, Sendable, Equatable {
    package var sequence: Int64
    package var stream: String
    package var text: String

    package enum CodingKeys: String, CodingKey, CaseIterable { case sequence, stream, text }

    package init(from decoder: any Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        sequence = try c.decode(Int64.self, forKey: .sequence)
        stream = try c.decode(String.self, forKey: .stream)
        text = try c.decode(String.self, forKey: .text)
    }

    package init(sequence: Int64, stream: String, text: String) {
        self.sequence = sequence
        self.stream = stream
        self.text = text
    }
}

package struct LogUploadBody: Codable, Sendable, Equatable {
    package var chunks: [LogChunkBody]

    package enum CodingKeys: String, CodingKey, CaseIterable { case chunks }

    package init(from decoder: any Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        chunks = try c.decode([LogChunkBody].self, forKey: .chunks)
    }

    package init(chunks: [LogChunkBody]) {
        self.chunks = chunks
    }
}

package struct CreateProjectBody: Codable, Sendable, Equatable {
    package var name: String
    package var weight: Int?

    package enum CodingKeys: String, CodingKey, CaseIterable { case name, weight }

    package init(from decoder: any Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        weight = try c.decodeIfPresent(Int.self, forKey: .weight)
    }

    package init(name: String, weight: Int? = nil) {
        self.name = name
        self.weight = weight
    }
}

package struct MemberBody: Codable, Sendable, Equatable {
    package var role: String

    package enum CodingKeys: String, CodingKey, CaseIterable { case role }

    package init(from decoder: any Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        role = try c.decode(String.self, forKey: .role)
    }

    package init(role: String) {
        self.role = role
    }
}

package struct CreateTokenBody: Codable, Sendable, Equatable {
    package var name: String
    package var kind: String?
    package var subject: String?
    package var clusterAdmin: Bool?
    package var expiresInSeconds: Int64?

    package enum CodingKeys: String, CodingKey, CaseIterable { case name, kind, subject, clusterAdmin, expiresInSeconds }

    package init(from decoder: any Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        kind = try c.decodeIfPresent(String.self, forKey: .kind)
        subject = try c.decodeIfPresent(String.self, forKey: .subject)
        clusterAdmin = try c.decodeIfPresent(Bool.self, forKey: .clusterAdmin)
        expiresInSeconds = try c.decodeIfPresent(Int64.self, forKey: .expiresInSeconds)
    }

    package init(name: String, kind: String? = nil, subject: String? = nil, clusterAdmin: Bool? = nil, expiresInSeconds: Int64? = nil) {
        self.name = name
        self.kind = kind
        self.subject = subject
        self.clusterAdmin = clusterAdmin
        self.expiresInSeconds = expiresInSeconds
    }
}

// MARK: - Replies

package struct FreeFitWire: Codable, Sendable, Equatable {
    package var node: UInt64
    package var freeGPUs: Int
    package var gpuModel: String

    package init(node: UInt64, freeGPUs: Int, gpuModel: String) {
        self.node = node
        self.freeGPUs = freeGPUs
        self.gpuModel = gpuModel
    }
}

package struct ReasonWire: Codable, Sendable, Equatable {
    /// `notNow` (waiting can help) or `never` (change the request).
    package var kind: String
    /// What is short or impossible, for programs: `gpus`, `gpuShare`, `migSlots`, `cpu`, `memory`,
    /// `gangNodes`, `reservedFor`, `noReadyNode`, `backoff`; never: `unknownGPUModel`,
    /// `unknownMIGProfile`, `taskLargerThanAnyNode`, `noNodeFits`, `gangLargerThanCluster`, `invalidRequest`.
    package var code: String
    package var message: String
    package var jobsAhead: Int?
    package var largestFreeFit: FreeFitWire?

    package init(kind: String, code: String, message: String, jobsAhead: Int? = nil, largestFreeFit: FreeFitWire? = nil) {
        self.kind = kind
        self.code = code
        self.message = message
        self.jobsAhead = jobsAhead
        self.largestFreeFit = largestFreeFit
    }
}

package struct QueueWire: Codable, Sendable, Equatable {
    package var position: Int
    package var reason: ReasonWire?
    package var estimatedStart: String?

    package init(position: Int, reason: ReasonWire? = nil, estimatedStart: String? = nil) {
        self.position = position
        self.reason = reason
        self.estimatedStart = estimatedStart
    }
}

/// One device slot of an allocation, typed: the agent maps it to `CUDA_VISIBLE_DEVICES` without
/// parsing the display text in `devices`.
package struct DeviceSlotWire: Codable, Sendable, Equatable {
    package var gpu: Int
    /// `whole`, `share` or `mig`.
    package var kind: String
    /// A share's milli-GPUs and memory.
    package var milli: Int?
    package var memoryMiB: Int?
    /// A MIG instance's profile (`1g.10gb`) and first slot.
    package var profile: String?
    package var start: Int?

    package init(gpu: Int, kind: String, milli: Int? = nil, memoryMiB: Int? = nil, profile: String? = nil, start: Int? = nil) {
        self.gpu = gpu
        self.kind = kind
        self.milli = milli
        self.memoryMiB = memoryMiB
        self.profile = profile
        self.start = start
    }
}

package struct AllocationWire: Codable, Sendable, Equatable {
    package var id: UInt64
    package var node: UInt64
    package var taskGroup: Int
    package var taskIndex: Int
    /// For people: `gpu0`, `gpu3[500m,20480MiB]`, `gpu1/mig:1g.10gb@2`.
    package var devices: [String]
    /// The same devices, typed, for programs.
    package var slots: [DeviceSlotWire]?
    /// When its agent reported the workload running (`startedAt` is when it was placed).
    package var runningSince: String?
    package var cpuMillis: Int
    package var memoryMiB: Int
    package var epoch: UInt64
    package var live: Bool
    package var report: String
    package var outcome: String?
    package var exitCode: Int32?
    package var startedAt: String
    package var endedAt: String?

    package init(id: UInt64, node: UInt64, taskGroup: Int, taskIndex: Int, devices: [String], cpuMillis: Int, memoryMiB: Int, epoch: UInt64, live: Bool, report: String, outcome: String? = nil, exitCode: Int32? = nil, startedAt: String, endedAt: String? = nil,
                 slots: [DeviceSlotWire]? = nil, runningSince: String? = nil) {
        self.slots = slots
        self.runningSince = runningSince
        self.id = id
        self.node = node
        self.taskGroup = taskGroup
        self.taskIndex = taskIndex
        self.devices = devices
        self.cpuMillis = cpuMillis
        self.memoryMiB = memoryMiB
        self.epoch = epoch
        self.live = live
        self.report = report
        self.outcome = outcome
        self.exitCode = exitCode
        self.startedAt = startedAt
        self.endedAt = endedAt
    }
}

package struct JobWire: Codable, Sendable, Equatable {
    package var id: UInt64
    package var name: String
    package var project: String
    package var submitter: String
    package var state: String
    package var priority: String
    package var spot: Bool
    package var command: [String]
    package var env: [String: String]
    package var tasks: Int
    package var gang: Bool
    package var gpus: String
    package var gpuModel: String?
    package var cpuMillis: Int
    package var memoryMiB: Int
    package var maxRuntimeSeconds: Int64?
    package var estimatedRuntimeSeconds: Int64?
    package var maxAttempts: Int
    package var attempts: Int
    package var submittedAt: String
    package var finishedAt: String?
    package var allocations: [AllocationWire]
    package var queue: QueueWire?
    /// The names of the job's secret environment values; their values are never returned.
    package var secrets: [String]?

    package init(id: UInt64, name: String, project: String, submitter: String, state: String, priority: String, spot: Bool, command: [String], env: [String: String], tasks: Int, gang: Bool, gpus: String, gpuModel: String? = nil, cpuMillis: Int, memoryMiB: Int, maxRuntimeSeconds: Int64? = nil, estimatedRuntimeSeconds: Int64? = nil, maxAttempts: Int, attempts: Int, submittedAt: String, finishedAt: String? = nil, allocations: [AllocationWire], queue: QueueWire? = nil, secrets: [String]? = nil) {
        self.id = id
        self.secrets = secrets
        self.name = name
        self.project = project
        self.submitter = submitter
        self.state = state
        self.priority = priority
        self.spot = spot
        self.command = command
        self.env = env
        self.tasks = tasks
        self.gang = gang
        self.gpus = gpus
        self.gpuModel = gpuModel
        self.cpuMillis = cpuMillis
        self.memoryMiB = memoryMiB
        self.maxRuntimeSeconds = maxRuntimeSeconds
        self.estimatedRuntimeSeconds = estimatedRuntimeSeconds
        self.maxAttempts = maxAttempts
        self.attempts = attempts
        self.submittedAt = submittedAt
        self.finishedAt = finishedAt
        self.allocations = allocations
        self.queue = queue
    }
}

package struct JobListWire: Codable, Sendable, Equatable {
    package var items: [JobWire]
    package var next: String?

    package init(items: [JobWire], next: String? = nil) {
        self.items = items
        self.next = next
    }
}

package struct QueueItemWire: Codable, Sendable, Equatable {
    package var position: Int
    package var job: UInt64
    package var project: String
    package var name: String
    package var submitter: String
    package var reason: ReasonWire?
    package var estimatedStart: String?

    package init(position: Int, job: UInt64, project: String, name: String, submitter: String, reason: ReasonWire? = nil, estimatedStart: String? = nil) {
        self.position = position
        self.job = job
        self.project = project
        self.name = name
        self.submitter = submitter
        self.reason = reason
        self.estimatedStart = estimatedStart
    }
}

package struct QueueListWire: Codable, Sendable, Equatable {
    package var items: [QueueItemWire]

    package init(items: [QueueItemWire]) {
        self.items = items
    }
}

package struct EventWire: Codable, Sendable, Equatable {
    package var sequence: Int64
    package var time: String
    package var kind: String
    package var job: UInt64?
    package var node: UInt64?
    package var allocation: UInt64?
    package var message: String
    /// Who asked for what happened (a token's subject); absent for the control plane's own decisions.
    package var actor: String?

    package init(sequence: Int64, time: String, kind: String, job: UInt64? = nil, node: UInt64? = nil, allocation: UInt64? = nil, message: String,
                 actor: String? = nil) {
        self.actor = actor
        self.sequence = sequence
        self.time = time
        self.kind = kind
        self.job = job
        self.node = node
        self.allocation = allocation
        self.message = message
    }
}

package struct EventListWire: Codable, Sendable, Equatable {
    package var items: [EventWire]

    package init(items: [EventWire]) {
        self.items = items
    }
}

package struct LogLineWire: Codable, Sendable, Equatable {
    /// Pass as `after` to read what came later.
    package var position: Int64
    package var allocation: UInt64
    package var sequence: Int64
    package var stream: String
    package var time: String
    package var text: String

    package init(position: Int64, allocation: UInt64, sequence: Int64, stream: String, time: String, text: String) {
        self.position = position
        self.allocation = allocation
        self.sequence = sequence
        self.stream = stream
        self.time = time
        self.text = text
    }
}

package struct GPUWire: Codable, Sendable, Equatable {
    package var index: Int
    package var uuid: String
    package var model: String
    package var memoryMiB: Int
    package var healthy: Bool
    package var healthReason: String?
    package var migEnabled: Bool
    /// `free`, `whole`, `shared` or `mig`.
    package var usage: String
    package var freeMilli: Int
    /// NVLink island: GPUs of one node with the same number reach each other over NVLink.
    package var island: Int?
    /// As the agent last read them; absent where the driver does not report them.
    package var powerWatts: Double?
    package var energyJoules: Double?

    package init(index: Int, uuid: String, model: String, memoryMiB: Int, healthy: Bool, healthReason: String? = nil, migEnabled: Bool, usage: String, freeMilli: Int,
                 island: Int? = nil, powerWatts: Double? = nil, energyJoules: Double? = nil) {
        self.island = island
        self.powerWatts = powerWatts
        self.energyJoules = energyJoules
        self.index = index
        self.uuid = uuid
        self.model = model
        self.memoryMiB = memoryMiB
        self.healthy = healthy
        self.healthReason = healthReason
        self.migEnabled = migEnabled
        self.usage = usage
        self.freeMilli = freeMilli
    }
}

package struct NodeWire: Codable, Sendable, Equatable {
    package var id: UInt64
    package var name: String
    package var state: String
    package var cpuMillis: Int
    package var memoryMiB: Int
    package var allocatedCpuMillis: Int
    package var allocatedMemoryMiB: Int
    package var labels: [String: String]
    package var gpus: [GPUWire]
    package var allocations: [UInt64]
    package var registeredAt: String
    package var lastHeartbeatAt: String?

    package init(id: UInt64, name: String, state: String, cpuMillis: Int, memoryMiB: Int, allocatedCpuMillis: Int, allocatedMemoryMiB: Int, labels: [String: String], gpus: [GPUWire], allocations: [UInt64], registeredAt: String, lastHeartbeatAt: String? = nil) {
        self.id = id
        self.name = name
        self.state = state
        self.cpuMillis = cpuMillis
        self.memoryMiB = memoryMiB
        self.allocatedCpuMillis = allocatedCpuMillis
        self.allocatedMemoryMiB = allocatedMemoryMiB
        self.labels = labels
        self.gpus = gpus
        self.allocations = allocations
        self.registeredAt = registeredAt
        self.lastHeartbeatAt = lastHeartbeatAt
    }
}

package struct NodeListWire: Codable, Sendable, Equatable {
    package var items: [NodeWire]

    package init(items: [NodeWire]) {
        self.items = items
    }
}

package struct RegisteredNodeWire: Codable, Sendable, Equatable {
    package var node: NodeWire
    /// The node's own credential, shown once.
    package var token: String

    package init(node: NodeWire, token: String) {
        self.node = node
        self.token = token
    }
}

package struct HeartbeatWire: Codable, Sendable, Equatable {
    package var assignmentIndex: UInt64

    package init(assignmentIndex: UInt64) {
        self.assignmentIndex = assignmentIndex
    }
}

package struct AssignmentWire: Codable, Sendable, Equatable {
    package var allocation: AllocationWire
    package var job: UInt64
    package var jobName: String
    package var command: [String]
    package var env: [String: String]
    package var groupSize: Int
    package var rank: Int
    package var peers: [UInt64]
    package var maxRuntimeSeconds: Int64?
    package var gpuMemoryLimitMiB: Int?
    package var masterAddress: String?
    package var masterPort: Int?

    package init(allocation: AllocationWire, job: UInt64, jobName: String, command: [String], env: [String: String], groupSize: Int, rank: Int, peers: [UInt64], maxRuntimeSeconds: Int64? = nil, gpuMemoryLimitMiB: Int? = nil, masterAddress: String? = nil, masterPort: Int? = nil) {
        self.allocation = allocation
        self.job = job
        self.jobName = jobName
        self.command = command
        self.env = env
        self.groupSize = groupSize
        self.rank = rank
        self.peers = peers
        self.maxRuntimeSeconds = maxRuntimeSeconds
        self.gpuMemoryLimitMiB = gpuMemoryLimitMiB
        self.masterAddress = masterAddress
        self.masterPort = masterPort
    }
}

package struct AssignmentsWire: Codable, Sendable, Equatable {
    package var index: UInt64
    package var allocations: [AssignmentWire]

    package init(index: UInt64, allocations: [AssignmentWire]) {
        self.index = index
        self.allocations = allocations
    }
}

package struct MemberWire: Codable, Sendable, Equatable {
    package var subject: String
    package var role: String

    package init(subject: String, role: String) {
        self.subject = subject
        self.role = role
    }
}

package struct UsageWire: Codable, Sendable, Equatable {
    package var gpuSeconds: Int64
    package var cpuSeconds: Int64

    package init(gpuSeconds: Int64, cpuSeconds: Int64) {
        self.gpuSeconds = gpuSeconds
        self.cpuSeconds = cpuSeconds
    }
}

package struct ProjectWire: Codable, Sendable, Equatable {
    package var id: UInt64
    package var name: String
    package var weight: Int
    package var usage: UsageWire
    package var members: [MemberWire]
    package var createdAt: String
    /// The highest priority its members may submit with (`low`, `normal`, `high`).
    package var maxPriority: String?

    package init(id: UInt64, name: String, weight: Int, usage: UsageWire, members: [MemberWire], createdAt: String, maxPriority: String? = nil) {
        self.id = id
        self.name = name
        self.weight = weight
        self.usage = usage
        self.members = members
        self.createdAt = createdAt
        self.maxPriority = maxPriority
    }
}

/// `PATCH /v1/projects/{name}`: what a cluster admin changes of a project.
package struct UpdateProjectBody: Codable, Sendable, Equatable {
    package var weight: Int?
    package var maxPriority: String?

    package enum CodingKeys: String, CodingKey, CaseIterable { case weight, maxPriority }

    package init(from decoder: any Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        weight = try c.decodeIfPresent(Int.self, forKey: .weight)
        maxPriority = try c.decodeIfPresent(String.self, forKey: .maxPriority)
    }

    package init(weight: Int? = nil, maxPriority: String? = nil) {
        self.weight = weight
        self.maxPriority = maxPriority
    }
}

package struct ProjectListWire: Codable, Sendable, Equatable {
    package var items: [ProjectWire]

    package init(items: [ProjectWire]) {
        self.items = items
    }
}

package struct TokenWire: Codable, Sendable, Equatable {
    package var id: UInt64
    package var name: String
    package var kind: String
    package var subject: String
    package var clusterAdmin: Bool
    package var prefix: String
    package var createdAt: String
    package var expiresAt: String?
    package var revokedAt: String?
    /// Only in the answer that created the token.
    package var token: String?

    package init(id: UInt64, name: String, kind: String, subject: String, clusterAdmin: Bool, prefix: String, createdAt: String, expiresAt: String? = nil, revokedAt: String? = nil, token: String? = nil) {
        self.id = id
        self.name = name
        self.kind = kind
        self.subject = subject
        self.clusterAdmin = clusterAdmin
        self.prefix = prefix
        self.createdAt = createdAt
        self.expiresAt = expiresAt
        self.revokedAt = revokedAt
        self.token = token
    }
}

package struct TokenListWire: Codable, Sendable, Equatable {
    package var items: [TokenWire]

    package init(items: [TokenWire]) {
        self.items = items
    }
}

package struct ProblemWire: Codable, Sendable, Equatable {
    package var type: String
    package var title: String
    package var status: Int
    package var detail: String
    package var requestId: String

    package init(type: String, title: String, status: Int, detail: String, requestId: String) {
        self.type = type
        self.title = title
        self.status = status
        self.detail = detail
        self.requestId = requestId
    }
}


/// One audit record: who did what to which object, when, from where, and the outcome.
package struct AuditRecordWire: Codable, Sendable, Equatable {
    package var sequence: Int64
    package var time: String
    package var subject: String
    package var tokenId: UInt64?
    package var action: String
    package var target: String
    package var remoteAddress: String
    package var status: Int
    package var failure: String?
    package var requestId: String

    package init(sequence: Int64, time: String, subject: String, tokenId: UInt64?, action: String, target: String, remoteAddress: String,
                 status: Int, failure: String?, requestId: String) {
        self.sequence = sequence
        self.time = time
        self.subject = subject
        self.tokenId = tokenId
        self.action = action
        self.target = target
        self.remoteAddress = remoteAddress
        self.status = status
        self.failure = failure
        self.requestId = requestId
    }
}

package struct AuditListWire: Codable, Sendable, Equatable {
    package var items: [AuditRecordWire]
    /// Pass as `after` for the next page; absent on the last one.
    package var next: Int64?

    package init(items: [AuditRecordWire], next: Int64?) {
        self.items = items
        self.next = next
    }
}

/// `PUT /v1/projects/{name}/secrets/{secret}`: the value to store.
package struct SecretBody: Codable, Sendable, Equatable {
    package var value: String

    package enum CodingKeys: String, CodingKey, CaseIterable { case value }

    package init(from decoder: any Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        value = try c.decode(String.self, forKey: .value)
    }

    package init(value: String) { self.value = value }
}

/// A secret of a project's store as the API shows it: never its value.
package struct SecretWire: Codable, Sendable, Equatable {
    package var name: String
    package var updatedAt: String
    package var updatedBy: String

    package init(name: String, updatedAt: String, updatedBy: String) {
        self.name = name
        self.updatedAt = updatedAt
        self.updatedBy = updatedBy
    }
}

package struct SecretListWire: Codable, Sendable, Equatable {
    package var items: [SecretWire]

    package init(items: [SecretWire]) { self.items = items }
}
