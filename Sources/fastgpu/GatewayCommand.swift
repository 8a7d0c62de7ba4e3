import ArgumentParser
import AsyncHTTPClient
import FastGPUClient
import FastGPUGateway
import FastGPUWire
import Foundation
import Hummingbird
import Logging
import ServiceLifecycle
import Synchronization

/// `fastgpu gateway --server URL`: a gateway of its own, for scale-out behind a load balancer.
struct GatewayCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gateway",
        abstract: "Run a gateway of its own: it routes /{service}/... to replicas it learns by long-polling the server.",
        discussion: """
            `fastgpu server` and `fastgpu up` run a gateway already; run more of these behind a load \
            balancer when one is not enough. Each needs a cluster-admin token (--token or \
            FASTGPU_TOKEN): it reads every project's routes and checks callers' tokens.
            """)

    @Option(help: ArgumentHelp("The FastGPU server's URL, or several control planes' URLs, comma-separated.", valueName: "url")) var server: String
    @Option(help: ArgumentHelp("A cluster-admin token (default: FASTGPU_TOKEN).", valueName: "token")) var token: String?
    @Option(help: "Address to listen on.") var host = "127.0.0.1"
    @Option(help: "Port to listen on (0: a free one).") var port = 8471
    @Option(help: "This gateway's name in load reports and metrics (default: host:port).") var name: String?
    @Option(help: "Requests one service may have held at once while it has no replica to take them.") var maxHeld = 1000
    @Option(help: ArgumentHelp("PEM file of the CA that signed an https server's certificate.", valueName: "file")) var caFile: String?
    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.") var logLevel = "notice"

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be 0 to 65535") }
        guard (1...1_000_000).contains(maxHeld) else { throw ValidationError("--max-held must be 1 to 1000000") }
    }

    func run() async throws {
        var logger = Logger(label: "fastgpu.gateway")
        logger.logLevel = Logger.Level(rawValue: logLevel) ?? .notice
        guard let token = token ?? ProcessInfo.processInfo.environment["FASTGPU_TOKEN"], !token.isEmpty else {
            throw CommandFailure("a gateway needs a cluster-admin token: --token or FASTGPU_TOKEN")
        }
        let http: HTTPClient
        do { http = try FastGPUClient.http(caFile: caFile) } catch { throw CommandFailure("\(error)") }
        let client = FastGPUClient(server: server, token: token, http: http, caFile: caFile)
        do {
            try await client.checkReachable()
            _ = try await client.gatewayRoutes(after: 0, wait: .zero)
        } catch {
            try? await http.shutdown()
            throw CommandFailure("cannot read routes from \(server): \(error)")
        }
        let gateway = Gateway(directory: RemoteDirectory(client: client), name: name ?? "\(host):\(port)", maxHeldPerService: maxHeld, logger: logger)
        let app = Application(
            responder: gateway.responder,
            configuration: .init(address: .hostname(host, port: port), serverName: "fastgpu-gateway"),
            onServerRunning: { channel in
                let address = channel.localAddress.map { "\($0.ipAddress ?? "?"):\($0.port ?? 0)" } ?? "?"
                FileHandle.standardOutput.write(Data("fastgpu gateway listening on http://\(address) (routes from \(server))\n".utf8))
            },
            logger: logger)
        let group = ServiceGroup(configuration: .init(services: (gateway.services + [app]).map { .init(service: $0) },
                                                      gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
        try? await http.shutdown()
    }
}

/// The control plane over its API: routes by long poll, load by POST, callers checked (and the
/// answer kept for 10 s, so a token revoked takes at most that long to stop working here).
struct RemoteDirectory: ReplicaDirectory {
    let client: FastGPUClient
    let decisions = DecisionCache()

    func routes(after version: UInt64, wait: Duration) async throws -> GatewayRoutes {
        let wire = try await client.gatewayRoutes(after: version, wait: wait)
        return GatewayRoutes(version: wire.version, services: wire.services.map { s in
            GatewayService(name: s.name, project: s.project, isPublic: s.public, concurrencyLimit: s.concurrencyLimit,
                           requestTimeout: .milliseconds(s.requestTimeoutMilliseconds),
                           replicas: s.replicas.map { .init(allocation: $0.allocation, host: $0.host, port: $0.port) })
        })
    }

    func report(_ load: GatewayLoadReport) async throws {
        try await client.reportGatewayLoad(GatewayLoadBody(gateway: load.gateway, services: load.services.map { s in
            GatewayServiceLoadBody(name: s.name, replicas: s.inFlight.map { GatewayReplicaLoadBody(allocation: $0.key, inFlight: $0.value) },
                                   held: s.held, arrivals: s.arrivals)
        }))
    }

    func authorize(token: String?, project: UInt64) async -> GatewayAuthorization {
        guard let token, !token.isEmpty, token.utf8.count <= 256 else { return .unauthenticated }
        if let known = decisions.get(token, project) { return known }
        guard let answer = try? await client.authorizeGatewayCall(GatewayAuthorizeBody(token: token, project: project)) else { return .unauthenticated }
        let decision: GatewayAuthorization = answer.decision == "allowed" ? .allowed : answer.decision == "notVisible" ? .notVisible : .unauthenticated
        decisions.put(token, project, decision)
        return decision
    }
}

/// Callers' decisions for 10 s; at most 100,000 kept (then it starts over).
final class DecisionCache: Sendable {
    struct Key: Hashable { var token: String; var project: UInt64 }
    let entries = Mutex<[Key: (GatewayAuthorization, ContinuousClock.Instant)]>([:])

    func get(_ token: String, _ project: UInt64) -> GatewayAuthorization? {
        entries.withLock { e in
            guard let (decision, at) = e[Key(token: token, project: project)], ContinuousClock.now - at < .seconds(10) else { return nil }
            return decision
        }
    }

    func put(_ token: String, _ project: UInt64, _ decision: GatewayAuthorization) {
        entries.withLock { e in
            if e.count >= 100_000 { e.removeAll() }
            e[Key(token: token, project: project)] = (decision, .now)
        }
    }
}
