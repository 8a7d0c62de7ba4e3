import AsyncHTTPClient
import NIOSSL
import FastGPUClient
import FastGPUWire
import Foundation
public import Logging

/// The agent on a GPU server: registers its node, heartbeats, long-polls its assignments, runs
/// each allocation as a process group with exactly its devices and context in the environment,
/// ships its output, reports its exit, and stops what is no longer assigned.
///
/// A workload runs under `/bin/sh`, which writes its output and, at the end, its exit code into
/// the allocation's directory: the agent reads files, not pipes, so it can die and come back
/// without losing a line or an exit code.
///
/// Never two copies: the workload is recorded in the agent's state *before* it is spawned, and
/// the wrapper first claims the allocation's directory (`mkdir claimed`, atomic); a wrapper that
/// loses the claim exits without running anything. The agent learns the pid from the `pid` file
/// the winning wrapper writes, so an agent killed at any point and started again adopts the one
/// running copy, or starts it if none ever did.
public actor Agent {
    let configuration: AgentConfiguration
    let logger: Logger
    let http: HTTPClient
    let client: AgentClient
    var state: LocalState?
    var gpus: [ProbedGPU] = []
    var lastProbe = ContinuousClock.now
    /// For simulated GPUs' readings: each workload's CPU time when last read, and when.
    var simulatedLoad: [UInt64: UInt64] = [:]
    var lastSimulated: ContinuousClock.Instant?
    var simulatedEnergy: [Int: Double] = [:]
    var assignmentIndex: UInt64 = 0
    /// The newest step id the assignments listed: a newer one answers the long poll at once.
    var stepsSeen: UInt64 = 0
    /// Workloads this run of the agent has spawned (a restarted agent spawns only unclaimed ones).
    var spawned: Set<UInt64> = []
    /// Allocations whose exit is being reported (gone from `state`, still listed as running).
    var exiting: [UInt64: UInt64] = [:]
    /// Exit codes of allocations in `exiting` that no control plane has acknowledged yet.
    var unreportedExits: [UInt64: Int32] = [:]
    /// Steps (`allocation/step`) this run of the agent has spawned.
    var spawnedSteps: Set<String> = []
    var cgroups = Cgroups(mode: .unavailable("not detected yet"))
    /// Wakes the supervisor before its next tick: a workload this agent spawned has exited.
    var wake: AsyncStream<Void>.Continuation?
    /// podman, where jobs with an image can run.
    var containerRuntime: ContainerRuntime?
    /// Host processes run as their project's user in their own namespaces.
    var isolating = false
    /// Images a container of this agent has run from: the node has them, so the next job's
    /// wrapper does not ask podman first (~65 ms of its start).
    var presentImages: Set<String> = []
    /// Outputs to upload, by allocation, as the last assignments listed them.
    var uploadQueue: [UInt64: UploadAssignmentWire] = [:]
    /// Uploads reported (allocation and generation) and not yet gone from the assignments:
    /// not uploaded twice meanwhile; a retry comes with a new generation.
    var uploadsReported: Set<String> = []
    /// Wakes the upload loop: the assignments changed.
    var uploadWake: AsyncStream<Void>.Continuation?
    /// Allocations whose outputs the last assignments listed, or that upload now: their files stay.
    var uploadsListed: Set<UInt64> = []
    var uploadingNow: UInt64?
    /// When ended allocations' directories were last swept.
    var lastSweep: Date?
    /// This agent's own executable, whose `exec-env` gives a workload its environment.
    let execHelper: String = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    /// The wrapper runs as root with this environment, never the job's.
    static let wrapperEnvironment = ["PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C",
                                     "HOME": ProcessInfo.processInfo.environment["HOME"] ?? "/root"]

    public init(configuration: AgentConfiguration, logger: Logger = Logger(label: "fastgpu.agent")) {
        self.configuration = configuration
        self.logger = logger
        var settings = HTTPClient.Configuration()
        if let caFile = configuration.caFile {
            var tls = TLSConfiguration.makeClientConfiguration()
            tls.trustRoots = .file(caFile)
            settings.tlsConfiguration = tls
        }
        // A refused connection fails at once: the agent moves to the next control plane, or retries.
        settings.connectionPool.retryConnectionEstablishment = false
        http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: settings)
        client = AgentClient(servers: ServerList(configuration.server), http: http)
    }

    var statePath: String { configuration.dataDirectory + "/agent-state.json" }

    /// Registers (or re-attaches) and then runs until cancelled or the credential is refused.
    public func run() async throws {
        do {
            try await start()
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await self.heartbeatLoop() }
                group.addTask { try await self.assignmentLoop() }
                group.addTask { try await self.supervisorLoop() }
                group.addTask { try await self.readinessLoop() }
                group.addTask { try await self.uploadLoop() }
                try await group.next()
                group.cancelAll()
            }
        } catch {
            try? await http.shutdown()
            throw error
        }
        try? await http.shutdown()
    }

    /// The node id once registered.
    public var nodeID: UInt64? { state?.nodeID }

    /// Reads the GPUs again, off the actor (nvidia-smi takes a while): health, power and energy
    /// move; the list itself does not. A GPU the driver no longer lists is unhealthy; a probe
    /// that fails keeps what was last read.
    func probeAgain() async {
        lastProbe = .now
        let probe = configuration.probe
        let result = await Task.detached { Result { try probe.probe() } }.value
        switch result {
        case .success(let fresh):
            gpus = gpus.map { old in
                guard var now = fresh.first(where: { $0.index == old.index }) else {
                    var gone = old
                    gone.healthy = false
                    gone.healthReason = "no longer listed by the driver"
                    gone.powerWatts = nil
                    return gone
                }
                now.island = now.island ?? old.island
                return now
            }
            simulateReadings()
        case .failure(let error):
            logger.warning("probing the GPUs failed; their last reading stands", metadata: ["error": "\(error)"])
        }
    }

    func start() async throws {
        try FileManager.default.createDirectory(atPath: configuration.dataDirectory + "/allocations", withIntermediateDirectories: true)
        gpus = try configuration.probe.probe()
        simulateReadings()
        // Named by node and data directory: two agents on one machine (two `fastgpu up`, a test
        // suite) must never share a cgroup, since a stop signals every process in it.
        let instance = configuration.nodeName + "-" + Self.shortHash(configuration.dataDirectory)
        cgroups = configuration.cgroups ? Cgroups.detect(node: instance) : Cgroups(mode: .unavailable("turned off with --no-cgroups"))
        if cgroups.enforced { logger.notice("\(cgroups.summary)") } else { logger.warning("\(cgroups.summary)") }
        try prepareIsolation()
        if let data = FileManager.default.contents(atPath: statePath), let saved = try? JSONDecoder().decode(LocalState.self, from: data),
           saved.isFor(servers: configuration.server) {
            state = saved
            state?.server = configuration.server
            for (id, exit) in saved.unreportedExits ?? [:] {
                exiting[id] = exit.epoch
                unreportedExits[id] = exit.code
            }
            logger.notice("re-attached to node \(saved.nodeID) with \(saved.workloads.count) workload(s) from \(statePath)")
            return
        }
        guard let join = configuration.joinToken else {
            throw AgentClient.Failure(status: 0, description: "no saved credential in \(statePath) and no --join-token to register with")
        }
        // An agent may start before its server: a server that does not answer (yet) is waited
        // for, for a minute; one that answers with a refusal is not.
        var labels = ["fastgpu.io/address": configuration.address]
        if containerRuntime != nil { labels["fastgpu.io/containers"] = "podman" }
        let (client, gpus, configuration, logger) = (client, gpus, configuration, logger)
        let registered = try await retrying(attempts: 240, every: .milliseconds(250), when: { !($0 is AgentClient.Failure) }, onRetry: { attempt, error in
            if attempt == 1 || attempt % 20 == 0 { logger.notice("waiting for the server at \(configuration.server): \(error)") }
        }) {
            try await client.register(joinToken: join, name: configuration.nodeName, cpuMillis: configuration.cpuMillis,
                                      memoryMiB: configuration.memoryMiB, labels: labels, gpus: gpus)
        }
        state = LocalState(server: configuration.server, nodeID: registered.node.id, token: registered.token, workloads: [:])
        try save()
        logger.notice("registered as node \(registered.node.id) with \(gpus.count) GPU(s)")
    }

    /// 8 hex digits of FNV-1a: tells data directories apart in a cgroup's name.
    static func shortHash(_ text: String) -> String {
        var hash: UInt32 = 0x811c_9dc5
        for byte in text.utf8 { hash = (hash ^ UInt32(byte)) &* 0x0100_0193 }
        let digits = String(hash, radix: 16)
        return String(repeating: "0", count: 8 - digits.count) + digits
    }

    func save() throws {
        guard var state else { return }
        state.unreportedExits = unreportedExits.isEmpty ? nil : Dictionary(uniqueKeysWithValues: unreportedExits.compactMap { id, code in
            exiting[id].map { (id, LocalState.UnreportedExit(epoch: $0, code: code)) }
        })
        let data = try JSONEncoder().encode(state)
        let temporary = statePath + ".tmp"
        guard FileManager.default.createFile(atPath: temporary, contents: data, attributes: [.posixPermissions: 0o600]) else {
            throw AgentClient.Failure(status: 0, description: "cannot write \(temporary)")
        }
        guard rename(temporary, statePath) == 0 else {
            throw AgentClient.Failure(status: 0, description: "cannot replace \(statePath): \(String(cString: strerror(errno)))")
        }
    }

    // MARK: Loops

    func heartbeatLoop() async throws {
        while !Task.isCancelled {
            do {
                try await heartbeat()
            } catch let failure as AgentClient.Failure where failure.status == 401 {
                throw failure
            } catch is CancellationError {
                return
            } catch {
                logger.warning("heartbeat failed: \(error)")
            }
            try await Task.sleep(for: configuration.heartbeatInterval)
        }
    }

    func heartbeat() async throws {
        guard state != nil else { return }
        if ContinuousClock.now - lastProbe >= configuration.probeInterval { await probeAgain() }
        guard let state else { return }
        // Every workload this agent holds, started, about to be, or stopping: the control plane
        // treats a live allocation missing from this list as lost. (One it has already ended is
        // ignored there; one stopping for its runtime limit is still live and ends with 124
        // once no process of it is left, not as lost and retried while its grace runs.)
        let running = state.workloads.values.map { (allocation: $0.allocation, epoch: $0.epoch) }
            + exiting.filter { state.workloads[$0.key] == nil }.map { (allocation: $0.key, epoch: $0.value) }
        // Reconciling runs in one turn of this actor: `running` reflects every assignment change
        // up to `assignmentIndex`, so the control plane may free what is not in it.
        _ = try await client.heartbeat(node: state.nodeID, token: state.token, gpus: gpus, running: running, assignmentIndex: assignmentIndex)
        // After the heartbeat, so that a slow resend never makes the node late.
        await resendExits()
    }

    func assignmentLoop() async throws {
        while !Task.isCancelled {
            guard let state else { return }
            do {
                let assignments = try await client.assignments(node: state.nodeID, token: state.token, after: assignmentIndex, stepsSeen: stepsSeen,
                                                               wait: configuration.pollWait)
                try reconcile(assignments)
            } catch let failure as AgentClient.Failure where failure.status == 401 {
                throw failure
            } catch is CancellationError {
                return
            } catch {
                if Task.isCancelled { return }
                logger.warning("assignment query failed: \(error)")
                try await Task.sleep(for: .seconds(1))
            }
        }
    }

    /// Supervises on every tick, and at once when a workload this agent spawned exits: its GPUs
    /// go back to the scheduler without waiting for the tick.
    func supervisorLoop() async throws {
        let (wakeups, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        self.wake = wake
        let interval = configuration.superviseInterval
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                while !Task.isCancelled {
                    try await Task.sleep(for: interval)
                    wake.yield()
                }
            }
            for await _ in wakeups {
                if Task.isCancelled { break }
                await supervise()
            }
            group.cancelAll()
        }
    }

    // MARK: Reconciling

    func reconcile(_ assignments: AgentClient.Assignments) throws {
        guard var state else { return }
        assignmentIndex = assignments.index
        queueUploads(assignments.uploads ?? [])
        let desired = Dictionary(assignments.allocations.map { ($0.allocation.id, $0) }, uniquingKeysWith: { first, _ in first })
        for (id, workload) in state.workloads where workload.stoppingSince == nil {
            if desired[id]?.allocation.epoch != workload.epoch {
                // No longer ours (cancelled, preempted, lost): stop the whole process group.
                if workload.pid > 0 {
                    WorkloadProcesses.signal(SIGTERM, group: workload.pid, cgroups: workload.cgroups ?? [])
                    state.workloads[id]?.signalled = true
                }
                signalSteps(SIGTERM, of: workload)
                state.workloads[id]?.stoppingSince = Date()
                logger.info("stopping allocation \(id) (no longer assigned)")
            }
        }
        var fresh: [UInt64] = []
        for (id, assignment) in desired.sorted(by: { $0.key < $1.key }) where state.workloads[id] == nil {
            do {
                state.workloads[id] = try prepare(assignment)
                fresh.append(id)
            } catch {
                logger.error("cannot prepare allocation \(id): \(error)")
            }
        }
        // Steps of the allocations it runs (host processes; a container's are refused upstream).
        var freshSteps: [(allocation: UInt64, step: StepAssignmentWire)] = []
        for (id, assignment) in desired.sorted(by: { $0.key < $1.key }) {
            for step in assignment.steps ?? [] {
                stepsSeen = max(stepsSeen, step.id)
                guard let workload = state.workloads[id], workload.epoch == assignment.allocation.epoch, workload.stoppingSince == nil,
                      workload.steps?[step.id] == nil else { continue }
                state.workloads[id]?.steps = (workload.steps ?? [:]).merging([step.id: StepRun()]) { old, _ in old }
                freshSteps.append((id, step))
            }
        }
        self.state = state
        // Recorded first, spawned second: an agent that dies in between finds the record.
        try save()
        for id in fresh {
            guard let workload = self.state?.workloads[id] else { continue }
            launch(workload)
        }
        for (id, step) in freshSteps {
            guard let workload = self.state?.workloads[id] else { continue }
            launchStep(step, in: workload)
        }
    }

    /// The environment a workload sees: its devices (as the node numbers them; a container
    /// renumbers) and its place in the job, nothing of the agent's.
    func environment(for assignment: AgentClient.Assignment, node: GPUDeviceWiring.Node) -> [String: String] {
        var env = assignment.env
        let inherited = ProcessInfo.processInfo.environment
        env["PATH"] = env["PATH"] ?? inherited["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        env["HOME"] = env["HOME"] ?? inherited["HOME"] ?? "/"
        env.merge(GPUDeviceWiring.wiring(for: assignment.slots, gpuMemoryLimitMiB: assignment.gpuMemoryLimitMiB, node: node, renumbered: false).environment) { _, new in new }
        env["FASTGPU_JOB_ID"] = String(assignment.job)
        env["FASTGPU_JOB_NAME"] = assignment.jobName
        env["FASTGPU_ALLOCATION_ID"] = String(assignment.allocation.id)
        env["FASTGPU_EPOCH"] = String(assignment.allocation.epoch)
        if assignment.groupSize > 1 {
            env["FASTGPU_NUM_NODES"] = String(assignment.groupSize)
            env["FASTGPU_NODE_RANK"] = String(assignment.rank)
            if let address = assignment.masterAddress { env["FASTGPU_MASTER_ADDR"] = address }
            if let port = assignment.masterPort { env["FASTGPU_MASTER_PORT"] = String(port) }
        }
        return env
    }

    func prepare(_ assignment: AgentClient.Assignment) throws -> Workload {
        let directory = configuration.dataDirectory + "/allocations/\(assignment.allocation.id)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: directory + "/work", withIntermediateDirectories: true)
        for file in ["stdout", "stderr"] where !FileManager.default.fileExists(atPath: directory + "/" + file) {
            FileManager.default.createFile(atPath: directory + "/" + file, contents: nil)
        }
        var groups: [String] = []
        do {
            groups = try cgroups.create(allocation: assignment.allocation.id, cpuMillis: assignment.allocation.cpuMillis,
                                        memoryMiB: assignment.allocation.memoryMiB)
        } catch {
            logger.warning("allocation \(assignment.allocation.id): CPU and memory limits not applied: \(error)")
        }
        let node = deviceNode()
        var workload = Workload(allocation: assignment.allocation.id, epoch: assignment.allocation.epoch, job: assignment.job, pid: 0,
                                command: assignment.command, environment: environment(for: assignment, node: node),
                                directory: directory, shipped: [:], nextSequence: 0, reportedRunning: false, stoppingSince: nil,
                                deadline: assignment.maxRuntimeSeconds.map { Date().addingTimeInterval(TimeInterval($0)) }, limitExceeded: false,
                                cgroups: groups.isEmpty ? nil : groups)
        workload.gpus = assignment.allocation.slots.map { Array(Set($0.map(\.gpu))).sorted() }
        if let replica = assignment.replica {
            // The agent gives each replica a port: `$PORT` for a host process; a container
            // listens on its spec's port (or the same one) and podman publishes it here.
            guard let port = Self.freePort() else { throw NoFreePort() }
            workload.replica = ReplicaProbe(replica, hostPort: port)
            let inside = assignment.image != nil ? (replica.port ?? port) : port
            workload.environment["PORT"] = String(inside)
            workload.environment["FASTGPU_PORT"] = String(inside)
        }
        sandbox(&workload, for: assignment, node: node)
        if let inputs = assignment.inputs, !inputs.isEmpty { try prepareInputs(inputs, for: &workload) }
        return workload
    }

    /// The wrapper: claim the directory or leave; record its pid; join the allocation's cgroups
    /// (a job that cannot be held to its limits does not run: exit 125); run; record the exit
    /// code. Files are written then renamed, so a reader never sees half of one.
    static func wrapper(joining cgroups: [String] = [], prelude: String? = nil, environmentOnFD4: Bool = false) -> String {
        var script = #"mkdir claimed 2>/dev/null || exit 0; echo $$ > pid.tmp && mv pid.tmp pid; "#
        if !cgroups.isEmpty {
            let joins = cgroups.map { "echo $$ > '" + $0.replacingOccurrences(of: "'", with: #"'\''"#) + "'" }.joined(separator: " && ")
            script += #"{ \#(joins); } 2>/dev/null || { echo "fastgpu: cannot join the job's cgroup" >>stderr; echo 125 > exit-code.tmp && mv exit-code.tmp exit-code; exit 125; }; "#
        }
        script += prelude ?? ""
        // fd 4: the job's environment, opened here (as root) for `exec-env`, which runs as the job's user.
        let environment = environmentOnFD4 ? "exec 4<env; " : ""
        return script + #"( \#(environment)cd work 2>/dev/null; exec "$@" ) >>stdout 2>>stderr; code=$?; echo $code > exit-code.tmp && mv exit-code.tmp exit-code"#
    }

    /// Spawns the workload; one that cannot be spawned (a command that does not exist, an
    /// environment execve refuses) fails its allocation with the reason in its stderr, once,
    /// instead of being tried again on every tick.
    func launch(_ workload: Workload) {
        var workload = workload
        if workload.sandbox == nil && workload.refusal == nil {
            // Recorded by an agent from before isolation, and never started: it runs as a plain
            // host process only where this agent does not isolate.
            if isolating { workload.refusal = "prepared by an older agent without isolation; submit it again" }
            workload.launcher = [execHelper, "exec-env", "--fd", "4", "--"]
        }
        if let refusal = workload.refusal {
            logger.error("cannot start allocation \(workload.allocation): \(refusal)")
            Self.recordStartFailure(in: workload.directory, reason: refusal)
            return
        }
        do {
            try spawn(workload)
            logger.info("started allocation \(workload.allocation) of job \(workload.job)")
        } catch {
            logger.error("cannot start allocation \(workload.allocation): \(error)")
            Self.recordStartFailure(in: workload.directory, reason: "\(error.localizedDescription)")
        }
    }

    /// The job's environment in a file only root reads: NUL-separated for `exec-env`, or one
    /// `NAME=VALUE` a line for podman's `--env-file` (values without newlines: checked when prepared).
    static func writeEnvironment(_ environment: [String: String], to directory: String, lines: Bool) throws {
        let entries = environment.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
        let text = lines ? entries.joined(separator: "\n") + "\n" : entries.joined(separator: "\0") + "\0"
        let path = directory + (lines ? "/env.list" : "/env")
        let temporary = path + ".tmp"
        guard FileManager.default.createFile(atPath: temporary, contents: Data(text.utf8), attributes: [.posixPermissions: 0o600]),
              rename(temporary, path) == 0 else {
            throw AgentClient.Failure(status: 0, description: "cannot write the job's environment to \(path)")
        }
    }

    /// What a wrapper that could not run would leave: the claim, the reason, exit code 127.
    static func recordStartFailure(in directory: String, reason: String) {
        try? FileManager.default.createDirectory(atPath: directory + "/claimed", withIntermediateDirectories: true)
        if let handle = FileHandle(forWritingAtPath: directory + "/stderr") {
            handle.seekToEndOfFile()
            handle.write(Data("fastgpu: the job could not be started: \(reason)\n".utf8))
            try? handle.close()
        }
        FileManager.default.createFile(atPath: directory + "/exit-code", contents: Data("127\n".utf8))
    }

    func spawn(_ workload: Workload) throws {
        let container = workload.sandbox?.kind == .container
        try Self.writeEnvironment(workload.environment, to: workload.directory, lines: container)
        try runWrapper(Self.wrapper(joining: workload.cgroups ?? [], prelude: workload.prelude, environmentOnFD4: !container), named: "fastgpu-workload",
                       arguments: (workload.launcher ?? []) + workload.command, in: workload.directory)
        spawned.insert(workload.allocation)
    }

    /// Starts a wrapper script under /bin/sh in `directory`, as root with the wrapper's
    /// environment and no terminal; its exit wakes the supervisor.
    func runWrapper(_ script: String, named name: String, arguments: [String], in directory: String) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", script, name] + arguments
        process.currentDirectoryURL = URL(fileURLWithPath: directory)
        process.environment = Self.wrapperEnvironment
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        let wake = self.wake
        process.terminationHandler = { _ in wake?.yield() }
        try process.run()
    }

}
