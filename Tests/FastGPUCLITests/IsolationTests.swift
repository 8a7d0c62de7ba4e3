import Foundation
import Testing

let isolationIsPossible = geteuid() == 0
/// `.ci/run` installs podman and says so: there, a missing podman fails instead of skipping.
let containersArePossible = ["/usr/bin/podman", "/usr/local/bin/podman"].contains { FileManager.default.isExecutableFile(atPath: $0) }
    || ProcessInfo.processInfo.environment["FASTGPU_REQUIRE_CONTAINER_TESTS"] == "1"

/// Tenants on one node, tried as a tenant would: a real server, a real agent as root with fake
/// GPU device nodes (`mknod`, each a copy of /dev/null so that opening one says whether the
/// wall let it through), host processes as their project's user, and containers run by podman
/// from an image made here with `podman import` (no registry is reachable).
@Suite(.serialized, .enabled(if: isolationIsPossible, "isolation needs an agent run as root"))
struct IsolationTests {
    static let hasPodman = containersArePossible
    static let image = "localhost/fastgpu-test-busybox:1"

    /// A cluster of one agent with 4 simulated GPUs whose device nodes are fake ones.
    static func cluster() throws -> (cluster: LocalCluster, devices: String) {
        let cluster = try LocalCluster()
        let devices = cluster.directory + "/dev"
        try FileManager.default.createDirectory(atPath: devices, withIntermediateDirectories: true)
        for name in ["nvidia0", "nvidia1", "nvidia2", "nvidia3", "nvidiactl", "nvidia-uvm"] {
            // 1:3, what /dev/null is: opening it works wherever the wall lets it.
            #expect(mknod(devices + "/" + name, S_IFCHR | 0o666, dev_t(1 << 8 | 3)) == 0, "mknod \(name)")
            chmod(devices + "/" + name, 0o666)
        }
        try cluster.startAgent("n1", gpus: "4xH100-80GB", extra: ["--device-root", devices, "--stop-grace", "1"])
        #expect(cluster.waitForAgent("n1", "registered as node") != nil)
        return (cluster, devices)
    }

    /// A busybox image, made once per machine from the static busybox binary.
    static func ensureImage() throws {
        if run(["podman", "image", "exists", image]).status == 0 { return }
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("fastgpu-rootfs-\(getpid())").path
        try FileManager.default.createDirectory(atPath: root + "/bin", withIntermediateDirectories: true)
        for directory in ["tmp", "proc", "dev", "sys", "etc"] { try FileManager.default.createDirectory(atPath: root + "/" + directory, withIntermediateDirectories: true) }
        try FileManager.default.copyItem(atPath: "/bin/busybox", toPath: root + "/bin/busybox")
        for tool in ["sh", "ls", "cat", "id", "echo", "nc", "printf", "sleep", "grep", "wc", "test", "tr", "head"] {
            try FileManager.default.createSymbolicLink(atPath: root + "/bin/" + tool, withDestinationPath: "busybox")
        }
        let made = run(["sh", "-c", "tar -C '\(root)' -c . | podman import - \(image)"])
        try #require(made.status == 0, "podman import: \(made.output)")
    }

    /// Lets a job blocked reading `fifo` go on.
    static func release(_ fifo: String) {
        let handle = FileHandle(forWritingAtPath: fifo)
        handle?.write(Data("go\n".utf8))
        try? handle?.close()
    }

    static func run(_ arguments: [String]) -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        guard (try? process.run()) != nil else { return (127, "") }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    static func submit(_ cluster: LocalCluster, project: String = "default", _ script: String, gpus: Int = 1, extra: String = "") throws -> Int {
        let command = String(decoding: try JSONSerialization.data(withJSONObject: ["sh", "-c", script]), as: UTF8.self)
        let job = try cluster.json(cluster.post("/v1/jobs", #"{"project":"\#(project)","command":\#(command),"resources":{"gpus":\#(gpus)}\#(extra)}"#))
        return try (job["id"] as? Int).orThrow("no job id: \(job)")
    }

    static func output(_ cluster: LocalCluster, _ job: Int) throws -> [String: String] {
        var facts: [String: String] = [:]
        for line in try cluster.followLogs(job).filter({ $0.stream == "stdout" }).map(\.text).joined().split(separator: "\n") {
            guard let equals = line.firstIndex(of: "=") else { continue }
            facts[String(line[..<equals])] = String(line[line.index(after: equals)...])
        }
        return facts
    }

    /// A file in the node's own /tmp, which no isolated job may see.
    static let nodeTmpMarker: String = {
        let path = "/tmp/fastgpu-node-file-\(getpid())"
        FileManager.default.createFile(atPath: path, contents: Data("node\n".utf8), attributes: [.posixPermissions: 0o644])
        return path
    }()

    /// Project A's job holds a secret in its env and a file; project B's job, on the same node,
    /// tries to read them, the agent's credential, A's processes, and GPUs not its own.
    @Test(.timeLimit(.minutes(2))) func aHostJobRunsAsItsProjectsUserAndReachesNothingOfAnother() throws {
        let (cluster, devices) = try Self.cluster()
        _ = try cluster.post("/v1/projects", #"{"name":"team-b"}"#)
        let ready = cluster.mkfifo("a-ready"), hold = cluster.mkfifo("a-hold")
        let a = try Self.submit(cluster, "echo secret-of-a > secret.txt; echo a > /dev/shm/fastgpu-left-by-a; echo a > /var/tmp/fastgpu-left-by-a; echo $$ > \(ready); cat \(hold) > /dev/null",
                                extra: #","env":{"AWS_SECRET_ACCESS_KEY":"secret-of-a"}"#)
        let pidA = try readFIFO(ready).orThrow("job A did not start").trimmingCharacters(in: .whitespacesAndNewlines)
        let agentDirectory = cluster.directory + "/agent-n1"
        let allocationA = try ((cluster.json(cluster.get("/v1/jobs/\(a)"))["allocations"] as? [[String: Any]])?.first?["id"] as? Int).orThrow("no allocation")
        let probe = """
            echo uid=$(id -u); echo home=$HOME
            cat \(agentDirectory)/allocations/\(allocationA)/work/secret.txt >/dev/null 2>&1 && echo file=read || echo file=denied
            cat \(agentDirectory)/agent-state.json >/dev/null 2>&1 && echo state=read || echo state=denied
            cat /proc/\(pidA)/environ >/dev/null 2>&1 && echo environ=read || echo environ=denied
            [ -d /proc/\(pidA) ] && echo process=visible || echo process=hidden
            kill -0 \(pidA) 2>/dev/null && echo signal=sent || echo signal=denied
            [ -e \(Self.nodeTmpMarker) ] && echo tmp=shared || echo tmp=private
            [ -e /dev/shm/fastgpu-left-by-a ] && echo shm=shared || echo shm=private
            [ -e /var/tmp/fastgpu-left-by-a ] && echo vartmp=shared || echo vartmp=private
            own=\(devices)/nvidia$CUDA_VISIBLE_DEVICES
            cat $own >/dev/null 2>&1 && echo own=opened || echo own=denied
            other=0; for n in 0 1 2 3; do [ "$n" = "$CUDA_VISIBLE_DEVICES" ] && continue; cat \(devices)/nvidia$n >/dev/null 2>&1 && other=$((other+1)); done; echo others=$other
            cat \(devices)/nvidiactl >/dev/null 2>&1 && echo control=opened || echo control=denied
            """
        let b = try Self.submit(cluster, project: "team-b", probe)
        let facts = try Self.output(cluster, b)
        let uidB = Int(facts["uid"] ?? "") ?? 0
        #expect(uidB >= 200_000 && uidB % 65_536 == 200_000 % 65_536, "B runs as its project's user: \(facts)")
        #expect(facts["home"]?.hasSuffix("/work") == true, "\(facts)")
        #expect(facts["file"] == "denied", "A's files")
        #expect(facts["state"] == "denied", "the agent's credential")
        #expect(facts["environ"] == "denied", "A's environment")
        #expect(facts["process"] == "hidden", "A's process")
        #expect(facts["signal"] == "denied", "signalling A")
        #expect(facts["tmp"] == "private", "a /tmp of its own, without the node's files: \(facts)")
        #expect(facts["shm"] == "private" && facts["vartmp"] == "private", "/dev/shm and /var/tmp are its own: \(facts)")
        #expect(!FileManager.default.fileExists(atPath: "/dev/shm/fastgpu-left-by-a"), "nor the node's")
        #expect(facts["own"] == "opened", "its own GPU")
        #expect(facts["others"] == "0", "no other GPU")
        #expect(facts["control"] == "opened", "the driver's control device")
        // A still runs, and its own view is whole: its file is there.
        Self.release(hold)
        #expect(try cluster.followLogs(a).isEmpty)
        #expect(try cluster.json(cluster.get("/v1/jobs/\(a)"))["state"] as? String == "succeeded")
    }

    @Test(.timeLimit(.minutes(2))) func networkNoneCannotReachTheControlPlaneAndHostCan() throws {
        let (cluster, _) = try Self.cluster()
        let reach = #"python3 -c "import socket; socket.create_connection(('127.0.0.1', \#(cluster.port)), 2)" 2>/dev/null && echo reach=yes || echo reach=no"#
        let cut = try Self.submit(cluster, reach, gpus: 0, extra: #","network":"none""#)
        #expect(try Self.output(cluster, cut)["reach"] == "no")
        let open = try Self.submit(cluster, reach, gpus: 0, extra: #","network":"host""#)
        #expect(try Self.output(cluster, open)["reach"] == "yes", "the same probe reaches it on the host's network")
    }

    @Test(.timeLimit(.minutes(3)), .enabled(if: containersArePossible, "podman is not installed"))
    func aContainerSeesOnlyItsOwnDevicesFilesAndProcesses() throws {
        try Self.ensureImage()
        let (cluster, devices) = try Self.cluster()
        let ready = cluster.mkfifo("c-ready"), hold = cluster.mkfifo("c-hold")
        let a = try Self.submit(cluster, "echo a > secret.txt; echo $$ > \(ready); cat \(hold) > /dev/null")
        _ = try readFIFO(ready).orThrow("job A did not start")
        let agentDirectory = cluster.directory + "/agent-n1"
        let probe = """
            echo uid=$(id -u); echo visible=$CUDA_VISIBLE_DEVICES; echo work=$(pwd)
            echo devices=$(ls \(devices) | grep nvidia | tr '\\n' ' ')
            [ -e \(agentDirectory)/agent-state.json ] && echo state=visible || echo state=absent
            [ -e \(agentDirectory)/allocations ] && echo allocations=visible || echo allocations=absent
            echo processes=$(ls /proc | grep -c '^[0-9]')
            echo hi > out.txt && echo write=ok
            """
        let c = try Self.submit(cluster, probe, gpus: 2, extra: #","image":"\#(Self.image)""#)
        let facts = try Self.output(cluster, c)
        Self.release(hold)
        let view = try cluster.json(cluster.get("/v1/jobs/\(c)"))
        #expect(view["state"] as? String == "succeeded", "\(view)")
        let allocated = ((view["allocations"] as? [[String: Any]])?.first?["devices"] as? [String] ?? []).map { "nvidia" + $0.dropFirst(3) }
        #expect(facts["uid"] == "0", "root inside, mapped to the project's user outside")
        #expect(facts["visible"] == "0,1", "CUDA counts its devices from 0: \(facts)")
        #expect(facts["work"] == "/fastgpu/work")
        #expect(facts["devices"].map { Set($0.split(separator: " ").map(String.init)) } == Set(allocated + ["nvidiactl", "nvidia-uvm"]),
                "only its own GPUs' nodes and the control devices: \(facts)")
        #expect(facts["state"] == "absent" && facts["allocations"] == "absent")
        #expect((Int(facts["processes"] ?? "") ?? 99) <= 4, "only its own processes: \(facts)")
        #expect(facts["write"] == "ok")
        let allocation = try ((view["allocations"] as? [[String: Any]])?.first?["id"] as? Int).orThrow("no allocation")
        var owner = stat()
        #expect(stat(agentDirectory + "/allocations/\(allocation)/work/out.txt", &owner) == 0)
        #expect(owner.st_uid >= 200_000, "its files belong to the project's user on the host, not root")
        _ = a
    }

    @Test(.timeLimit(.minutes(2)), .enabled(if: containersArePossible, "podman is not installed"))
    func aContainerWithNetworkNoneCannotReachTheControlPlane() throws {
        try Self.ensureImage()
        let (cluster, _) = try Self.cluster()
        let reach = #"printf 'GET /healthz HTTP/1.0\r\n\r\n' | nc -w 2 127.0.0.1 \#(cluster.port) 2>/dev/null | grep -q '200 OK' && echo reach=yes || echo reach=no"#
        let cut = try Self.submit(cluster, reach, gpus: 0, extra: #","image":"\#(Self.image)","network":"none""#)
        #expect(try Self.output(cluster, cut)["reach"] == "no")
        let open = try Self.submit(cluster, reach, gpus: 0, extra: #","image":"\#(Self.image)","network":"host""#)
        #expect(try Self.output(cluster, open)["reach"] == "yes", "the same probe reaches it on the host's network")
    }

    /// The container's processes are the allocation's (its cgroup is inside the allocation's):
    /// a cancel stops the container itself, not only the podman client, even one that ignores SIGTERM.
    @Test(.timeLimit(.minutes(2)), .enabled(if: containersArePossible, "podman is not installed"))
    func aCancelledContainerIsGoneBeforeItsGPUsAreFree() throws {
        try Self.ensureImage()
        let (cluster, _) = try Self.cluster()
        let job = try Self.submit(cluster, "trap '' TERM; echo up > /fastgpu/work/up; sleep 300", extra: #","image":"\#(Self.image)""#)
        let started = try cluster.waitForAgent("n1", "started allocation").orThrow("not started")
        let allocation = started.split(separator: " ").drop { $0 != "allocation" }.dropFirst().first.map(String.init) ?? ""
        let name = "fastgpu-"
        // Running once its marker is in its work directory.
        let marker = cluster.directory + "/agent-n1/allocations/\(allocation)/work/up"
        let clock = ContinuousClock(), deadline = clock.now + .seconds(30)
        while !FileManager.default.fileExists(atPath: marker) && clock.now < deadline { usleep(20_000) }
        #expect(FileManager.default.fileExists(atPath: marker), "the container ran")
        #expect(Self.run(["podman", "ps", "--format", "{{.Names}}"]).output.contains("-a\(allocation)\n"), "its container runs")
        _ = try cluster.post("/v1/jobs/\(job)/cancel")
        #expect(cluster.waitForAgent("n1", "allocation \(allocation) stopped") != nil)
        let left = Self.run(["podman", "ps", "--format", "{{.Names}}"]).output
        #expect(!left.split(separator: "\n").contains { $0.hasPrefix(name) && $0.hasSuffix("-a\(allocation)") }, "no container left: \(left)")
    }

    @Test(.timeLimit(.minutes(2)))
    func aNodeWithoutContainersRefusesAnImageWithTheReason() throws {
        let cluster = try LocalCluster()
        try cluster.startAgent("n1", gpus: "1xH100-80GB", extra: ["--containers", "off"])
        #expect(cluster.waitForAgent("n1", "registered as node") != nil)
        let job = try Self.submit(cluster, "true", gpus: 0, extra: #","image":"\#(Self.image)""#)
        let errors = try cluster.followLogs(job).filter { $0.stream == "stderr" }.map(\.text).joined()
        #expect(errors.contains("the job runs in image \(Self.image), and containers are turned off on this node"), "\(errors)")
        #expect(try cluster.json(cluster.get("/v1/jobs/\(job)"))["state"] as? String == "failed")
        // A host process cannot ask for a network of its own: refused before it is queued.
        let refused = try cluster.curl(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", cluster.url + "/v1/jobs",
                                        "-d", #"{"project":"default","command":["true"],"network":"isolated"}"#])
        #expect(refused == "400")
    }

    @Test(.timeLimit(.minutes(2)), .enabled(if: containersArePossible, "podman is not installed"))
    func aMissingImageFailsWithAClearReason() throws {
        let (cluster, _) = try Self.cluster()
        let job = try Self.submit(cluster, "true", gpus: 0, extra: #","image":"localhost/fastgpu-no-such-image:1""#)
        let errors = try cluster.followLogs(job).filter { $0.stream == "stderr" }.map(\.text).joined()
        #expect(errors.contains("image 'localhost/fastgpu-no-such-image:1' is not on this node and could not be pulled"), "\(errors)")
        let view = try cluster.json(cluster.get("/v1/jobs/\(job)"))
        #expect(view["state"] as? String == "failed")
        #expect((view["allocations"] as? [[String: Any]])?.first?["exitCode"] as? Int == 125)
        let events = try cluster.json(cluster.get("/v1/jobs/\(job)/events"))["items"] as? [[String: Any]] ?? []
        #expect(events.contains { $0["kind"] as? String == "pulling" && ($0["message"] as? String)?.contains("pulling image localhost/fastgpu-no-such-image:1") == true },
                "the pull is a phase of the job: \(events)")
    }
}
