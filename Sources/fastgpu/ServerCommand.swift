import ArgumentParser
import FastGPUAPI
import FastGPUControlPlane
import FastGPUStore
import Foundation
import Hummingbird
import Logging
import ServiceLifecycle

struct ServerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "server",
        abstract: "Run the control plane: the v1 HTTP API, the SQLite store and the scheduler.",
        discussion: """
            State lives in one SQLite file (WAL, synchronous=FULL) in the data directory; a \
            restarted server finds every acknowledged job there. On first start the server \
            creates the project `default` and a cluster-admin token, written to \
            DATA-DIR/admin-token (mode 0600).
            """
    )

    @Option(help: "Directory of the database and the admin token (default: ~/.fastgpu).")
    var dataDir: String?

    @Option(help: "Address to listen on.")
    var host = "127.0.0.1"

    @Option(help: "Port to listen on (0 picks a free one).")
    var port = 8470

    @Option(name: .customLong("heartbeat-ttl"), help: "Seconds without a heartbeat after which a node is late.")
    var heartbeatTTL = 5

    @Option(help: "Seconds a late node gets before it is marked down and its work requeued.")
    var heartbeatGrace = 5

    @Option(help: "Seconds after start-up before any node is judged late.")
    var startupGrace = 30

    @Option(help: "Seconds before a lost task is retried (doubling per attempt, at most 300).")
    var retryBackoff = 10

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel = "info"

    func run() async throws {
        var configuration = ControlPlaneConfiguration()
        configuration.heartbeatTTL = .seconds(heartbeatTTL)
        configuration.heartbeatGrace = .seconds(heartbeatGrace)
        configuration.startupGrace = .seconds(startupGrace)
        configuration.retryBackoff = .seconds(retryBackoff)
        var logger = Logger(label: "fastgpu.server")
        logger.logLevel = Logger.Level(rawValue: logLevel) ?? .info
        let server = try await LocalServer.make(dataDir: dataDir, host: host, port: port, configuration: configuration, logger: logger) { url, directory in
            // Unbuffered: whoever started the server (a script, a test) reads this line.
            FileHandle.standardOutput.write(Data("fastgpu server listening on \(url) (data in \(directory))\n".utf8))
        }
        let group = ServiceGroup(configuration: .init(services: server.services.map { .init(service: $0) },
                                                      gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }
}

/// The control plane as services: the API, the scheduling loop and node liveness over one
/// SQLite file. `fastgpu server` runs it alone; `fastgpu up` runs it with local agents.
struct LocalServer {
    var services: [any Service]
    var controlPlane: ControlPlane
    var directory: String

    static func make(dataDir: String?, host: String, port: Int, configuration: ControlPlaneConfiguration, logger: Logger,
                     onRunning: @escaping @Sendable (_ url: String, _ directory: String) -> Void) async throws -> LocalServer {
        let directory = dataDir ?? (CLIConfig.home + "/.fastgpu")
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw CommandFailure("cannot create the data directory \(directory): \(error.localizedDescription)")
        }
        let store: SQLiteClusterStore
        do { store = try SQLiteClusterStore(path: directory + "/fastgpu.db") } catch { throw CommandFailure("\(error)") }
        let controlPlane = try await ControlPlane(store: store, configuration: configuration, logger: logger)
        if let token = try await controlPlane.bootstrapIfEmpty() {
            let path = directory + "/admin-token"
            guard FileManager.default.createFile(atPath: path, contents: Data((token + "\n").utf8), attributes: [.posixPermissions: 0o600]) else {
                throw CommandFailure("cannot write the admin token to \(path); remove \(directory)/fastgpu.db and start again")
            }
            logger.notice("first start: created project 'default' and a cluster-admin token", metadata: ["token-file": "\(path)"])
        }
        let metrics = APIMetrics()
        let (router, _) = APIServer(controlPlane: controlPlane, metrics: metrics).makeRouter()
        let app = Application(
            router: router,
            configuration: .init(address: .hostname(host, port: port), serverName: "fastgpu"),
            onServerRunning: { channel in
                let address = channel.localAddress.map { "\($0.ipAddress ?? "?"):\($0.port ?? 0)" } ?? "?"
                onRunning("http://\(address)", directory)
            },
            logger: logger)
        return LocalServer(
            services: [app, SchedulingService(controlPlane: controlPlane, observer: metrics, logger: logger), LivenessService(controlPlane: controlPlane, logger: logger)],
            controlPlane: controlPlane, directory: directory)
    }
}

/// A failure at run time (not a misuse of the command line): one line, no usage text.
struct CommandFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
