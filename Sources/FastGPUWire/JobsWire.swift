// Jobs, their allocations, the queue, events and log lines (`/v1/jobs`, `/v1/queue`).

package struct ResourcesBody: Codable, Sendable, Equatable {
    package var gpus: Int?
    package var gpuModel: String?
    package var gpuMemoryMiB: Int?
    package var gpuMilli: Int?
    package var mig: String?
    package var cpuMillis: Int?
    package var memoryMiB: Int?
    package var nodeSelector: [String: String]?
    /// With `gpus`: each GPU has at least this much memory (dstack's `24GB:2`).
    package var minGpuMemoryMiB: Int?

    package enum CodingKeys: String, CodingKey, CaseIterable { case gpus, gpuModel, gpuMemoryMiB, gpuMilli, mig, cpuMillis, memoryMiB, nodeSelector, minGpuMemoryMiB }

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
        minGpuMemoryMiB = try c.decodeIfPresent(Int.self, forKey: .minGpuMemoryMiB)
    }

    package init(gpus: Int? = nil, gpuModel: String? = nil, gpuMemoryMiB: Int? = nil, gpuMilli: Int? = nil, mig: String? = nil, cpuMillis: Int? = nil, memoryMiB: Int? = nil, nodeSelector: [String: String]? = nil, minGpuMemoryMiB: Int? = nil) {
        self.minGpuMemoryMiB = minGpuMemoryMiB
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
    /// An OCI image reference; nil: a host process.
    package var image: String?
    /// none, isolated or host.
    package var network: String?
    /// Directories uploaded to a bucket after the process exits.
    package var outputs: [OutputBody]?
    /// Objects downloaded into the working directory before the command starts.
    package var inputs: [InputBody]?

    package enum CodingKeys: String, CodingKey, CaseIterable {
        case project, name, command, env, resources, tasks, gang, placement, priority, spot, maxRuntimeSeconds, estimatedRuntimeSeconds, maxAttempts, secrets, secretRefs, image, network, outputs, inputs
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
        image = try c.decodeIfPresent(String.self, forKey: .image)
        network = try c.decodeIfPresent(String.self, forKey: .network)
        outputs = try c.decodeIfPresent([OutputBody].self, forKey: .outputs)
        inputs = try c.decodeIfPresent([InputBody].self, forKey: .inputs)
    }

    package init(project: String, name: String? = nil, command: [String], env: [String: String]? = nil, resources: ResourcesBody? = nil, tasks: Int? = nil, gang: Bool? = nil, placement: String? = nil, priority: String? = nil, spot: Bool? = nil, maxRuntimeSeconds: Int64? = nil, estimatedRuntimeSeconds: Int64? = nil, maxAttempts: Int? = nil,
                 secrets: [String: String]? = nil, secretRefs: [String: String]? = nil, image: String? = nil, network: String? = nil, outputs: [OutputBody]? = nil, inputs: [InputBody]? = nil) {
        self.outputs = outputs
        self.inputs = inputs
        self.image = image
        self.network = network
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
    /// What the estimate rests on: `learned` (run times learned from finished jobs, where users
    /// gave none) or `given` (users' estimates and limits and the policy's rules only). Absent without an estimate.
    package var estimatedStartBasis: String?

    package init(position: Int, reason: ReasonWire? = nil, estimatedStart: String? = nil, estimatedStartBasis: String? = nil) {
        self.position = position
        self.reason = reason
        self.estimatedStart = estimatedStart
        self.estimatedStartBasis = estimatedStartBasis
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
    package var image: String?
    package var network: String?
    /// `output_upload_failed` for a job that failed because its outputs could not be uploaded.
    package var failure: String?
    /// Where its outputs go.
    package var outputs: [String]?
    /// Each whole GPU has at least this much memory.
    package var minGpuMemoryMiB: Int?
    /// What it was charged so far, in micro-units of the currency (live while it runs).
    package var costMicros: Int64?

    package init(id: UInt64, name: String, project: String, submitter: String, state: String, priority: String, spot: Bool, command: [String], env: [String: String], tasks: Int, gang: Bool, gpus: String, gpuModel: String? = nil, cpuMillis: Int, memoryMiB: Int, maxRuntimeSeconds: Int64? = nil, estimatedRuntimeSeconds: Int64? = nil, maxAttempts: Int, attempts: Int, submittedAt: String, finishedAt: String? = nil, allocations: [AllocationWire], queue: QueueWire? = nil, secrets: [String]? = nil,
                 image: String? = nil, network: String? = nil, failure: String? = nil, outputs: [String]? = nil, minGpuMemoryMiB: Int? = nil, costMicros: Int64? = nil) {
        self.minGpuMemoryMiB = minGpuMemoryMiB
        self.costMicros = costMicros
        self.id = id
        self.failure = failure
        self.outputs = outputs
        self.image = image
        self.network = network
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
    /// `learned` or `given`, as in `QueueWire`.
    package var estimatedStartBasis: String?

    package init(position: Int, job: UInt64, project: String, name: String, submitter: String, reason: ReasonWire? = nil, estimatedStart: String? = nil,
                 estimatedStartBasis: String? = nil) {
        self.position = position
        self.job = job
        self.project = project
        self.name = name
        self.submitter = submitter
        self.reason = reason
        self.estimatedStart = estimatedStart
        self.estimatedStartBasis = estimatedStartBasis
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
