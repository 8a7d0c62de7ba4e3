/// Where a gateway learns services' ready replicas and who may call them, and where it reports
/// load. In `fastgpu server` and `fastgpu up` it is the control plane itself; a gateway of its own
/// (`fastgpu gateway --server URL`) long-polls the API for the same.
public protocol ReplicaDirectory: Sendable {
    /// The routes once their version passes `version`, or after `wait` with what there is.
    func routes(after version: UInt64, wait: Duration) async throws -> GatewayRoutes
    /// Requests in flight and held per service (a held one at zero replicas wakes the service).
    func report(_ load: GatewayLoadReport) async throws
    /// Whether the bearer of `token` may call a service of `project`.
    func authorize(token: String?, project: UInt64) async -> GatewayAuthorization
}

public enum GatewayAuthorization: Sendable, Equatable {
    case allowed
    /// No token, or one that is not valid: 401.
    case unauthenticated
    /// A valid token without a role in the project: 404, as if the service did not exist.
    case notVisible
}

/// Every service's ready replicas, versioned for long polls.
public struct GatewayRoutes: Sendable, Equatable {
    public var version: UInt64
    public var services: [GatewayService]
    public init(version: UInt64, services: [GatewayService]) {
        self.version = version
        self.services = services
    }
}

public struct GatewayService: Sendable, Equatable {
    public struct Replica: Sendable, Hashable {
        public var allocation: UInt64
        public var host: String
        public var port: Int
        public init(allocation: UInt64, host: String, port: Int) {
            self.allocation = allocation
            self.host = host
            self.port = port
        }
    }
    public var name: String
    public var project: UInt64
    public var isPublic: Bool
    /// Requests one replica serves at once (0: no cap).
    public var concurrencyLimit: Int
    public var requestTimeout: Duration
    public var replicas: [Replica]
    public init(name: String, project: UInt64, isPublic: Bool, concurrencyLimit: Int, requestTimeout: Duration, replicas: [Replica]) {
        self.name = name
        self.project = project
        self.isPublic = isPublic
        self.concurrencyLimit = concurrencyLimit
        self.requestTimeout = requestTimeout
        self.replicas = replicas
    }
}

/// One gateway's load, per service.
public struct GatewayLoadReport: Sendable, Equatable {
    public struct Service: Sendable, Equatable {
        public var name: String
        public var inFlight: [UInt64: Int]
        public var held: Int
        public var arrivals: Int
    }
    public var gateway: String
    public var services: [Service]
}
