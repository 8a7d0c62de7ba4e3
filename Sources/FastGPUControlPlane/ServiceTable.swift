public import FastGPUModel
public import FastGPUScheduler

/// The control plane's services: their durable records, plus what is soft and comes back by
/// itself after a restart (replica readiness from agents, load from gateways).
struct ServiceTable {
    var records: [String: ServiceRecord] = [:]
    var autoscalers: [String: ServiceAutoscaler] = [:]
    /// Replicas' ports and readiness as their agents last reported them.
    var endpoints: [AllocationID: ReplicaEndpoint] = [:]
    /// Each gateway's last report, per service.
    var loads: [String: [String: GatewayLoad]] = [:]
    /// Arrivals reported since the last autoscaler sample, per service.
    var arrivals: [String: Int] = [:]
}

/// Where a replica listens and whether it answers its readiness probe.
public struct ReplicaEndpoint: Hashable, Sendable {
    public var host: String
    public var port: Int
    public var ready: Bool
    /// When it first became ready (its start-up time is measured to it).
    public var readySince: Timestamp?
}

/// One gateway's view of one service's load.
public struct GatewayLoad: Hashable, Sendable {
    public var at: Timestamp
    /// Requests in flight at replicas, per allocation.
    public var inFlight: [AllocationID: Int]
    /// Requests the gateway holds while no replica is ready.
    public var held: Int
    public init(at: Timestamp, inFlight: [AllocationID: Int], held: Int) {
        self.at = at
        self.inFlight = inFlight
        self.held = held
    }
}

/// A gateway's report: per service, requests in flight and held now, and arrivals since the last report.
public struct GatewayReport: Hashable, Sendable {
    public struct Service: Hashable, Sendable {
        public var name: String
        public var inFlight: [AllocationID: Int]
        public var held: Int
        public var arrivals: Int
        public init(name: String, inFlight: [AllocationID: Int], held: Int, arrivals: Int) {
            self.name = name
            self.inFlight = inFlight
            self.held = held
            self.arrivals = arrivals
        }
    }
    public var gateway: String
    public var services: [Service]
    public init(gateway: String, services: [Service]) {
        self.gateway = gateway
        self.services = services
    }
}

/// A service as users see it.
public struct ServiceView: Hashable, Sendable {
    public var record: ServiceRecord
    public var projectName: String
    public var replicas: [ReplicaView]
}

/// One replica as users see it.
public struct ReplicaView: Hashable, Sendable {
    public var job: JobID
    public var revision: Int
    public var state: ReplicaState
    public var allocation: AllocationID?
    public var node: String?
    public var endpoint: String?
    public var inFlight: Int
}

/// What a gateway needs to route: every service's ready replicas and its limits.
public struct ServiceRoute: Hashable, Sendable {
    public struct Replica: Hashable, Sendable {
        public var allocation: AllocationID
        public var host: String
        public var port: Int
    }
    public var name: String
    public var project: ProjectID
    public var isPublic: Bool
    public var concurrencyLimit: Int
    public var requestTimeout: Duration
    /// Ready and not draining.
    public var replicas: [Replica]
}
