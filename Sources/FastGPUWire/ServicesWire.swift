// Services: the spec users send (the JSON form of `svc.yaml`), what the API answers, and what
// agents and gateways exchange with the control plane about replicas.

package struct ReplicaRangeBody: Codable, Sendable, Equatable {
    package var min: Int?
    package var max: Int?

    package enum CodingKeys: String, CodingKey, CaseIterable { case min, max }

    package init(from decoder: any Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        min = try c.decodeIfPresent(Int.self, forKey: .min)
        max = try c.decodeIfPresent(Int.self, forKey: .max)
    }

    package init(min: Int? = nil, max: Int? = nil) {
        self.min = min
        self.max = max
    }
}

package struct ReadinessBody: Codable, Sendable, Equatable {
    package var path: String?
    package var intervalSeconds: Double?
    package var timeoutSeconds: Double?
    package var failureThreshold: Int?
    package var startupTimeoutSeconds: Double?

    package enum CodingKeys: String, CodingKey, CaseIterable { case path, intervalSeconds, timeoutSeconds, failureThreshold, startupTimeoutSeconds }

    package init(from decoder: any Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        path = try c.decodeIfPresent(String.self, forKey: .path)
        intervalSeconds = try c.decodeIfPresent(Double.self, forKey: .intervalSeconds)
        timeoutSeconds = try c.decodeIfPresent(Double.self, forKey: .timeoutSeconds)
        failureThreshold = try c.decodeIfPresent(Int.self, forKey: .failureThreshold)
        startupTimeoutSeconds = try c.decodeIfPresent(Double.self, forKey: .startupTimeoutSeconds)
    }

    package init(path: String? = nil, intervalSeconds: Double? = nil, timeoutSeconds: Double? = nil, failureThreshold: Int? = nil, startupTimeoutSeconds: Double? = nil) {
        self.path = path
        self.intervalSeconds = intervalSeconds
        self.timeoutSeconds = timeoutSeconds
        self.failureThreshold = failureThreshold
        self.startupTimeoutSeconds = startupTimeoutSeconds
    }
}

package struct AutoscalingBody: Codable, Sendable, Equatable {
    package var metric: String?
    package var target: Int?
    package var stableWindowSeconds: Double?
    package var panicWindowSeconds: Double?
    package var scaleDownDelaySeconds: Double?
    package var scaleToZeroAfterSeconds: Double?

    package enum CodingKeys: String, CodingKey, CaseIterable {
        case metric, target, stableWindowSeconds, panicWindowSeconds, scaleDownDelaySeconds, scaleToZeroAfterSeconds
    }

    package init(from decoder: any Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        metric = try c.decodeIfPresent(String.self, forKey: .metric)
        target = try c.decodeIfPresent(Int.self, forKey: .target)
        stableWindowSeconds = try c.decodeIfPresent(Double.self, forKey: .stableWindowSeconds)
        panicWindowSeconds = try c.decodeIfPresent(Double.self, forKey: .panicWindowSeconds)
        scaleDownDelaySeconds = try c.decodeIfPresent(Double.self, forKey: .scaleDownDelaySeconds)
        scaleToZeroAfterSeconds = try c.decodeIfPresent(Double.self, forKey: .scaleToZeroAfterSeconds)
    }

    package init(metric: String? = nil, target: Int? = nil, stableWindowSeconds: Double? = nil, panicWindowSeconds: Double? = nil,
                 scaleDownDelaySeconds: Double? = nil, scaleToZeroAfterSeconds: Double? = nil) {
        self.metric = metric
        self.target = target
        self.stableWindowSeconds = stableWindowSeconds
        self.panicWindowSeconds = panicWindowSeconds
        self.scaleDownDelaySeconds = scaleDownDelaySeconds
        self.scaleToZeroAfterSeconds = scaleToZeroAfterSeconds
    }
}

/// `POST /v1/services` and `PUT /v1/services/{name}`: the JSON form of a service file.
package struct ServiceSpecBody: Codable, Sendable, Equatable {
    package var name: String
    package var project: String?
    package var command: [String]
    package var image: String?
    package var env: [String: String]?
    package var resources: ResourcesBody?
    package var port: Int?
    package var replicas: ReplicaRangeBody?
    package var readiness: ReadinessBody?
    package var autoscaling: AutoscalingBody?
    package var priority: String?
    package var `public`: Bool?
    package var concurrencyLimit: Int?
    package var requestTimeoutSeconds: Double?
    /// Objects each replica downloads before it starts: `{from: s3://BACKEND/KEY, path}`.
    package var inputs: [InputBody]?

    package enum CodingKeys: String, CodingKey, CaseIterable {
        case name, project, command, image, env, resources, port, replicas, readiness, autoscaling, priority, `public`, concurrencyLimit, requestTimeoutSeconds, inputs
    }

    package init(from decoder: any Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        project = try c.decodeIfPresent(String.self, forKey: .project)
        command = try c.decode([String].self, forKey: .command)
        image = try c.decodeIfPresent(String.self, forKey: .image)
        env = try c.decodeIfPresent([String: String].self, forKey: .env)
        resources = try c.decodeIfPresent(ResourcesBody.self, forKey: .resources)
        port = try c.decodeIfPresent(Int.self, forKey: .port)
        replicas = try c.decodeIfPresent(ReplicaRangeBody.self, forKey: .replicas)
        readiness = try c.decodeIfPresent(ReadinessBody.self, forKey: .readiness)
        autoscaling = try c.decodeIfPresent(AutoscalingBody.self, forKey: .autoscaling)
        priority = try c.decodeIfPresent(String.self, forKey: .priority)
        `public` = try c.decodeIfPresent(Bool.self, forKey: .public)
        concurrencyLimit = try c.decodeIfPresent(Int.self, forKey: .concurrencyLimit)
        requestTimeoutSeconds = try c.decodeIfPresent(Double.self, forKey: .requestTimeoutSeconds)
        inputs = try c.decodeIfPresent([InputBody].self, forKey: .inputs)
    }

    package init(name: String, project: String? = nil, command: [String], image: String? = nil, env: [String: String]? = nil, resources: ResourcesBody? = nil,
                 port: Int? = nil, replicas: ReplicaRangeBody? = nil, readiness: ReadinessBody? = nil, autoscaling: AutoscalingBody? = nil,
                 priority: String? = nil, public: Bool? = nil, concurrencyLimit: Int? = nil, requestTimeoutSeconds: Double? = nil) {
        self.name = name
        self.project = project
        self.command = command
        self.image = image
        self.env = env
        self.resources = resources
        self.port = port
        self.replicas = replicas
        self.readiness = readiness
        self.autoscaling = autoscaling
        self.priority = priority
        self.public = `public`
        self.concurrencyLimit = concurrencyLimit
        self.requestTimeoutSeconds = requestTimeoutSeconds
    }
}

/// `POST /v1/services/{name}/scale`.
package struct ScaleServiceBody: Codable, Sendable, Equatable {
    package var min: Int?
    package var max: Int?

    package enum CodingKeys: String, CodingKey, CaseIterable { case min, max }

    package init(from decoder: any Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        min = try c.decodeIfPresent(Int.self, forKey: .min)
        max = try c.decodeIfPresent(Int.self, forKey: .max)
    }

    package init(min: Int? = nil, max: Int? = nil) {
        self.min = min
        self.max = max
    }
}

package struct ReplicaWire: Codable, Sendable, Equatable {
    package var job: UInt64
    package var revision: Int
    package var state: String
    package var allocation: UInt64?
    package var node: String?
    package var endpoint: String?
    package var inFlight: Int

    package init(job: UInt64, revision: Int, state: String, allocation: UInt64?, node: String?, endpoint: String?, inFlight: Int) {
        self.job = job
        self.revision = revision
        self.state = state
        self.allocation = allocation
        self.node = node
        self.endpoint = endpoint
        self.inFlight = inFlight
    }
}

package struct ServiceWire: Codable, Sendable, Equatable {
    package var name: String
    package var project: String
    package var revision: Int
    package var desiredReplicas: Int
    package var readyReplicas: Int
    package var deleting: Bool
    package var createdBy: String
    package var createdAt: String
    /// The spec as it is now, in the request's shape (every default filled in).
    package var spec: ServiceSpecBody
    package var replicas: [ReplicaWire]
    /// The gateway path: `/{name}/`.
    package var path: String
    /// The whole URL of the service at this server's own gateway, as the caller reached the
    /// server (`http://HOST:8471/{name}/`); nil where this server runs no gateway.
    package var url: String?

    package init(name: String, project: String, revision: Int, desiredReplicas: Int, readyReplicas: Int, deleting: Bool, createdBy: String, createdAt: String,
                 spec: ServiceSpecBody, replicas: [ReplicaWire], path: String, url: String? = nil) {
        self.url = url
        self.name = name
        self.project = project
        self.revision = revision
        self.desiredReplicas = desiredReplicas
        self.readyReplicas = readyReplicas
        self.deleting = deleting
        self.createdBy = createdBy
        self.createdAt = createdAt
        self.spec = spec
        self.replicas = replicas
        self.path = path
    }
}

package struct ServiceListWire: Codable, Sendable, Equatable {
    package var items: [ServiceWire]
    package init(items: [ServiceWire]) { self.items = items }
}

package struct ServiceEventWire: Codable, Sendable, Equatable {
    package var time: String
    package var kind: String
    package var message: String
    package init(time: String, kind: String, message: String) {
        self.time = time
        self.kind = kind
        self.message = message
    }
}

package struct ServiceEventListWire: Codable, Sendable, Equatable {
    package var items: [ServiceEventWire]
    package init(items: [ServiceEventWire]) { self.items = items }
}

/// An agent's word on a replica: `POST /v1/nodes/{id}/allocations/{allocation}/readiness`.
package struct ReplicaReadinessBody: Codable, Sendable, Equatable {
    package var epoch: UInt64
    package var ready: Bool
    package var host: String
    package var port: Int

    package enum CodingKeys: String, CodingKey, CaseIterable { case epoch, ready, host, port }

    package init(from decoder: any Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        epoch = try c.decode(UInt64.self, forKey: .epoch)
        ready = try c.decode(Bool.self, forKey: .ready)
        host = try c.decode(String.self, forKey: .host)
        port = try c.decode(Int.self, forKey: .port)
    }

    package init(epoch: UInt64, ready: Bool, host: String, port: Int) {
        self.epoch = epoch
        self.ready = ready
        self.host = host
        self.port = port
    }
}

/// What an agent needs to run a replica: the port inside a container (nil: `$PORT`) and its probe.
package struct ReplicaAssignmentWire: Codable, Sendable, Equatable {
    package var service: String
    package var revision: Int
    package var port: Int?
    package var path: String
    package var intervalMilliseconds: Int64
    package var timeoutMilliseconds: Int64
    package var failureThreshold: Int
    package var startupTimeoutMilliseconds: Int64

    package init(service: String, revision: Int, port: Int?, path: String, intervalMilliseconds: Int64, timeoutMilliseconds: Int64, failureThreshold: Int,
                 startupTimeoutMilliseconds: Int64) {
        self.service = service
        self.revision = revision
        self.port = port
        self.path = path
        self.intervalMilliseconds = intervalMilliseconds
        self.timeoutMilliseconds = timeoutMilliseconds
        self.failureThreshold = failureThreshold
        self.startupTimeoutMilliseconds = startupTimeoutMilliseconds
    }
}

// MARK: - Gateways of their own (`fastgpu gateway --server URL`)

package struct GatewayReplicaWire: Codable, Sendable, Equatable {
    package var allocation: UInt64
    package var host: String
    package var port: Int
    package init(allocation: UInt64, host: String, port: Int) {
        self.allocation = allocation
        self.host = host
        self.port = port
    }
}

package struct GatewayServiceWire: Codable, Sendable, Equatable {
    package var name: String
    package var project: UInt64
    package var `public`: Bool
    package var concurrencyLimit: Int
    package var requestTimeoutMilliseconds: Int64
    package var replicas: [GatewayReplicaWire]
    package init(name: String, project: UInt64, public: Bool, concurrencyLimit: Int, requestTimeoutMilliseconds: Int64, replicas: [GatewayReplicaWire]) {
        self.name = name
        self.project = project
        self.public = `public`
        self.concurrencyLimit = concurrencyLimit
        self.requestTimeoutMilliseconds = requestTimeoutMilliseconds
        self.replicas = replicas
    }
}

/// `GET /v1/gateway/routes?after=V&wait=S`: every service's ready replicas, long-polled.
package struct GatewayRoutesWire: Codable, Sendable, Equatable {
    package var version: UInt64
    package var services: [GatewayServiceWire]
    package init(version: UInt64, services: [GatewayServiceWire]) {
        self.version = version
        self.services = services
    }
}

package struct GatewayReplicaLoadBody: Codable, Sendable, Equatable {
    package var allocation: UInt64
    package var inFlight: Int

    package enum CodingKeys: String, CodingKey, CaseIterable { case allocation, inFlight }

    package init(from decoder: any Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        allocation = try c.decode(UInt64.self, forKey: .allocation)
        inFlight = try c.decode(Int.self, forKey: .inFlight)
    }

    package init(allocation: UInt64, inFlight: Int) {
        self.allocation = allocation
        self.inFlight = inFlight
    }
}

package struct GatewayServiceLoadBody: Codable, Sendable, Equatable {
    package var name: String
    package var replicas: [GatewayReplicaLoadBody]
    package var held: Int
    package var arrivals: Int

    package enum CodingKeys: String, CodingKey, CaseIterable { case name, replicas, held, arrivals }

    package init(from decoder: any Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        replicas = try c.decode([GatewayReplicaLoadBody].self, forKey: .replicas)
        held = try c.decode(Int.self, forKey: .held)
        arrivals = try c.decode(Int.self, forKey: .arrivals)
    }

    package init(name: String, replicas: [GatewayReplicaLoadBody], held: Int, arrivals: Int) {
        self.name = name
        self.replicas = replicas
        self.held = held
        self.arrivals = arrivals
    }
}

/// `POST /v1/gateway/load`: a gateway's load, per service.
package struct GatewayLoadBody: Codable, Sendable, Equatable {
    package var gateway: String
    package var services: [GatewayServiceLoadBody]

    package enum CodingKeys: String, CodingKey, CaseIterable { case gateway, services }

    package init(from decoder: any Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        gateway = try c.decode(String.self, forKey: .gateway)
        services = try c.decode([GatewayServiceLoadBody].self, forKey: .services)
    }

    package init(gateway: String, services: [GatewayServiceLoadBody]) {
        self.gateway = gateway
        self.services = services
    }
}

/// `POST /v1/gateway/authorize`: may the bearer of `token` call a service of `project`?
package struct GatewayAuthorizeBody: Codable, Sendable, Equatable {
    package var token: String
    package var project: UInt64

    package enum CodingKeys: String, CodingKey, CaseIterable { case token, project }

    package init(from decoder: any Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        token = try c.decode(String.self, forKey: .token)
        project = try c.decode(UInt64.self, forKey: .project)
    }

    package init(token: String, project: UInt64) {
        self.token = token
        self.project = project
    }
}

package struct GatewayDecisionWire: Codable, Sendable, Equatable {
    /// allowed, unauthenticated or notVisible.
    package var decision: String
    package init(decision: String) { self.decision = decision }
}
