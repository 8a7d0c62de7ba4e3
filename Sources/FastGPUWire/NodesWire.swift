// Nodes and their agents: registration, heartbeats, assignments, reports, log uploads (`/v1/nodes`).

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
    /// Utilisation over the driver's last sample period, 0–100.
    package var utilizationPercent: Int?
    package var memoryUsedMiB: Int?
    package var temperatureCelsius: Int?
    /// ECC errors since the driver loaded.
    package var eccCorrected: Int64?
    package var eccUncorrected: Int64?
    /// XID errors the kernel logged for this GPU since the agent started, and the last one's code.
    package var xidErrors: Int?
    package var lastXid: Int?
    /// The readings are made up by the agent (`--simulate-gpus`), not read from a driver.
    package var simulated: Bool?

    package enum CodingKeys: String, CodingKey, CaseIterable {
        case index, healthy, reason, powerWatts, energyMillijoules, utilizationPercent, memoryUsedMiB, temperatureCelsius, eccCorrected, eccUncorrected
        case xidErrors, lastXid, simulated
    }

    package init(from decoder: any Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        index = try c.decode(Int.self, forKey: .index)
        healthy = try c.decode(Bool.self, forKey: .healthy)
        reason = try c.decodeIfPresent(String.self, forKey: .reason)
        powerWatts = try c.decodeIfPresent(Double.self, forKey: .powerWatts)
        energyMillijoules = try c.decodeIfPresent(Int64.self, forKey: .energyMillijoules)
        utilizationPercent = try c.decodeIfPresent(Int.self, forKey: .utilizationPercent)
        memoryUsedMiB = try c.decodeIfPresent(Int.self, forKey: .memoryUsedMiB)
        temperatureCelsius = try c.decodeIfPresent(Int.self, forKey: .temperatureCelsius)
        eccCorrected = try c.decodeIfPresent(Int64.self, forKey: .eccCorrected)
        eccUncorrected = try c.decodeIfPresent(Int64.self, forKey: .eccUncorrected)
        xidErrors = try c.decodeIfPresent(Int.self, forKey: .xidErrors)
        lastXid = try c.decodeIfPresent(Int.self, forKey: .lastXid)
        simulated = try c.decodeIfPresent(Bool.self, forKey: .simulated)
    }

    package init(index: Int, healthy: Bool, reason: String? = nil, powerWatts: Double? = nil, energyMillijoules: Int64? = nil,
                 utilizationPercent: Int? = nil, memoryUsedMiB: Int? = nil, temperatureCelsius: Int? = nil, eccCorrected: Int64? = nil,
                 eccUncorrected: Int64? = nil, xidErrors: Int? = nil, lastXid: Int? = nil, simulated: Bool? = nil) {
        self.index = index
        self.healthy = healthy
        self.reason = reason
        self.powerWatts = powerWatts
        self.energyMillijoules = energyMillijoules
        self.utilizationPercent = utilizationPercent
        self.memoryUsedMiB = memoryUsedMiB
        self.temperatureCelsius = temperatureCelsius
        self.eccCorrected = eccCorrected
        self.eccUncorrected = eccUncorrected
        self.xidErrors = xidErrors
        self.lastXid = lastXid
        self.simulated = simulated
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
    package var utilizationPercent: Int?
    package var memoryUsedMiB: Int?
    package var temperatureCelsius: Int?
    package var xidErrors: Int?
    /// The readings come from a simulated GPU (`--simulate-gpus`).
    package var simulated: Bool?
    /// Held by an allocation but at 0 % utilisation since then (ISO 8601).
    package var idleSince: String?

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
    /// The job's project: its workloads run as that project's user on the node.
    package var project: UInt64?
    package var image: String?
    package var network: String?
    /// Set for a service's replica.
    package var replica: ReplicaAssignmentWire?
    /// Objects to download into the working directory before the command starts.
    package var inputs: [InputDownloadWire]?
    /// Steps to run in the allocation that this agent has not reported ended.
    package var steps: [StepAssignmentWire]?

    package init(allocation: AllocationWire, job: UInt64, jobName: String, command: [String], env: [String: String], groupSize: Int, rank: Int, peers: [UInt64], maxRuntimeSeconds: Int64? = nil, gpuMemoryLimitMiB: Int? = nil, masterAddress: String? = nil, masterPort: Int? = nil,
                 project: UInt64? = nil, image: String? = nil, network: String? = nil, replica: ReplicaAssignmentWire? = nil, inputs: [InputDownloadWire]? = nil, steps: [StepAssignmentWire]? = nil) {
        self.steps = steps
        self.replica = replica
        self.inputs = inputs
        self.project = project
        self.image = image
        self.network = network
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
    /// Outputs of this node's exited allocations to upload.
    package var uploads: [UploadAssignmentWire]?

    package init(index: UInt64, allocations: [AssignmentWire], uploads: [UploadAssignmentWire]? = nil) {
        self.index = index
        self.allocations = allocations
        self.uploads = uploads
    }
}

/// The outputs of one exited allocation, for its agent to upload.
package struct UploadAssignmentWire: Codable, Sendable, Equatable {
    package var allocation: UInt64
    package var job: UInt64
    /// Empty for a job of one task; `task-G.I/` under each output's prefix otherwise.
    package var taskDirectory: String
    /// Moves with each retry of the job's uploads.
    package var generation: Int
    package var outputs: [OutputUploadWire]

    package init(allocation: UInt64, job: UInt64, taskDirectory: String, generation: Int, outputs: [OutputUploadWire]) {
        self.allocation = allocation
        self.generation = generation
        self.job = job
        self.taskDirectory = taskDirectory
        self.outputs = outputs
    }
}

package struct OutputUploadWire: Codable, Sendable, Equatable {
    package var path: String
    package var uri: String
    package var keyPrefix: String
    package var backend: BackendAccessWire

    package init(path: String, uri: String, keyPrefix: String, backend: BackendAccessWire) {
        self.path = path
        self.uri = uri
        self.keyPrefix = keyPrefix
        self.backend = backend
    }
}

/// A backend as an agent reaches it: given only to the agent that uploads, never logged.
/// `endpoint` is empty for `local` (the control plane the agent talks to, at `/s3`).
package struct BackendAccessWire: Codable, Sendable, Equatable, CustomStringConvertible {
    package var name: String
    package var endpoint: String
    package var region: String
    package var bucket: String
    package var addressing: String
    package var accessKeyID: String
    package var secretAccessKey: String
    package var sessionToken: String?

    package init(name: String, endpoint: String, region: String, bucket: String, addressing: String, accessKeyID: String, secretAccessKey: String, sessionToken: String?) {
        self.name = name
        self.endpoint = endpoint
        self.region = region
        self.bucket = bucket
        self.addressing = addressing
        self.accessKeyID = accessKeyID
        self.secretAccessKey = secretAccessKey
        self.sessionToken = sessionToken
    }

    package var description: String { "backend \(name) (\(bucket) at \(endpoint.isEmpty ? "the control plane" : endpoint))" }
}

/// `POST /v1/nodes/{id}/allocations/{allocation}/outputs`: how the upload went.
package struct OutputsReportBody: Codable, Sendable, Equatable {
    package var uploaded: Bool
    package var error: String?
    package var files: Int?
    package var bytes: Int64?

    package enum CodingKeys: String, CodingKey, CaseIterable { case uploaded, error, files, bytes }

    package init(from decoder: any Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        uploaded = try c.decode(Bool.self, forKey: .uploaded)
        error = try c.decodeIfPresent(String.self, forKey: .error)
        files = try c.decodeIfPresent(Int.self, forKey: .files)
        bytes = try c.decodeIfPresent(Int64.self, forKey: .bytes)
    }

    package init(uploaded: Bool, error: String?, files: Int?, bytes: Int64?) {
        self.uploaded = uploaded
        self.error = error
        self.files = files
        self.bytes = bytes
    }
}
