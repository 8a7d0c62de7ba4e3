/// A long-running model server: replicas behind the gateway, scaled by load, changed by revisions.
///
/// The spec is what a user wrote; every change to it makes a new revision. Replicas are jobs of
/// one task each (the scheduler places them like any task), tagged with `ReplicaLaunch`.
public struct ServiceSpec: Hashable, Sendable, Codable {
    public var command: [String]
    public var image: String?
    public var environment: [String: String]
    /// Per replica: whole GPUs, a share of one, or a MIG profile.
    public var resources: TaskResources
    /// The port a container replica listens on (published to the port the agent gives it);
    /// nil: the replica listens on `$PORT`.
    public var port: Int?
    public var replicas: ReplicaRange
    public var readiness: ReadinessProbe
    public var autoscaling: AutoscalingSpec
    public var priority: PriorityClass
    /// Anyone may call it through the gateway, without a token.
    public var isPublic: Bool
    /// Requests one replica serves at once; the gateway sends no more (0: no cap).
    public var concurrencyLimit: Int
    /// How long the gateway waits for a replica's answer (and holds a request at zero replicas).
    public var requestTimeout: Duration
    /// Objects each replica downloads before it starts (its model file, say); resolved under
    /// the project's prefix when the service is created or changed. Nil in records written before.
    public var inputs: [InputSource]?

    public init(command: [String], image: String? = nil, environment: [String: String] = [:], resources: TaskResources, port: Int? = nil,
                replicas: ReplicaRange = ReplicaRange(min: 1, max: 1), readiness: ReadinessProbe = ReadinessProbe(),
                autoscaling: AutoscalingSpec = AutoscalingSpec(), priority: PriorityClass = .service, isPublic: Bool = false,
                concurrencyLimit: Int = 0, requestTimeout: Duration = .seconds(60), inputs: [InputSource]? = nil) {
        self.inputs = inputs
        self.command = command
        self.image = image
        self.environment = environment
        self.resources = resources
        self.port = port
        self.replicas = replicas
        self.readiness = readiness
        self.autoscaling = autoscaling
        self.priority = priority
        self.isPublic = isPublic
        self.concurrencyLimit = concurrencyLimit
        self.requestTimeout = requestTimeout
    }

    /// What is wrong with the spec, field by field (the first problem names its field: `replicas.min`).
    public var problems: [SpecProblem] {
        var found: [SpecProblem] = []
        if command.isEmpty || command[0].isEmpty { found.append(SpecProblem("command", "needs at least a program")) }
        if let port, !(1...65535).contains(port) { found.append(SpecProblem("port", "must be 1 to 65535, not \(port)")) }
        if replicas.min < 0 { found.append(SpecProblem("replicas.min", "must be 0 or more, not \(replicas.min)")) }
        if replicas.max < 1 || replicas.max > ServiceSpec.maxReplicas {
            found.append(SpecProblem("replicas.max", "must be 1 to \(ServiceSpec.maxReplicas), not \(replicas.max)"))
        }
        if replicas.min > replicas.max { found.append(SpecProblem("replicas.min", "(\(replicas.min)) must not exceed replicas.max (\(replicas.max))")) }
        found.append(contentsOf: readiness.problems)
        found.append(contentsOf: autoscaling.problems)
        if concurrencyLimit < 0 || concurrencyLimit > 100_000 { found.append(SpecProblem("concurrencyLimit", "must be 0 (no cap) to 100000")) }
        if requestTimeout < .seconds(1) || requestTimeout > .seconds(3600) { found.append(SpecProblem("requestTimeoutSeconds", "must be 1 to 3600")) }
        if resources.gpu.milliGPUs == 0 && resources.cpuMillis == 0 { found.append(SpecProblem("resources", "a replica needs a GPU or some CPU")) }
        return found
    }

    public static let maxReplicas = 256
}

/// One field of a spec that cannot be accepted, and why.
public struct SpecProblem: Hashable, Sendable, CustomStringConvertible {
    public var field: String
    public var message: String
    public init(_ field: String, _ message: String) {
        self.field = field
        self.message = message
    }
    public var description: String { "\(field) \(message)" }
}

/// The fewest and most replicas the autoscaler may ask for; `min` 0 allows scale to zero.
public struct ReplicaRange: Hashable, Sendable, Codable {
    public var min: Int
    public var max: Int
    public init(min: Int, max: Int) {
        self.min = min
        self.max = max
    }
}

/// How the agent learns that a replica serves: `GET path` on its port answers 2xx.
public struct ReadinessProbe: Hashable, Sendable, Codable {
    public var path: String
    public var interval: Duration
    public var timeout: Duration
    /// Failures in a row after which a ready replica is unready.
    public var failureThreshold: Int
    /// How long a replica may take to become ready the first time (loading a large model)
    /// before the agent stops it and it is started again.
    public var startupTimeout: Duration

    public init(path: String = "/health", interval: Duration = .seconds(2), timeout: Duration = .seconds(1), failureThreshold: Int = 3,
                startupTimeout: Duration = .seconds(900)) {
        self.path = path
        self.interval = interval
        self.timeout = timeout
        self.failureThreshold = failureThreshold
        self.startupTimeout = startupTimeout
    }

    var problems: [SpecProblem] {
        var found: [SpecProblem] = []
        if !path.hasPrefix("/") || path.utf8.count > 512 || path.contains(where: { $0 == " " || $0.isNewline }) {
            found.append(SpecProblem("readiness.path", "must start with / and hold no spaces (at most 512 bytes)"))
        }
        if interval < .milliseconds(100) || interval > .seconds(300) { found.append(SpecProblem("readiness.intervalSeconds", "must be 0.1 to 300")) }
        if timeout < .milliseconds(50) { found.append(SpecProblem("readiness.timeoutSeconds", "must be at least 0.05")) }
        if timeout >= interval { found.append(SpecProblem("readiness.timeoutSeconds", "must be shorter than readiness.intervalSeconds")) }
        if !(1...100).contains(failureThreshold) { found.append(SpecProblem("readiness.failureThreshold", "must be 1 to 100")) }
        if startupTimeout < .seconds(1) || startupTimeout > .seconds(6 * 3600) {
            found.append(SpecProblem("readiness.startupTimeoutSeconds", "must be 1 to 21600"))
        }
        return found
    }
}

/// What the autoscaler counts per replica.
public enum ScalingMetric: String, Hashable, Sendable, Codable, CaseIterable {
    /// Requests in flight (Knative's default): right for model servers whose cost is per request.
    case concurrency
    /// Requests per second.
    case rps
}

/// Load per replica the autoscaler aims at, and its windows (Knative's KPA: a 60 s stable window,
/// a 6 s panic window entered when load doubles).
public struct AutoscalingSpec: Hashable, Sendable, Codable {
    public var metric: ScalingMetric
    public var target: Int
    public var stableWindow: Duration
    public var panicWindow: Duration
    /// A lower desired count must hold this long before replicas go.
    public var scaleDownDelay: Duration
    /// No request for this long with `replicas.min` 0: the last replica goes.
    public var scaleToZeroAfter: Duration

    public init(metric: ScalingMetric = .concurrency, target: Int = 4, stableWindow: Duration = .seconds(60), panicWindow: Duration = .seconds(6),
                scaleDownDelay: Duration = .seconds(30), scaleToZeroAfter: Duration = .seconds(300)) {
        self.metric = metric
        self.target = target
        self.stableWindow = stableWindow
        self.panicWindow = panicWindow
        self.scaleDownDelay = scaleDownDelay
        self.scaleToZeroAfter = scaleToZeroAfter
    }

    var problems: [SpecProblem] {
        var found: [SpecProblem] = []
        if !(1...100_000).contains(target) { found.append(SpecProblem("autoscaling.target", "must be 1 to 100000")) }
        if stableWindow < .seconds(1) || stableWindow > .seconds(3600) { found.append(SpecProblem("autoscaling.stableWindowSeconds", "must be 1 to 3600")) }
        if panicWindow < .seconds(1) || panicWindow > stableWindow {
            found.append(SpecProblem("autoscaling.panicWindowSeconds", "must be at least 1 and at most the stable window"))
        }
        if scaleDownDelay < .zero || scaleDownDelay > .seconds(3600) { found.append(SpecProblem("autoscaling.scaleDownDelaySeconds", "must be 0 to 3600")) }
        if scaleToZeroAfter < .seconds(1) || scaleToZeroAfter > .seconds(7 * 86400) {
            found.append(SpecProblem("autoscaling.scaleToZeroAfterSeconds", "must be 1 to 604800"))
        }
        return found
    }
}

/// What marks a job as a service's replica: the agent gives it a port and probes it.
public struct ReplicaLaunch: Hashable, Sendable, Codable {
    public var service: String
    public var revision: Int
    public var port: Int?
    public var readiness: ReadinessProbe

    public init(service: String, revision: Int, port: Int?, readiness: ReadinessProbe) {
        self.service = service
        self.revision = revision
        self.port = port
        self.readiness = readiness
    }
}

/// Where a replica is in its life, as the gateway and `services show` see it.
public enum ReplicaState: String, Hashable, Sendable, Codable, CaseIterable {
    /// Its job waits for capacity.
    case pending
    /// Placed and started; not yet answering its readiness probe.
    case starting
    /// Answers its probe: the gateway sends it requests.
    case ready
    /// Leaving: no new requests; it stops once those in flight are done.
    case draining
}
