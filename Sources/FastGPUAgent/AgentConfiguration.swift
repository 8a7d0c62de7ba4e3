import FastGPUClient
import Foundation

public struct AgentConfiguration: Sendable {
    public var server: String
    public var joinToken: String?
    /// Where the agent keeps its credential, its workloads' state and their output.
    public var dataDirectory: String
    public var nodeName: String
    /// How peers reach this node (gangs' FASTGPU_MASTER_ADDR).
    public var address: String
    public var probe: any DeviceProbe
    public var cpuMillis: Int
    public var memoryMiB: Int
    public var heartbeatInterval: Duration = .seconds(1)
    /// How often the GPUs are probed again for health, power and energy (sent with the next heartbeat).
    public var probeInterval: Duration = .seconds(10)
    /// Between SIGTERM and SIGKILL when a workload is stopped.
    public var stopGrace: Duration = .seconds(10)
    /// A ready replica's readiness is told to the control plane again after this long, in case
    /// the first report was lost (its changes are told at once).
    public var replicaReannounce: Duration = .seconds(10)
    /// Seconds a blocking assignment query waits.
    public var pollWait: Int = 30
    /// How often output files are shipped and exits looked for.
    public var superviseInterval: Duration = .milliseconds(100)
    /// Enforce each allocation's CPU and memory through cgroups where the machine allows.
    public var cgroups = true
    /// PEM file of the CA that signed an https control plane's certificate (nil: the system's roots).
    public var caFile: String?
    /// Host processes as their project's user in their own namespaces (`auto`: when the agent
    /// runs as root, which switching users needs), or as the agent's user (`off`).
    public var isolation: Isolation = .auto
    /// Containers for jobs that name an image (`auto`: where podman is installed); `required`:
    /// every job runs in a container (the default image for one that names none), and the agent
    /// does not start without a runtime.
    public var containers: Containers = .auto
    /// The image of a job that names none, on a node that requires containers.
    public var defaultImage: String?
    /// Where the GPUs' device nodes are.
    public var deviceRoot = "/dev"
    /// Project P's user is `projectUIDBase + P × 65,536`.
    public var projectUIDBase: UInt32 = 200_000
    /// The MPS control daemon's pipe directory (nil: `/tmp/nvidia-mps` when a daemon listens there).
    public var mpsPipeDirectory: String?
    /// More paths a workload must not see (`fastgpu up`: the server's data directory).
    public var hiddenPaths: [String] = []

    public enum Isolation: String, Sendable, CaseIterable { case auto, off }
    public enum Containers: String, Sendable, CaseIterable { case auto, off, required }

    public init(server: String, joinToken: String?, dataDirectory: String, nodeName: String, address: String, probe: any DeviceProbe,
                cpuMillis: Int, memoryMiB: Int) {
        self.server = server.hasSuffix("/") ? String(server.dropLast()) : server
        self.joinToken = joinToken
        self.dataDirectory = dataDirectory
        self.nodeName = nodeName
        self.address = address
        self.probe = probe
        self.cpuMillis = cpuMillis
        self.memoryMiB = memoryMiB
    }
}

/// What the agent keeps on disk so that an agent killed with -9 and started again re-attaches to
/// its running workloads instead of starting second copies.
struct LocalState: Codable {
    var server: String
    var nodeID: UInt64
    var token: String
    var workloads: [UInt64: Workload]
    /// Exits no control plane has acknowledged yet (kept across a restart of the agent, so that
    /// a job that ended during an outage is not taken for lost and run again).
    var unreportedExits: [UInt64: UnreportedExit]?

    struct UnreportedExit: Codable, Equatable {
        var epoch: UInt64
        var code: Int32
    }

    /// The saved state belongs to this agent's cluster when it names one of the same control
    /// planes (a list may be reordered or grow between starts).
    func isFor(servers: String) -> Bool {
        !Set(ServerList(server).urls).isDisjoint(with: ServerList(servers).urls)
    }
}

struct Workload: Codable, Equatable {
    var allocation: UInt64
    var epoch: UInt64
    var job: UInt64
    /// The wrapper's pid, read from the `pid` file it writes; 0 until known.
    var pid: Int32
    var command: [String]
    var environment: [String: String]
    var directory: String
    var shipped: [String: UInt64]
    var nextSequence: Int64
    var reportedRunning: Bool
    var stoppingSince: Date?
    /// SIGTERM has been sent to the process group.
    var signalled: Bool = false
    /// When SIGKILL was first sent, after the grace.
    var killedAt: Date? = nil
    var deadline: Date?
    var limitExceeded: Bool
    /// The `cgroup.procs` files of the allocation's groups, which its wrapper joins.
    var cgroups: [String]? = nil
    /// How it runs (nil: a host process, as an agent before isolation wrote it).
    var sandbox: WorkloadSandbox? = nil
    /// What runs before the job's command: the namespace set-up or `podman run … IMAGE`.
    var launcher: [String]? = nil
    /// Shell run by the wrapper first (a container's image pull).
    var prelude: String? = nil
    /// Its wrapper downloads the job's inputs first (and says so in `phase`).
    var fetchesInputs: Bool? = nil
    /// Why this node cannot run it; it fails with this reason instead of starting.
    var refusal: String? = nil
    /// The `pulling` phase was logged.
    var sawPulling: Bool? = nil
    /// A service's replica: its port and readiness probe.
    var replica: ReplicaProbe? = nil
    /// Steps started in it, by id.
    var steps: [UInt64: StepRun]? = nil
    /// The node's GPUs it holds (indices), for simulated GPUs' readings.
    var gpus: [Int]? = nil
}

/// A step the agent started in an allocation: what of its output it has reported.
struct StepRun: Codable, Equatable {
    var reportedStart = false
    var stdoutShipped: UInt64 = 0
    var stderrShipped: UInt64 = 0
    /// Its exit was reported (or the control plane no longer knows it).
    var done = false
}
