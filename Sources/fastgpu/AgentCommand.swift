import ArgumentParser
import FastGPUAgent
import Foundation
import Logging

struct AgentCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "agent",
        abstract: "Run the agent of one GPU server: register it, run its allocations, ship their output.",
        discussion: """
            The first start registers the node with a join token and keeps its own credential in \
            DATA-DIR/agent-state.json (mode 0600); later starts, even after kill -9, re-attach to \
            the workloads still running instead of starting them again. GPUs come from nvidia-smi, \
            or from --simulate-gpus on machines without any.
            """
    )

    @Option(help: "URL of the control plane, e.g. http://127.0.0.1:8470, or the URLs of several, comma-separated (the agent moves on when one fails).")
    var server: String

    @Option(help: "Join token for the first registration (or FASTGPU_JOIN_TOKEN).")
    var joinToken: String?

    @Option(help: "Directory of the agent's state and its workloads' output (default: ~/.fastgpu/agent).")
    var dataDir: String?

    @Option(help: "Node name (default: the host name).")
    var name: String?

    @Option(help: "Address peers reach this node at, for multi-node jobs (default: 127.0.0.1).")
    var address = "127.0.0.1"

    @Option(name: .customLong("simulate-gpus"), help: "Simulated GPUs, COUNTxMODEL (repeatable): --simulate-gpus 8xH100-80GB.")
    var simulateGPUs: [String] = []

    @Option(name: .customLong("nvidia-smi"), help: "Path of nvidia-smi.")
    var nvidiaSMI = "/usr/bin/nvidia-smi"

    @Option(help: "CPU cores offered to jobs (default: all).")
    var cpus: Int?

    @Option(name: .customLong("memory-mib"), help: "Memory offered to jobs in MiB (default: all).")
    var memoryMiB: Int?

    @Flag(name: .customLong("no-cgroups"), help: "Do not enforce jobs' CPU and memory requests through cgroups.")
    var noCgroups = false

    @Option(help: ArgumentHelp("PEM file of the CA that signed an https server's certificate.", valueName: "file"))
    var caFile: String?

    @Option(help: "Seconds a stopped job gets between SIGTERM and SIGKILL (0 to 3600).")
    var stopGrace = 10

    @Option(help: "Seconds after which a ready replica's readiness is reported again, in case a report was lost (1 to 3600).")
    var replicaReannounce = 10

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel = "info"

    @Option(help: ArgumentHelp("auto: host processes run as their project's user with a private /tmp, unable to see other jobs (needs root); off: as the agent's user.", valueName: "auto|off"))
    var isolation = "auto"

    @Option(help: ArgumentHelp("auto: jobs that name an image run with podman where it is installed; off: never; required: every job runs in a container.", valueName: "auto|off|required"))
    var containers = "auto"

    @Flag(name: .customLong("require-containers"), help: "Every job runs in a container (same as --containers required); the agent does not start without podman.")
    var requireContainers = false

    @Option(help: ArgumentHelp("The image of a job that names none, where containers are required.", valueName: "image"))
    var defaultImage: String?

    @Option(help: ArgumentHelp("Where the GPUs' device nodes are.", valueName: "dir"))
    var deviceRoot = "/dev"

    @Option(help: ArgumentHelp("Project P's user is this + P × 65536.", valueName: "uid"))
    var projectUidBase: UInt32 = 200_000

    @Option(help: ArgumentHelp("The MPS control daemon's pipe directory (default: /tmp/nvidia-mps when a daemon listens there).", valueName: "dir"))
    var mpsPipeDir: String?

    func run() async throws {
        let directory = dataDir ?? (CLIConfig.home + "/.fastgpu/agent")
        let nodeName = name ?? ProcessInfo.processInfo.hostName
        let probe: any DeviceProbe
        do {
            probe = simulateGPUs.isEmpty ? NvidiaSMIProbe(executable: nvidiaSMI) : try SimulatedProbe(specs: simulateGPUs, node: nodeName)
            _ = try probe.probe()
        } catch {
            throw CommandFailure("\(error)\(simulateGPUs.isEmpty ? "; on a machine without GPUs use --simulate-gpus 8xH100-80GB" : "")")
        }
        var logger = Logger(label: "fastgpu.agent")
        logger.logLevel = Logger.Level(rawValue: logLevel) ?? .info
        var configuration = AgentConfiguration(
            server: server, joinToken: joinToken ?? ProcessInfo.processInfo.environment["FASTGPU_JOIN_TOKEN"], dataDirectory: directory,
            nodeName: nodeName, address: address, probe: probe,
            cpuMillis: (cpus ?? ProcessInfo.processInfo.activeProcessorCount) * 1000,
            memoryMiB: memoryMiB ?? Int(ProcessInfo.processInfo.physicalMemory / 1_048_576))
        configuration.cgroups = !noCgroups
        guard (0...3600).contains(stopGrace) else { throw ValidationError("--stop-grace must be 0 to 3600 seconds") }
        configuration.stopGrace = .seconds(stopGrace)
        guard (1...3600).contains(replicaReannounce) else { throw ValidationError("--replica-reannounce must be 1 to 3600 seconds") }
        configuration.replicaReannounce = .seconds(replicaReannounce)
        if let caFile {
            guard FileManager.default.isReadableFile(atPath: caFile) else { throw CommandFailure("cannot read the CA file \(caFile)") }
            configuration.caFile = caFile
        }
        guard let isolation = AgentConfiguration.Isolation(rawValue: isolation) else { throw CommandFailure("--isolation must be auto or off, not '\(isolation.prefix(32))'") }
        guard let containers = AgentConfiguration.Containers(rawValue: requireContainers ? "required" : containers) else {
            throw CommandFailure("--containers must be auto, off or required, not '\(containers.prefix(32))'")
        }
        guard projectUidBase >= 1000, projectUidBase < UInt32.max - 65_536 else { throw CommandFailure("--project-uid-base must be 1000 to \(UInt32.max - 65_537)") }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: deviceRoot, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw CommandFailure("--device-root \(deviceRoot) is not a directory")
        }
        configuration.isolation = isolation
        configuration.containers = containers
        configuration.defaultImage = defaultImage
        configuration.deviceRoot = deviceRoot
        configuration.projectUIDBase = projectUidBase
        configuration.mpsPipeDirectory = mpsPipeDir
        do {
            try await Agent(configuration: configuration, logger: logger).run()
        } catch {
            throw CommandFailure("\(error)")
        }
    }
}
