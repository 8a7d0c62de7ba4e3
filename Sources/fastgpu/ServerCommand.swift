import ArgumentParser
import FastGPUAPI
import FastGPUControlPlane
import FastGPUScheduler
import FastGPUStorage
import FastGPUStore
import FastGPUStorePostgres
import FastGPUStoreSQLite
import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import NIOCore
import NIOSSL
import Logging
import ServiceLifecycle

struct ServerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "server",
        abstract: "Run the control plane: the v1 HTTP API, the store and the scheduler.",
        discussion: """
            State lives in one SQLite file (WAL, synchronous=FULL) in the data directory; a \
            restarted server finds every acknowledged job there. On first start the server \
            creates the project `default` and a cluster-admin token, written to \
            DATA-DIR/admin-token (mode 0600).

            With --store postgres://USER@HOST/DB several servers share one PostgreSQL: one \
            leads (it holds a lease with a fencing epoch that every commit checks), the others \
            forward requests to it and take over when it is gone. Give them the same secret key \
            (--secret-key-file), and give agents, gateways and the CLI every server's URL, \
            comma-separated.
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

    @Option(help: "Port of the gateway that routes /{service}/... to services' replicas (default 8471, or a free one with --port 0; -1: no gateway).")
    var gatewayPort: Int?

    @Option(help: ArgumentHelp("PEM certificate (chain) to serve https with; needs --tls-key.", valueName: "file"))
    var tlsCert: String?

    @Option(help: ArgumentHelp("PEM private key of --tls-cert.", valueName: "file"))
    var tlsKey: String?

    @Option(help: "Requests per second one user token may send (bursts of twice that; 0: no limit). Cluster admins are exempt.")
    var rateLimit = 50

    @Option(help: "Jobs one project may have waiting at once.")
    var maxPendingJobs = 10_000

    @Option(help: ArgumentHelp("A GPU a running job holds at 0 % utilisation for this many seconds is idle: an event on the job and a metric.",
                               valueName: "seconds"))
    var idleGPUAfter = 600

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel = "info"

    @Option(help: ArgumentHelp("Single sign-on: the OpenID Connect issuer people sign in with (https://accounts.example.com).", valueName: "url"))
    var oidcIssuer: String?

    @Option(help: ArgumentHelp("The client id this server is registered with at the issuer (ID tokens must be for it).", valueName: "id"))
    var oidcClientId: String?

    @Option(help: ArgumentHelp("The client's secret, for the dashboard's sign-in (first line of the file).", valueName: "file"))
    var oidcClientSecretFile: String?

    @Option(help: "The ID token claim whose value is the member's subject: email (refused when the provider says it is unverified) or sub.")
    var oidcClaim = "email"

    @Option(help: ArgumentHelp("A subject who signs in as a cluster admin (repeatable).", valueName: "subject"))
    var oidcAdmin: [String] = []

    @Option(help: ArgumentHelp("Where people reach this server (https://gpus.example.com): the dashboard's sign-in returns there (default: the request's host).",
                               valueName: "url"))
    var publicUrl: String?

    @Option(help: ArgumentHelp("/metrics asks for this bearer token (first line of the file); without it /metrics is open.", valueName: "file"))
    var metricsTokenFile: String?

    @Option(help: ArgumentHelp("Scheduling policy: \(SchedulingPolicy.liveNames.joined(separator: ", ")) (the names `fastgpu sim` measures; fastgpu:grace=N:… varies the default as there).", valueName: "name"))
    var policy = SchedulingPolicy.defaultName

    @Option(help: ArgumentHelp("What a preemption costs its victim on this cluster (checkpoint reload, warm-up), in seconds: the policy's grace and claims are priced in it.", valueName: "seconds"))
    var restartCost = 30

    func metricsToken() throws -> String? {
        guard let metricsTokenFile else { return nil }
        guard let text = try? String(contentsOfFile: metricsTokenFile, encoding: .utf8), text.utf8.count <= 4096,
              let line = text.split(whereSeparator: \.isNewline).first, line.utf8.count >= 16 else {
            throw ValidationError("--metrics-token-file: \(metricsTokenFile) must hold a token of at least 16 characters on its first line")
        }
        return String(line)
    }

    /// Single sign-on's settings, checked; nil when not asked for.
    func oidcSettings() throws -> OIDCSettings? {
        guard let oidcIssuer else {
            guard oidcClientId == nil, oidcClientSecretFile == nil, oidcAdmin.isEmpty else { throw ValidationError("--oidc-* options need --oidc-issuer") }
            return nil
        }
        // http only on this machine (a provider for tests): ID tokens and client secrets travel over it.
        guard let url = URL(string: oidcIssuer), let scheme = url.scheme, let host = url.host, url.query == nil,
              scheme == "https" || (scheme == "http" && ["127.0.0.1", "localhost", "::1"].contains(host)) else {
            throw ValidationError("--oidc-issuer must be an https URL such as https://accounts.example.com")
        }
        guard let oidcClientId, !oidcClientId.isEmpty, oidcClientId.utf8.count <= 256 else { throw ValidationError("--oidc-issuer needs --oidc-client-id") }
        // Not preferred_username, upn or name: people can change those at many providers, and the
        // subject decides their projects and whether they are an admin.
        guard ["email", "sub"].contains(oidcClaim) else { throw ValidationError("--oidc-claim must be email (verified) or sub") }
        if let publicUrl, URL(string: publicUrl)?.host == nil { throw ValidationError("--public-url must look like https://HOST") }
        var secret: String?
        if let oidcClientSecretFile {
            guard let text = try? String(contentsOfFile: oidcClientSecretFile, encoding: .utf8), text.utf8.count <= 4096,
                  let line = text.split(whereSeparator: \.isNewline).first, !line.isEmpty else {
                throw ValidationError("--oidc-client-secret-file: cannot read a secret from \(oidcClientSecretFile)")
            }
            secret = String(line)
        }
        return OIDCSettings(issuer: oidcIssuer, clientID: oidcClientId, clientSecret: secret, claim: oidcClaim, admins: Set(oidcAdmin), publicURL: publicUrl)
    }

    @Option(help: ArgumentHelp("Where state lives: sqlite (one file in the data directory) or postgres://USER@HOST[:PORT]/DATABASE, which several servers may share (one leads, the others follow and take over).", valueName: "store"))
    var store = "sqlite"

    @Option(help: ArgumentHelp("File whose first line is the PostgreSQL password (else FASTGPU_STORE_PASSWORD or PGPASSWORD).", valueName: "file"))
    var storePasswordFile: String?

    @Option(help: ArgumentHelp("With a postgres store: the URL other servers forward requests to while this one leads (default: the address it listens on).", valueName: "url"))
    var advertiseURL: String?

    @Option(help: "With a postgres store: seconds a leader's lease lasts unrenewed; a leader that cannot renew stops within it, and a follower takes over after it (at once when the leader's process is gone).")
    var leaseTTL = 3

    @Option(help: ArgumentHelp("The key secrets are sealed with (default DATA-DIR/secret-key); with a postgres store, every server needs the same one.", valueName: "file"))
    var secretKeyFile: String?

    func run() async throws {
        guard (0...1_000_000).contains(rateLimit) else { throw ValidationError("--rate-limit must be 0 to 1000000") }
        guard (1...10_000_000).contains(maxPendingJobs) else { throw ValidationError("--max-pending-jobs must be 1 to 10000000") }
        guard (1...604_800).contains(idleGPUAfter) else { throw ValidationError("--idle-gpu-after must be 1 to 604800 seconds") }
        var limits = RequestLimits()
        limits.requestsPerSecond = rateLimit
        limits.burst = rateLimit * 2
        guard (tlsCert == nil) == (tlsKey == nil) else { throw ValidationError("--tls-cert and --tls-key go together") }
        guard (0...86_400).contains(restartCost) else { throw ValidationError("--restart-cost must be 0 to 86400 seconds") }
        guard let named = SchedulingPolicy.named(policy), !named.isOracle else {
            throw ValidationError("unknown --policy '\(policy)'; use \(SchedulingPolicy.liveNames.joined(separator: ", "))")
        }
        var configuration = ControlPlaneConfiguration.running(named, restartCost: .seconds(restartCost))
        configuration.maxPendingJobsPerProject = maxPendingJobs
        configuration.idleGPUAfter = .seconds(idleGPUAfter)
        configuration.heartbeatTTL = .seconds(heartbeatTTL)
        configuration.heartbeatGrace = .seconds(heartbeatGrace)
        configuration.startupGrace = .seconds(startupGrace)
        configuration.retryBackoff = .seconds(retryBackoff)
        var logger = Logger(label: "fastgpu.server")
        logger.logLevel = Logger.Level(rawValue: logLevel) ?? .info
        let oidc = try oidcSettings()
        let metricsToken = try metricsToken()
        if store != "sqlite" {
            let url: PostgresStoreURL
            do { url = try PostgresStoreURL(store) } catch { throw ValidationError("--store: \(error)") }
            guard (1...60).contains(leaseTTL) else { throw ValidationError("--lease-ttl must be 1 to 60 seconds") }
            guard gatewayPort == nil || gatewayPort == -1 else {
                throw ValidationError("with a postgres store the gateway runs on its own: `fastgpu gateway --server URL1,URL2,...`")
            }
            if let advertiseURL, URL(string: advertiseURL)?.host == nil { throw ValidationError("--advertise-url must look like http://HOST:PORT") }
            if advertiseURL == nil, ["0.0.0.0", "::", "[::]"].contains(host) {
                throw ValidationError("listening on \(host), give --advertise-url: the address other servers reach this one at")
            }
            let password: String?
            do { password = try PostgresStoreURL.password(file: storePasswordFile, environment: ProcessInfo.processInfo.environment) } catch {
                throw CommandFailure("\(error)")
            }
            let directory = dataDir ?? (CLIConfig.home + "/.fastgpu")
            try await ReplicatedServer.run(.init(store: url, password: password, directory: directory,
                                                 secretKeyFile: secretKeyFile ?? directory + "/secret-key", host: host, port: port,
                                                 advertiseURL: advertiseURL, leaseTTL: .seconds(leaseTTL), configuration: configuration,
                                                 limits: limits, tls: try tlsCert.map { try TLSFiles(certificate: $0, key: tlsKey ?? "") },
                                                 tlsCertificateFile: tlsCert, oidc: oidc, metricsToken: metricsToken),
                                           logger: logger)
            return
        }
        guard storePasswordFile == nil, advertiseURL == nil, secretKeyFile == nil else {
            throw ValidationError("--store-password-file, --advertise-url and --secret-key-file go with --store postgres://...")
        }
        let gatewayPort = self.gatewayPort ?? (port == 0 ? 0 : 8471)
        guard (-1...65535).contains(gatewayPort) else { throw ValidationError("--gateway-port must be -1 (none) to 65535") }
        let server = try await LocalServer.make(dataDir: dataDir, host: host, port: port, gatewayPort: gatewayPort >= 0 ? gatewayPort : nil,
                                                configuration: configuration, limits: limits,
                                                tls: try tlsCert.map { try TLSFiles(certificate: $0, key: tlsKey ?? "") }, oidc: oidc, metricsToken: metricsToken,
                                                logger: logger) { url, directory in
            // Unbuffered: whoever started the server (a script, a test) reads this line.
            FileHandle.standardOutput.write(Data("fastgpu server listening on \(url) (data in \(directory))\n".utf8))
        } onGateway: { url in
            FileHandle.standardOutput.write(Data("fastgpu gateway listening on \(url)\n".utf8))
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
    /// Held until the process ends.
    var lock: DirectoryLock

    static func make(dataDir: String?, host: String, port: Int, gatewayPort: Int? = nil, configuration: ControlPlaneConfiguration,
                     limits: RequestLimits = RequestLimits(), tls: TLSFiles? = nil, oidc: OIDCSettings? = nil, metricsToken: String? = nil, logger: Logger,
                     onRunning: @escaping @Sendable (_ url: String, _ directory: String) -> Void,
                     onGateway: @escaping @Sendable (_ url: String) -> Void = { _ in }) async throws -> LocalServer {
        let directory = dataDir ?? (CLIConfig.home + "/.fastgpu")
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw CommandFailure("cannot create the data directory \(directory): \(error.localizedDescription)")
        }
        // One server per data directory, for its whole life (a restore checks the same lock).
        let lock: DirectoryLock
        do { lock = try DirectoryLock(directory: directory) } catch { throw CommandFailure("\(error)") }
        let store: SQLiteClusterStore
        do { store = try SQLiteClusterStore(path: directory + "/" + SQLiteClusterStore.databaseFileName) } catch { throw CommandFailure("\(error)") }
        // Secrets are sealed with a key kept beside the database, in a file of its own (0600):
        // back both up, and keep them apart.
        let secretBox: SecretBox
        do { secretBox = try SecretBox.loadOrCreate(at: directory + "/secret-key") } catch { throw CommandFailure("\(error)") }
        // The `local` storage backend keeps its objects beside the database.
        let assembly = try await ServerAssembly.build(store: store, secretBox: secretBox, configuration: configuration, limits: limits, logger: logger,
                                                      localStorage: LocalObjectStore(root: directory + "/objects"), scheme: tls == nil ? "http" : "https",
                                                      oidc: oidc, metricsToken: metricsToken)
        if let token = assembly.bootstrapToken, writeAdminToken(token, directory: directory, logger: logger) == nil {
            throw CommandFailure("cannot write the admin token to \(directory)/admin-token; remove \(directory)/fastgpu.db and start again")
        }
        let (router, _) = assembly.api.makeRouter()
        let listener = try APIListener(host: host, port: port, limits: limits, tls: tls, logger: logger)
        let app = Application(
            router: router, server: listener.server, configuration: listener.configuration,
            onServerRunning: { channel in onRunning(listener.url(of: channel), directory) },
            logger: logger)
        var services: [any Service] = [app, assembly.scheduling, assembly.liveness, assembly.serviceReconciler]
        if let gatewayPort {
            // The gateway has a port of its own: its connections, limits and paths are not the API's.
            let gateway = Application(
                responder: assembly.gateway.responder,
                server: .http1(configuration: .init(idleTimeout: .seconds(Int64(limits.idleTimeout.components.seconds)))),
                configuration: .init(address: .hostname(host, port: gatewayPort), serverName: "fastgpu-gateway"),
                onServerRunning: { [gatewayAddress = assembly.gatewayAddress] channel in
                    let address = channel.localAddress.map { "\($0.ipAddress ?? "?"):\($0.port ?? 0)" } ?? "?"
                    if let port = channel.localAddress?.port { gatewayAddress.listening(on: port) }
                    onGateway("http://\(address)")
                },
                logger: logger)
            services += assembly.gateway.services
            services.append(gateway)
        }
        return LocalServer(services: services, controlPlane: assembly.controlPlane, directory: directory, lock: lock)
    }
}

/// How the API listens, for a server on SQLite or on PostgreSQL alike: connections are capped
/// below the descriptor limit (raised to its hard maximum first), so a flood of connections
/// queues in the kernel instead of starving the store of files; each address has a cap of its
/// own; idle connections close; https where a certificate is given.
struct APIListener {
    let server: HTTPServerBuilder
    let configuration: ApplicationConfiguration
    let scheme: String

    init(host: String, port: Int, limits: RequestLimits, tls: TLSFiles?, logger: Logger) throws {
        let descriptors = raiseDescriptorLimit()
        let cap = limits.connectionCap(descriptorLimit: descriptors)
        let perAddress = ConnectionsPerAddress(limit: min(cap, limits.maxConnectionsPerAddress))
        logger.info("accepting at most \(cap) connections (descriptor limit \(descriptors)); idle ones close after \(limits.idleTimeout)")
        let http1: HTTPServerBuilder = .http1(configuration: .init(additionalChannelHandlers: [perAddress.handler()],
                                                                   idleTimeout: .seconds(Int64(limits.idleTimeout.components.seconds))))
        server = try tls.map { try HTTPServerBuilder.tls(http1, tlsConfiguration: $0.configuration) } ?? http1
        configuration = .init(address: .hostname(host, port: port), serverName: "fastgpu",
                              availableConnectionsDelegate: MaximumAvailableConnections(cap, logger: logger))
        scheme = tls == nil ? "http" : "https"
    }

    /// The URL the listener answers at (an IPv6 address in brackets).
    func url(of channel: any Channel) -> String {
        let address = channel.localAddress.map { local -> String in
            let ip = local.ipAddress ?? "?"
            return "\(ip.contains(":") ? "[\(ip)]" : ip):\(local.port ?? 0)"
        } ?? "?"
        return "\(scheme)://\(address)"
    }
}

/// Writes the first cluster-admin token to DIRECTORY/admin-token (0600) and says so; the path,
/// or nil when it cannot be written.
func writeAdminToken(_ token: String, directory: String, logger: Logger) -> String? {
    let path = directory + "/admin-token"
    guard FileManager.default.createFile(atPath: path, contents: Data((token + "\n").utf8), attributes: [.posixPermissions: 0o600]) else { return nil }
    logger.notice("first start: created project 'default' and a cluster-admin token", metadata: ["token-file": "\(path)"])
    return path
}

/// The certificate and key `fastgpu server` serves https with, read at start so that a bad
/// file is one clear line before anything listens.
struct TLSFiles {
    let configuration: TLSConfiguration

    init(certificate: String, key: String) throws {
        do {
            let chain = try NIOSSLCertificate.fromPEMFile(certificate).map { NIOSSLCertificateSource.certificate($0) }
            guard !chain.isEmpty else { throw CommandFailure("\(certificate) holds no PEM certificate") }
            let privateKey = try NIOSSLPrivateKey(file: key, format: .pem)
            configuration = TLSConfiguration.makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(privateKey))
        } catch let failure as CommandFailure {
            throw failure
        } catch {
            throw CommandFailure("cannot use --tls-cert \(certificate) and --tls-key \(key): \(error)")
        }
    }
}

/// Raises the soft limit on open files to the hard one; returns the limit now in force.
func raiseDescriptorLimit() -> Int {
    var limit = rlimit()
    guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 1024 }
    if limit.rlim_cur < limit.rlim_max {
        var raised = limit
        raised.rlim_cur = limit.rlim_max
        if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 { limit = raised }
    }
    return Int(clamping: limit.rlim_cur)
}

/// A failure at run time (not a misuse of the command line): one line, no usage text.
struct CommandFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
