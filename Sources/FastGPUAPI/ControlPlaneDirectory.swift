public import FastGPUControlPlane
public import FastGPUGateway
import FastGPUModel

/// The gateway inside `fastgpu server` and `fastgpu up`: it reads routes and tokens from the
/// control plane in the same process and reports load to it directly.
public struct ControlPlaneDirectory: ReplicaDirectory {
    let controlPlane: ControlPlane
    let clock: any WallClock

    public init(controlPlane: ControlPlane, clock: any WallClock = SystemWallClock()) {
        self.controlPlane = controlPlane
        self.clock = clock
    }

    public func routes(after version: UInt64, wait: Duration) async throws -> GatewayRoutes {
        await controlPlane.waitForRoutes(after: version, timeout: wait)
        let (current, routes) = await controlPlane.routes()
        return GatewayRoutes(version: current, services: routes.map { route in
            GatewayService(name: route.name, project: route.project.rawValue, isPublic: route.isPublic, concurrencyLimit: route.concurrencyLimit,
                           requestTimeout: route.requestTimeout,
                           replicas: route.replicas.map { .init(allocation: $0.allocation.rawValue, host: $0.host, port: $0.port) })
        })
    }

    public func report(_ load: GatewayLoadReport) async throws {
        try await controlPlane.gatewayReport(GatewayReport(gateway: load.gateway, services: load.services.map { service in
            GatewayReport.Service(name: service.name, inFlight: Dictionary(service.inFlight.map { (AllocationID($0.key), $0.value) }, uniquingKeysWith: +),
                                  held: service.held, arrivals: service.arrivals)
        }))
    }

    public func authorize(token: String?, project: UInt64) async -> GatewayAuthorization {
        guard case .success(let principal) = controlPlane.tokens.authenticate(token, now: clock.now()) else { return .unauthenticated }
        return controlPlane.reads.role(of: principal, inProject: ProjectID(project)) != nil ? .allowed : .notVisible
    }
}
