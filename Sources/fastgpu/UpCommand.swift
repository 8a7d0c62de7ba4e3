import ArgumentParser
import FastGPUAgent
import FastGPUControlPlane
import FastGPUScheduler
import Foundation
import Logging
import ServiceLifecycle

struct UpCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "up",
        abstract: "A local GPU cloud in one command: the control plane and local agents.",
        discussion: """
            Starts the server with its SQLite file in the data directory and --nodes local agents: \
            with the GPUs nvidia-smi reports, or simulated ones (--simulate-gpus, default \
            8xH100-80GB) where there is no NVIDIA driver. Ctrl-C stops it; the next `fastgpu up` \
            with the same data directory finds every job, and re-attaches to work still running.
            """
    )

    @Option(help: "Directory of the database, the admin token and the agents' state (default: ~/.fastgpu).")
    var dataDir: String?

    @Option(help: "Port of the API (0: a free one).")
    var port = 8470

    @Option(help: "Port of the gateway that routes /{service}/... to services' replicas (default 8471, or a free one with --port 0; 0: a free one).")
    var gatewayPort: Int?

    @Option(help: "Local agents (nodes) to start.")
    var nodes = 1

    @Option(name: .customLong("simulate-gpus"), help: "Simulated GPUs per node, COUNTxMODEL (repeatable); default: nvidia-smi's, else 8xH100-80GB.")
    var simulateGPUs: [String] = []

    @Option(help: "CPU cores each node offers to jobs (default: this machine's; with simulated GPUs at least 4 per GPU).")
    var cpus: Int?

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel = "notice"

    @Flag(name: .customLong("require-containers"), help: "Every job runs in a container (with --default-image for jobs that name none); refuse to start without podman.")
    var requireContainers = false

    @Option(help: ArgumentHelp("The image of a job that names none, with --require-containers.", valueName: "image"))
    var defaultImage: String?

    func validate() throws {
        guard (1...64).contains(nodes) else { throw ValidationError("--nodes must be 1 to 64") }
        if let cpus { guard (1...100_000).contains(cpus) else { throw ValidationError("--cpus must be 1 to 100000") } }
    }

    func run() async throws {
        // The agents need the port before the server has bound it.
        let port = self.port == 0 ? try Self.freePort() : self.port
        var logger = Logger(label: "fastgpu.up")
        logger.logLevel = Logger.Level(rawValue: logLevel) ?? .notice
        var specs = simulateGPUs
        let real = NvidiaSMIProbe()
        if specs.isEmpty && (try? real.probe()) == nil { specs = ["8xH100-80GB"] }
        let gpusText = specs.isEmpty ? "the GPUs nvidia-smi reports" : specs.joined(separator: " + ") + " (simulated)"
        let server = try await LocalServer.make(dataDir: dataDir, host: "127.0.0.1", port: port, gatewayPort: gatewayPort ?? (self.port == 0 ? 0 : 8471),
                                                configuration: .running(SchedulingPolicy.named(SchedulingPolicy.defaultName)!),
                                                logger: logger, onRunning: { url, directory in
            let program = CommandLine.arguments[0].contains("/") ? CommandLine.arguments[0] : "fastgpu"
            let local = url == CLIConfig.localServer && directory == CLIConfig.home + "/.fastgpu"
            let login = local ? "" : "  \(program) login --server \(url) --token-file \(directory)/admin-token\n"
            FileHandle.standardOutput.write(Data("""
                FastGPU is up at \(url): \(nodes) node(s) with \(gpusText).
                Admin token: \(directory)/admin-token
                Next, in another terminal:
                \(login)  \(program) run --gpus H100:2 -- sh -c 'echo hello from GPUs $CUDA_VISIBLE_DEVICES'
                  \(program) jobs ls --all
                  \(program) nodes
                  \(program) ui          # a link that signs you in to the web dashboard, \(url)/ui
                Results go to its own bucket: --output out=s3://local/results/{job_id}/ (objects in \(directory)/objects).
                Ctrl-C stops it; jobs stay in \(directory)/fastgpu.db.

                """.utf8))
        }, onGateway: { url in
            FileHandle.standardOutput.write(Data("Services answer at \(url)/{service}/ (fastgpu serve up svc.yaml).\n".utf8))
        })
        // The local agents' join token: minted in-process by the cluster admin.
        let admin = Principal(tokenID: 0, kind: .user, subject: "admin", clusterAdmin: true, nodeID: nil)
        let join = try await server.controlPlane.createToken(name: "fastgpu up", kind: .join, subject: nil, clusterAdmin: false,
                                                             expiresAt: nil, by: admin).secret ?? ""
        var agents: [any Service] = []
        for n in 1...nodes {
            let name = "local-\(n)"
            let probe: any DeviceProbe = specs.isEmpty ? real : try SimulatedProbe(specs: specs, node: name)
            // Simulated GPUs on a small machine would otherwise be starved of CPU by the default
            // request (1 core a job); GPU servers commonly have 4 or more cores per GPU.
            let cores = ProcessInfo.processInfo.activeProcessorCount
            let offered = cpus ?? (specs.isEmpty ? cores : max(cores, 4 * ((try? probe.probe().count) ?? 0)))
            var configuration = AgentConfiguration(
                server: "http://127.0.0.1:\(port)", joinToken: join, dataDirectory: server.directory + "/agents/\(name)", nodeName: name,
                address: "127.0.0.1", probe: probe, cpuMillis: offered * 1000,
                memoryMiB: Int(ProcessInfo.processInfo.physicalMemory / 1_048_576))
            // The server's database, key file and admin token are no workload's to read.
            configuration.hiddenPaths = [server.directory]
            if requireContainers { configuration.containers = .required }
            configuration.defaultImage = defaultImage
            agents.append(AgentService(agent: Agent(configuration: configuration, logger: logger)))
        }
        // Started in this order, stopped in reverse: the agents first, the API last.
        let group = ServiceGroup(configuration: .init(services: (server.services + agents).map { .init(service: $0) },
                                                      gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }
}

extension UpCommand {
    /// A port nothing listens on now, from the kernel.
    static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw CommandFailure("cannot open a socket to find a free port") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
        guard bound == 0 else { throw CommandFailure("cannot bind a socket to find a free port") }
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}

/// An agent as a service of `fastgpu up`: stopped at shutdown, its workloads left to the next start.
struct AgentService: Service {
    let agent: Agent

    func run() async throws {
        do {
            try await cancelWhenGracefulShutdown { try await agent.run() }
        } catch is CancellationError {
            // Stopped by the shutdown: its workloads go on, and the next start re-attaches.
        }
    }
}
