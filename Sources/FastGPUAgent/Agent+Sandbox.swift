import FastGPUModel
import FastGPUWire
import Foundation
public import Logging

// Isolation: which runner a workload gets, its project's user, its devices and its walls.
extension Agent {
    /// Finds the container runtime and whether host processes can be isolated, says what holds,
    /// and writes the node's CDI spec. A node that requires containers and has no runtime does
    /// not start.
    func prepareIsolation() throws {
        switch configuration.containers {
        case .off:
            logger.notice("containers turned off: jobs that name an image fail on this node")
        case .auto, .required:
            // Each project's containers map root to its own uid range, which rootless podman
            // cannot do without /etc/subuid entries per project: containers need root here.
            let detected: Result<ContainerRuntime, ProbeError> = geteuid() == 0
                ? ContainerRuntime.detect() : .failure(ProbeError("containers need the agent to run as root"))
            switch detected {
            case .success(let runtime):
                containerRuntime = runtime
                logger.notice("\(runtime.summary)")
            case .failure(let why):
                if configuration.containers == .required {
                    throw AgentClient.Failure(status: 0, description: "--require-containers: \(why)")
                }
                logger.warning("no container runtime (\(why)): jobs run as host processes; a job that names an image fails here")
            }
        }
        if configuration.containers == .required && configuration.defaultImage == nil {
            logger.notice("containers required and no --default-image: a job that names no image fails here")
        }
        let root = geteuid() == 0
        let tools = ["unshare", "setpriv"].allSatisfy { tool in
            ["/usr/bin/", "/bin/", "/usr/sbin/"].contains { FileManager.default.isExecutableFile(atPath: $0 + tool) }
        }
        switch configuration.isolation {
        case .off:
            logger.warning("isolation turned off: host processes run as the agent's user and can see each other")
        case .auto where !root:
            logger.warning("the agent does not run as root: host processes run as its user, not their project's, and can see each other's files")
        case .auto where !tools:
            logger.warning("unshare or setpriv (util-linux) is missing: host processes are not isolated")
        case .auto where !Self.kernelHidesProcesses():
            logger.warning("this kernel is older than 5.8 (no per-mount hidepid): host processes are not isolated")
        case .auto:
            isolating = true
            logger.notice("host processes run as their project's user (uid \(configuration.projectUIDBase) + project × 65536) with a private /tmp")
        }
        if isolating || containerRuntime != nil,
           let overlap = Self.subordinateOverlap(base: configuration.projectUIDBase, text: (try? String(contentsOfFile: "/etc/subuid", encoding: .utf8)) ?? "") {
            logger.warning("/etc/subuid gives \(overlap) uids that projects' users have (from \(configuration.projectUIDBase)): choose a --project-uid-base above them")
        }
        if isolating || containerRuntime != nil {
            // Only root may enter: a workload of any project cannot read the credential or
            // another allocation even where a namespace does not hide them.
            chmod(configuration.dataDirectory, 0o700)
        }
        let node = deviceNode()
        if let data = try? JSONSerialization.data(withJSONObject: GPUDeviceWiring.cdiSpec(node: node), options: [.prettyPrinted, .sortedKeys]) {
            try? FileManager.default.createDirectory(atPath: configuration.dataDirectory + "/cdi", withIntermediateDirectories: true)
            FileManager.default.createFile(atPath: configuration.dataDirectory + "/cdi/fastgpu.json", contents: data)
        }
    }

    /// This node's devices as they are now.
    func deviceNode() -> GPUDeviceWiring.Node {
        let minors = (try? String(contentsOfFile: "/proc/driver/nvidia-caps/mig-minors", encoding: .utf8)).map(GPUDeviceWiring.parseMIGMinors) ?? [:]
        let mps = configuration.mpsPipeDirectory
            ?? (FileManager.default.fileExists(atPath: "/tmp/nvidia-mps/control") ? "/tmp/nvidia-mps" : nil)
        return GPUDeviceWiring.Node(gpus: gpus, deviceRoot: configuration.deviceRoot, present: GPUDeviceWiring.presentDevices(under: configuration.deviceRoot),
                                    migMinors: minors, mpsPipeDirectory: mps)
    }

    /// Decides how the workload runs and prepares its work directory for that user.
    func sandbox(_ workload: inout Workload, for assignment: AgentClient.Assignment, node: GPUDeviceWiring.Node) {
        let asked = assignment.network.flatMap(NetworkMode.init(rawValue:))
        let image = assignment.image ?? (configuration.containers == .required ? configuration.defaultImage : nil)
        let work = workload.directory + "/work"
        let slots = assignment.slots
        let helper = [execHelper, "exec-env", "--fd", "4", "--"]
        guard let project = assignment.project else {
            workload.refusal = "the control plane did not say which project the job is of (upgrade it): its user is unknown"
            return
        }
        guard let uid = WorkloadSandbox.projectUID(project: project, base: configuration.projectUIDBase) else {
            workload.refusal = "project \(project) has no user range on this node (uids from \(configuration.projectUIDBase) hold 65,536 per project)"
            return
        }
        if let image {
            guard let runtime = containerRuntime else {
                workload.refusal = configuration.containers == .off
                    ? "the job runs in image \(image), and containers are turned off on this node"
                    : "the job runs in image \(image), and this node has no container runtime (podman)"
                return
            }
            let network = asked ?? .isolated
            let wiring = GPUDeviceWiring.wiring(for: slots, gpuMemoryLimitMiB: assignment.gpuMemoryLimitMiB, node: node, renumbered: true)
            var environment = workload.environment.merging(wiring.environment) { _, new in new }
            environment["FASTGPU_WORK_DIR"] = "/fastgpu/work"
            if wiring.environment["CUDA_MPS_PIPE_DIRECTORY"] == nil { environment["CUDA_MPS_PIPE_DIRECTORY"] = nil }
            // The image's own PATH and HOME, not the node's.
            environment["PATH"] = nil
            environment["HOME"] = nil
            if let multiline = environment.first(where: { $0.value.contains(where: \.isNewline) }) {
                workload.refusal = "env \(multiline.key) holds a newline, which a container's environment file cannot carry"
                return
            }
            let name = "fastgpu-\(Self.shortHash(configuration.dataDirectory))-a\(workload.allocation)"
            var devices = wiring.deviceNodes
            if let pipes = wiring.environment["CUDA_MPS_PIPE_DIRECTORY"] { devices.removeAll { $0 == pipes } }
            var launcher = WorkloadSandbox.containerPrefix(
                podman: runtime, name: name, image: image, uid: uid, work: work, devices: devices, environmentFile: workload.directory + "/env.list",
                network: network, cpuMillis: assignment.allocation.cpuMillis, memoryMiB: assignment.allocation.memoryMiB,
                cgroupParent: Cgroups.containerParent(workload.cgroups ?? []), limits: Self.processLimits)
            if let replica = workload.replica, let at = launcher.lastIndex(of: image) {
                let inside = assignment.replica?.port ?? replica.hostPort
                launcher.insert(contentsOf: ["--publish", "\(replica.hostPort):\(inside)"], at: at)
            }
            if let pipes = wiring.environment["CUDA_MPS_PIPE_DIRECTORY"], let at = launcher.lastIndex(of: image) {
                launcher.insert(contentsOf: ["--volume", "\(pipes):\(pipes)"], at: at)
            }
            chown(work, uid, uid)
            chmod(work, 0o700)
            workload.environment = environment
            workload.launcher = launcher
            workload.prelude = presentImages.contains(image) ? WorkloadSandbox.runningStep : WorkloadSandbox.pullStep(podman: runtime, image: image)
            workload.sandbox = WorkloadSandbox(kind: .container, uid: uid, image: image, container: name, network: network)
            return
        }
        if configuration.containers == .required {
            workload.refusal = "this node runs jobs only in containers: name an image (--image)"
            return
        }
        let network = asked ?? .host
        if network == .isolated {
            workload.refusal = "network isolated needs an image (a container); a host process has none or host"
            return
        }
        guard isolating else {
            workload.launcher = helper
            if network == .none {
                // Without root, a user namespace (as the same user) is what lets it have a network namespace.
                workload.launcher = (geteuid() == 0 ? ["unshare", "--net", "--"] : ["unshare", "--user", "--map-current-user", "--net", "--"])
                    + WorkloadSandbox.loopbackUp + helper
            }
            workload.sandbox = WorkloadSandbox(kind: .host, network: network)
            return
        }
        // Its devices are in its environment already (`environment(for:node:)`); the others are masked.
        let wiring = GPUDeviceWiring.wiring(for: slots, gpuMemoryLimitMiB: assignment.gpuMemoryLimitMiB, node: node, renumbered: false)
        // Its own home: the agent's is not its to read.
        workload.environment["HOME"] = work
        workload.environment["FASTGPU_WORK_DIR"] = work
        chown(work, uid, uid)
        chmod(work, 0o700)
        workload.launcher = WorkloadSandbox.isolatedHostPrefix(uid: uid, work: work, hidden: [configuration.dataDirectory] + configuration.hiddenPaths,
                                                               masked: wiring.maskedNodes, network: network, helper: execHelper) + helper
        workload.sandbox = WorkloadSandbox(kind: .isolatedHost, uid: uid, network: network)
    }

    /// Linux 5.8 or later: each proc mount has its own `hidepid`.
    static func kernelHidesProcesses() -> Bool {
        var name = utsname()
        uname(&name)
        let text = withUnsafeBytes(of: &name.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        let parts = text.split(separator: ".").prefix(2).map { Int($0.prefix { $0.isNumber }) ?? 0 }
        guard parts.count == 2 else { return false }
        return parts[0] > 5 || (parts[0] == 5 && parts[1] >= 8)
    }

    /// The first `/etc/subuid` entry (`name:start:count`) whose range meets the projects' uids
    /// (`base` up to the last project's range), as `name start-end`; nil when none does.
    static func subordinateOverlap(base: UInt32, text: String) -> String? {
        let end = UInt64(base) + 65_536 * 65_536
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: ":")
            guard fields.count == 3, let start = UInt64(fields[1]), let count = UInt64(fields[2]), count > 0 else { continue }
            if start < end && start + count > UInt64(base) { return "\(fields[0]) \(start)-\(start + count - 1)" }
        }
        return nil
    }

    /// The open-files and processes limits a container gets (read once): the agent's own, processes at most
    /// `kernel.pid_max` (podman would ask for more than a confined machine lets runc set).
    static let processLimits: (files: Int, processes: Int) = {
        var files = rlimit(), processes = rlimit()
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &files)
        getrlimit(6, &processes) // RLIMIT_NPROC, which Glibc does not import as a name
        func bounded(_ value: rlim_t, _ ceiling: Int) -> Int { value > rlim_t(Int.max) ? ceiling : min(Int(value), ceiling) }
        let pidMax = (try? String(contentsOfFile: "/proc/sys/kernel/pid_max", encoding: .utf8)).flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) } ?? 32_768
        return (bounded(files.rlim_cur, 1 << 20), bounded(processes.rlim_cur, pidMax))
    }()
}
