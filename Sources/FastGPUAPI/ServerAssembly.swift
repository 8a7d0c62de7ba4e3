public import FastGPUControlPlane
public import FastGPUGateway
public import FastGPUStore
public import FastGPUStorage
public import Logging

/// The one composition root: a control plane over a store, its API, and the services that run
/// it (scheduling loop, liveness). `fastgpu server` and `fastgpu up` serve it over HTTP; the tests
/// build the very same thing on a temporary database and a hand-moved clock.
public struct ServerAssembly: Sendable {
    public let controlPlane: ControlPlane
    public let metrics: APIMetrics
    public let api: APIServer
    public let scheduling: SchedulingService
    public let liveness: LivenessService
    /// Brings services' replicas to what their autoscalers and revisions ask for.
    public let serviceReconciler: ServiceReconcilerService
    /// The gateway of this process: routes `/{service}/...` to replicas (served on its own port).
    public let gateway: Gateway
    /// Where `gateway` listens, once it does: tell it with `listening(on:)`.
    public let gatewayAddress: GatewayAddress
    /// The cluster-admin token created on the first start (shown once), nil on later starts.
    public let bootstrapToken: String?

    /// `secretBox` must hold the same key on every start (`SecretBox.loadOrCreate`), or stored
    /// secrets no longer open.
    public static func build(store: any ClusterStore, secretBox: SecretBox, clock: any WallClock = SystemWallClock(),
                             configuration: ControlPlaneConfiguration = ControlPlaneConfiguration(), limits: RequestLimits = RequestLimits(),
                             logger: Logger = Logger(label: "fastgpu.server"),
                             localStorage: LocalObjectStore? = nil, scheme: String = "http", oidc: OIDCSettings? = nil,
                             metricsToken: String? = nil) async throws -> ServerAssembly {
        let controlPlane = try await ControlPlane(store: store, secretBox: secretBox, clock: clock, configuration: configuration, logger: logger)
        let token = try await controlPlane.bootstrapIfEmpty()
        if let localStorage {
            try localStorage.createBucket(LocalObjectStore.bucket)
            let removed = localStorage.sweepAbandoned(in: LocalObjectStore.bucket)
            if !removed.isEmpty { logger.notice("local storage: removed \(removed.count) multipart uploads and temporary files abandoned over a day ago") }
            try await controlPlane.ensureLocalStorage()
        }
        let metrics = APIMetrics()
        let gateway = Gateway(directory: ControlPlaneDirectory(controlPlane: controlPlane, clock: clock), name: "embedded", logger: logger)
        let gatewayAddress = GatewayAddress()
        return ServerAssembly(
            controlPlane: controlPlane, metrics: metrics,
            api: APIServer(controlPlane: controlPlane, metrics: metrics, limits: limits, clock: clock, gatewayMetrics: { gateway.prometheusText() },
                           localStorage: localStorage, scheme: scheme, gatewayAddress: gatewayAddress, oidc: oidc.map { OIDCProvider(settings: $0) }, metricsToken: metricsToken),
            scheduling: SchedulingService(controlPlane: controlPlane, observer: metrics, logger: logger),
            liveness: LivenessService(controlPlane: controlPlane, logger: logger),
            serviceReconciler: ServiceReconcilerService(controlPlane: controlPlane, logger: logger),
            gateway: gateway,
            gatewayAddress: gatewayAddress,
            bootstrapToken: token)
    }
}
