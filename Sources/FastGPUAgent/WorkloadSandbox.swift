import FastGPUModel
import Foundation

/// How one workload runs on this node, decided when its allocation is prepared and kept in the
/// agent's state (a restarted agent stops a container the way it started it).
///
/// - `host`: a process of the agent's user, as before isolation existed (an agent not run as
///   root, or `--isolation off`).
/// - `isolatedHost`: a process of its project's user, in its own mount namespace: a private
///   `/tmp`, the agent's data directory (its credential, every other allocation) covered by an
///   empty tmpfs with only its own work directory put back, `/proc` showing only its user's
///   processes, every GPU device node not allocated to it unopenable, and no network with `none`.
/// - `container`: an OCI image run by podman with runc, its root mapped to the project's user
///   (a user namespace: root inside is nobody on the host), only its GPUs' device nodes, its
///   work directory mounted, its CPU and memory limits, and its own network (`isolated`) unless
///   it asks for `none` or `host`.
struct WorkloadSandbox: Codable, Equatable, Sendable {
    enum Kind: String, Codable, Sendable {
        case host
        case isolatedHost
        case container
    }

    var kind: Kind
    /// The project's user on this node (the container's root maps to it).
    var uid: UInt32?
    var image: String?
    /// The container's name: `fastgpu-<agent instance>-a<allocation>`.
    var container: String?
    var network: NetworkMode

    /// The project's user: `base + project × 65,536`, so that a container's 65,536 ids map onto
    /// a range no other project shares. nil when the project's range would leave 32-bit uids.
    static func projectUID(project: UInt64, base: UInt32) -> UInt32? {
        guard project < 65_536 else { return nil }
        let uid = UInt64(base) + project * 65_536
        guard uid + 65_535 < UInt64(UInt32.max) else { return nil }
        return UInt32(uid)
    }

    /// The arguments before the job's command for an isolated host process. Everything the
    /// namespace needs is done as root inside it, then `setpriv` drops to the project's user for
    /// good (no capabilities, no new privileges through setuid files).
    static func isolatedHostPrefix(uid: UInt32, work: String, hidden: [String], masked: [String], network: NetworkMode, helper: String? = nil) -> [String] {
        // The work directory is held open (fd 3) and bound back from it once everything above it
        // is covered, wherever it lies (under /tmp with `fastgpu up --data-dir /tmp/…`).
        var script = "set -e; exec 3<\(quoted(work)); "
        // The agent's `exec-env` may lie under a path covered below (a build under /tmp): it is
        // held open (fd 5) and bound back at its own path if the covers hid it.
        if let helper { script += "exec 5<\(quoted(helper)); " }
        script += "mount -t tmpfs -o mode=1777,nosuid,nodev,size=25% fastgpu-tmp /tmp; "
        // The other places every user may write: a file left there would pass between projects.
        script += "for shared in /var/tmp /dev/shm; do if [ -d $shared ]; then mount -t tmpfs -o mode=1777,nosuid,nodev,size=25% fastgpu-tmp $shared; fi; done; "
        if network == .none { script += "ip link set lo up 2>/dev/null || /sbin/ip link set lo up; " }
        if !masked.isEmpty {
            // A device node bound over by an empty, mode-000 file cannot be opened.
            script += ": > /tmp/.fastgpu-masked; chmod 000 /tmp/.fastgpu-masked; "
            for path in masked { script += "mount --bind /tmp/.fastgpu-masked \(quoted(path)); " }
        }
        for path in hidden { script += "if [ -e \(quoted(path)) ]; then mount -t tmpfs -o mode=0755,size=1m,nosuid,nodev,noexec fastgpu-hidden \(quoted(path)); fi; " }
        script += "mkdir -p \(quoted(work)); mount --no-canonicalize --bind /proc/self/fd/3 \(quoted(work)); exec 3<&-; "
        if let helper {
            let directory = (helper as NSString).deletingLastPathComponent
            script += "if [ ! -x \(quoted(helper)) ]; then mkdir -p \(quoted(directory)); : > \(quoted(helper)); "
                + "mount --no-canonicalize --bind -o ro /proc/self/fd/5 \(quoted(helper)); fi; exec 5<&-; "
        }
        script += "mount -t proc -o hidepid=invisible,nosuid,nodev,noexec proc /proc; "
        script += "cd \(quoted(work)); "
        script += #"exec setpriv --reuid=\#(uid) --regid=\#(uid) --clear-groups --no-new-privs --bounding-set=-all --inh-caps=-all -- "$@""#
        // Its own System V IPC namespace too: no shared memory segment or queue of another project.
        var arguments = ["unshare", "--mount", "--propagation", "private", "--ipc"]
        if network == .none { arguments.append("--net") }
        return arguments + ["--", "/bin/sh", "-c", script, "fastgpu-isolate"]
    }

    /// `podman run` for the job, up to and including the image; the command follows.
    /// Env values are not on this command line (other users can read a process' arguments), nor
    /// in podman's own environment (a job's `CONTAINERS_CONF` must not steer a root podman): they
    /// are in a root-only file.
    static func containerPrefix(podman: ContainerRuntime, name: String, image: String, uid: UInt32, work: String,
                                devices: [String], environmentFile: String, network: NetworkMode,
                                cpuMillis: Int, memoryMiB: Int, cgroupParent: String?, limits: (files: Int, processes: Int)) -> [String] {
        var arguments = podman.global + ["run", "--rm", "--name", name, "--pull", "never", "--log-driver", "none",
                                         "--uidmap", "0:\(uid):65536", "--gidmap", "0:\(uid):65536",
                                         "--security-opt", "no-new-privileges",
                                         "--ulimit", "nofile=\(limits.files):\(limits.files)", "--ulimit", "nproc=\(limits.processes):\(limits.processes)",
                                         "--network", network == .isolated ? "bridge" : network.rawValue,
                                         "--volume", "\(work):/fastgpu/work", "--workdir", "/fastgpu/work"]
        if cpuMillis > 0 { arguments += ["--cpus", String(format: "%.3f", Double(cpuMillis) / 1000)] }
        if memoryMiB > 0 { arguments += ["--memory", "\(memoryMiB)m", "--memory-swap", "\(memoryMiB)m"] }
        if let cgroupParent { arguments += ["--cgroup-parent", cgroupParent] }
        for device in devices { arguments += ["--device", "\(device):\(device):rwm"] }
        arguments += ["--env-file", environmentFile]
        return arguments + [image]
    }

    /// Run by the wrapper before the container: pull the image unless the node has it (the
    /// node's podman store is the cache), saying so in `phase`; a missing image fails the job
    /// with podman's reason in its stderr and exit code 125.
    static func pullStep(podman: ContainerRuntime, image: String) -> String {
        let podmanWords = podman.global.map(quoted).joined(separator: " ")
        let image = quoted(image)
        return #"if ! \#(podmanWords) image exists \#(image) 2>/dev/null; then echo pulling > phase.tmp && mv phase.tmp phase; "#
            + #"if ! \#(podmanWords) pull -q \#(image) >/dev/null 2>pull-errors; then "#
            + #"{ printf "fastgpu: image '%s' is not on this node and could not be pulled:\\n" \#(image); grep -v 'level=warning' pull-errors | tail -n 3; } >>stderr; "#
            + #"echo 125 > exit-code.tmp && mv exit-code.tmp exit-code; exit 125; fi; fi; "# + runningStep
    }

    /// The step for an image the node is known to have.
    static let runningStep = "echo running > phase.tmp && mv phase.tmp phase; "

    /// A new network namespace starts with loopback down: `none` means loopback only, not nothing.
    static let loopbackUp = ["/bin/sh", "-c", #"ip link set lo up 2>/dev/null || /sbin/ip link set lo up 2>/dev/null; exec "$@""#, "fastgpu-lo"]

    static func quoted(_ text: String) -> String {
        "'" + text.replacingOccurrences(of: "'", with: #"'\''"#) + "'"
    }
}

/// The node's container runtime: podman, with runc where it is installed (crun cannot run on
/// hybrid cgroup machines).
struct ContainerRuntime: Codable, Equatable, Sendable {
    var podman: String
    var runtime: String?
    var version: String

    /// podman's arguments before its command.
    /// No event log: nothing here reads it, and writing it costs each start ~25 ms. cgroupfs: the
    /// container's group goes inside the allocation's, which systemd's manager would refuse.
    var global: [String] { [podman] + (runtime.map { ["--runtime", $0] } ?? []) + ["--events-backend", "none", "--cgroup-manager", "cgroupfs"] }

    var summary: String { "containers: \(version)\(runtime.map { " with \(($0 as NSString).lastPathComponent)" } ?? "")" }

    /// podman and runc on the PATH, and podman answering.
    static func detect(path: String = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin") -> Result<ContainerRuntime, ProbeError> {
        func find(_ name: String) -> String? {
            path.split(separator: ":").map { "\($0)/\(name)" }.first { FileManager.default.isExecutableFile(atPath: $0) }
        }
        guard let podman = find("podman") else { return .failure(ProbeError("podman is not installed (apt-get install podman runc)")) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: podman)
        process.arguments = ["--version"]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        do { try process.run() } catch { return .failure(ProbeError("\(podman) cannot be run: \(error)")) }
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { return .failure(ProbeError("\(podman) --version failed")) }
        let version = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return .success(ContainerRuntime(podman: podman, runtime: find("runc"), version: version))
    }

    /// Stops and removes the container now, whatever runs in it (for a stop past its grace).
    func remove(_ name: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: podman)
        process.arguments = Array(global.dropFirst()) + ["rm", "--force", "--ignore", "--time", "0", name]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try? process.run()
        process.waitUntilExit()
    }
}
