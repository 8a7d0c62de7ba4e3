import Foundation
import Testing

/// A real `fastgpu server` and real `fastgpu agent`s with simulated GPUs on loopback, running
/// real processes. Tests wait on events — a log line of an agent, a FIFO the job writes to, a
/// log stream that ends with the job — never on the clock.
final class LocalCluster {
    let directory: String
    let server = Process()
    var port = 0
    var admin = ""
    var joinToken = ""
    var agents: [String: (process: Process, log: LineReader)] = [:]
    /// The CA of an https server: curl and the agents trust it.
    let caFile: String?
    var scheme = "http"
    /// The gateway's URL, when the server runs one (`--gateway-port 0` by default here).
    var gatewayURL: String?
    var serverOutput: LineReader?

    init(serverArguments: [String] = [], caFile: String? = nil, directory: String? = nil) throws {
        self.caFile = caFile
        self.directory = directory ?? Self.sharedDirectory("fastgpu-e2e")
        let directory = self.directory
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        server.executableURL = CLITests.binary
        server.arguments = ["server", "--data-dir", directory + "/server", "--port", "0", "--log-level", "warning"] + serverArguments
        let out = Pipe()
        server.standardOutput = out
        server.standardError = FileHandle.nullDevice
        try server.run()
        var gateway: String?
        let reader = LineReader(out.fileHandleForReading)
        serverOutput = reader
        let line = reader.waitFor { line in
            if line.contains("gateway listening on "), let at = line.range(of: "listening on ") { gateway = String(line[at.upperBound...]) }
            return line.contains("server listening on http")
        } ?? ""
        gatewayURL = gateway
        guard let range = line.range(of: "://127.0.0.1:") else { throw ServerProcessTests.CLIError("server did not start") }
        scheme = line.contains("https://") ? "https" : "http"
        port = Int(line[range.upperBound...].prefix { $0.isNumber }) ?? 0
        admin = try String(contentsOfFile: directory + "/server/admin-token", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        joinToken = try json(post("/v1/tokens", #"{"name":"e2e","kind":"join"}"#))["token"] as? String ?? ""
    }

    deinit {
        for agent in agents.values where agent.process.isRunning { kill(agent.process.processIdentifier, SIGKILL) }
        if server.isRunning { kill(server.processIdentifier, SIGKILL) }
    }

    var url: String { "\(scheme)://127.0.0.1:\(port)" }

    /// The gateway's URL, waiting for the server to say it listens.
    func gateway() throws -> String {
        if let gatewayURL { return gatewayURL }
        let line = serverOutput?.waitFor { $0.contains("gateway listening on ") } ?? ""
        guard let at = line.range(of: "listening on ") else { throw ServerProcessTests.CLIError("the server runs no gateway") }
        gatewayURL = String(line[at.upperBound...])
        return gatewayURL ?? ""
    }

    func startAgent(_ name: String, gpus: String = "4xH100-80GB", register: Bool = true, extra: [String] = []) throws {
        let process = Process()
        process.executableURL = CLITests.binary
        process.arguments = ["agent", "--server", url, "--data-dir", directory + "/agent-\(name)", "--name", name, "--simulate-gpus", gpus, "--log-level", "info"]
            + (register ? ["--join-token", joinToken] : []) + (caFile.map { ["--ca-file", $0] } ?? []) + extra
        let errors = Pipe()
        process.standardOutput = FileHandle.nullDevice
        process.standardError = errors
        try process.run()
        agents[name] = (process, LineReader(errors.fileHandleForReading))
    }

    /// Blocks until the agent logs a line containing `text`; returns it.
    @discardableResult
    func waitForAgent(_ name: String, _ text: String) -> String? {
        agents[name]?.log.waitFor { $0.contains(text) }
    }

    func killAgent(_ name: String, signal: Int32 = SIGKILL) {
        guard let agent = agents[name] else { return }
        kill(agent.process.processIdentifier, signal)
        agent.process.waitUntilExit()
    }

    func curl(_ arguments: [String]) throws -> String {
        try ServerProcessTests.curl(["-H", "Authorization: Bearer \(admin)"] + (caFile.map { ["--cacert", $0] } ?? []) + arguments)
    }

    func post(_ path: String, _ body: String = "{}") throws -> String { try curl(["-X", "POST", url + path, "-d", body]) }
    func get(_ path: String) throws -> String { try curl([url + path]) }

    func json(_ text: String) throws -> [String: Any] {
        try (JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]).orThrow("not a JSON object: \(text.prefix(200))")
    }

    func submit(_ command: [String], gpus: Int = 1, extra: String = "") throws -> Int {
        let commandJSON = String(decoding: try JSONSerialization.data(withJSONObject: command), as: UTF8.self)
        let job = try json(post("/v1/jobs", #"{"project":"default","command":\#(commandJSON),"resources":{"gpus":\#(gpus)}\#(extra)}"#))
        return try (job["id"] as? Int).orThrow("no job id: \(job)")
    }

    /// Follows the job's logs until it finishes; the lines' texts in order.
    func followLogs(_ job: Int) throws -> [(stream: String, text: String)] {
        try get("/v1/jobs/\(job)/logs?follow=true").split(separator: "\n").map { line in
            let object = try json(String(line))
            return (object["stream"] as? String ?? "", object["text"] as? String ?? "")
        }
    }

    /// A FIFO any project's user may write: a job runs as its project's user, not the test's.
    func mkfifo(_ name: String) -> String {
        let path = directory + "/" + name
        _ = Foundation.mkfifo(path, 0o600)
        chmod(path, 0o666)
        return path
    }

    /// A new directory that workloads can reach: an isolated job has its own /tmp, so where the
    /// agent isolates (as root) it is under /run (/var/tmp and /dev/shm are private too), and open to every user as /tmp is (FIFOs and
    /// markers in it talk to the jobs; the agents' own directories inside are theirs alone).
    static func sharedDirectory(_ prefix: String) -> String {
        let base = geteuid() == 0 ? "/run" : FileManager.default.temporaryDirectory.path
        let path = base + "/\(prefix)-\(UInt64.random(in: 0...UInt64.max))"
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        chmod(path, 0o1777)
        return path
    }
}

/// Reads lines from a pipe as they come, so a test awaits the line it needs. A line that does not
/// come within the deadline (60 s) gives nil: a broken test fails instead of hanging the suite
/// (Swift Testing's time limits cannot interrupt a blocking read).
final class LineReader {
    let handle: FileHandle
    var buffer = ""
    let deadline: Duration

    init(_ handle: FileHandle, deadline: Duration = .seconds(60)) {
        self.handle = handle
        self.deadline = deadline
    }

    func waitFor(_ predicate: (String) -> Bool) -> String? {
        let clock = ContinuousClock()
        let end = clock.now + deadline
        while true {
            while let newline = buffer.firstIndex(of: "\n") {
                let line = String(buffer[..<newline])
                buffer.removeSubrange(...newline)
                if predicate(line) { return line }
            }
            let left = end - clock.now
            guard left > .zero, Self.readable(handle.fileDescriptor, within: left) else { return nil }
            let data = handle.availableData
            if data.isEmpty { return nil }
            buffer += String(decoding: data, as: UTF8.self)
        }
    }

    static func readable(_ fd: Int32, within time: Duration) -> Bool {
        var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let milliseconds = Int32(min(Int64(Int32.max), time.components.seconds * 1000 + time.components.attoseconds / 1_000_000_000_000_000))
        return poll(&entry, 1, max(1, milliseconds)) > 0
    }
}

/// What a job writes into a FIFO, once it closes it; nil if nothing comes within the deadline.
/// The FIFO is opened without blocking, so a job that never runs fails the test instead of
/// hanging it.
func readFIFO(_ path: String, deadline: Duration = .seconds(60)) -> String? {
    let fd = open(path, O_RDONLY | O_NONBLOCK)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    let clock = ContinuousClock()
    let end = clock.now + deadline
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while true {
        let left = end - clock.now
        guard left > .zero, LineReader.readable(fd, within: left) else { return nil }
        let count = read(fd, &chunk, chunk.count)
        if count > 0 { bytes += chunk[0..<count]; continue }
        if count == 0 && !bytes.isEmpty { return String(decoding: bytes, as: UTF8.self) }
        if count < 0 && errno != EAGAIN { return nil }
        // EOF before any writer wrote (Linux reports POLLHUP only after a writer): wait a little.
        if count == 0 { _ = LineReader.readable(fd, within: .milliseconds(5)) }
    }
}

extension Optional {
    func orThrow(_ message: String) throws -> Wrapped {
        guard let self else { throw ServerProcessTests.CLIError(message) }
        return self
    }
}

@Suite(.serialized) struct EndToEndTests {
    @Test(.timeLimit(.minutes(1))) func aJobSeesExactlyItsDevicesAndItsLinesArriveInOrder() throws {
        let cluster = try LocalCluster()
        try cluster.startAgent("n1", gpus: "4xH100-80GB")
        cluster.waitForAgent("n1", "registered as node")
        let script = #"echo devices=$CUDA_VISIBLE_DEVICES; echo job=$FASTGPU_JOB_ID epoch=$FASTGPU_EPOCH; for i in 1 2 3 4 5; do echo line$i; done; echo warn >&2"#
        let job = try cluster.submit(["sh", "-c", script], gpus: 2)
        let lines = try cluster.followLogs(job)
        let stdout = lines.filter { $0.stream == "stdout" }.map(\.text).joined().split(separator: "\n").map(String.init)
        #expect(stdout.count == 7, "\(stdout)")
        let devices = stdout.first?.dropFirst("devices=".count).split(separator: ",").compactMap { Int($0) } ?? []
        #expect(devices.count == 2 && Set(devices).count == 2 && devices.allSatisfy { (0..<4).contains($0) }, "\(stdout)")
        #expect(stdout.dropFirst().first?.hasPrefix("job=\(job) epoch=") == true)
        #expect(Array(stdout.suffix(5)) == ["line1", "line2", "line3", "line4", "line5"])
        #expect(lines.filter { $0.stream == "stderr" }.map(\.text) == ["warn\n"])
        let view = try cluster.json(cluster.get("/v1/jobs/\(job)"))
        #expect(view["state"] as? String == "succeeded")
        let allocation = (view["allocations"] as? [[String: Any]])?.first
        #expect((allocation?["devices"] as? [String])?.compactMap { Int($0.dropFirst(3)) }.sorted() == devices.sorted(),
                "CUDA_VISIBLE_DEVICES is exactly the allocation's devices")
    }

    @Test(.timeLimit(.minutes(1))) func cancelStopsTheWholeProcessGroup() throws {
        let cluster = try LocalCluster()
        try cluster.startAgent("n1")
        cluster.waitForAgent("n1", "registered as node")
        let fifo = cluster.mkfifo("child-pid")
        let job = try cluster.submit(["sh", "-c", "sleep 300 & echo $! > \(fifo); wait"])
        // The job tells us its child's pid through the FIFO: reading blocks until it writes.
        let child = Int32(try readFIFO(fifo).orThrow("the job never wrote its child's pid").trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
        #expect(child > 0)
        #expect(kill(child, 0) == 0, "the job's child runs")
        let cancelled = try cluster.json(cluster.post("/v1/jobs/\(job)/cancel"))
        #expect(cancelled["state"] as? String == "cancelled")
        #expect(cluster.waitForAgent("n1", "stopped") != nil)
        let stat = (try? String(contentsOfFile: "/proc/\(child)/stat", encoding: .utf8)) ?? ""
        let gone = kill(child, 0) != 0 || stat.split(separator: ")").last?.split(separator: " ").first == "Z"
        #expect(gone, "the job's child was stopped with its process group")
    }

    /// Whether a process is gone (or a zombie, which holds nothing).
    static func isGone(_ pid: Int32) -> Bool {
        let stat = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)) ?? ""
        return kill(pid, 0) != 0 || stat.split(separator: ")").last?.split(separator: " ").first == "Z"
    }

    /// A cluster of one agent with a 1 s stop grace, running a job that ignores SIGTERM; the
    /// job tells its pid through a FIFO. Its wrapper shell dies on the SIGTERM at once; the job
    /// itself does not.
    static func stubbornJob(extra: String = "") throws -> (cluster: LocalCluster, job: Int, pid: Int32) {
        let cluster = try LocalCluster()
        try cluster.startAgent("n1", extra: ["--stop-grace", "1"])
        cluster.waitForAgent("n1", "registered as node")
        let fifo = cluster.mkfifo("stubborn-pid")
        let job = try cluster.submit(["sh", "-c", "trap '' TERM; echo $$ > \(fifo); exec sleep 300"], extra: extra)
        let pid = Int32(try readFIFO(fifo).orThrow("the job never wrote its pid").trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
        return (cluster, job, pid)
    }

    @Test(.timeLimit(.minutes(1))) func aCancelledJobThatIgnoresSIGTERMIsKilledAfterTheGrace() throws {
        let (cluster, job, pid) = try Self.stubbornJob()
        #expect(pid > 0 && !Self.isGone(pid))
        _ = try cluster.post("/v1/jobs/\(job)/cancel")
        // The agent says it is stopped only once no process of it is left.
        #expect(cluster.waitForAgent("n1", "sending SIGKILL") != nil, "SIGTERM was ignored: SIGKILL after the grace")
        #expect(cluster.waitForAgent("n1", "stopped") != nil)
        #expect(Self.isGone(pid), "the job's process is gone when the agent reports it stopped")
    }

    @Test(.timeLimit(.minutes(1))) func aJobPastItsRuntimeLimitFailsOnlyOnceItsProcessIsGone() throws {
        let (cluster, job, pid) = try Self.stubbornJob(extra: #","maxRuntimeSeconds":1"#)
        #expect(pid > 0)
        // Following the logs ends when the job has finished.
        _ = try cluster.followLogs(job)
        #expect(Self.isGone(pid), "the job is marked failed only once its process is gone")
        let view = try cluster.json(cluster.get("/v1/jobs/\(job)"))
        #expect(view["state"] as? String == "failed")
        #expect((view["allocations"] as? [[String: Any]])?.first?["exitCode"] as? Int == 124, "\(view)")
    }

    @Test(.timeLimit(.minutes(1))) func aRestartedAgentKillsTheStubbornJobItNoLongerRuns() throws {
        let (cluster, job, pid) = try Self.stubbornJob()
        cluster.killAgent("n1")
        // Cancelled while its agent is dead: the restarted agent adopts it, finds it no longer
        // assigned, and ends every process of it.
        _ = try cluster.post("/v1/jobs/\(job)/cancel")
        try cluster.startAgent("n1", register: false, extra: ["--stop-grace", "1"])
        #expect(cluster.waitForAgent("n1", "re-attached to node")?.contains("with 1 workload(s)") == true)
        #expect(cluster.waitForAgent("n1", "sending SIGKILL") != nil)
        #expect(cluster.waitForAgent("n1", "stopped") != nil)
        #expect(Self.isGone(pid))
    }

    @Test(.timeLimit(.minutes(1))) func aJoinTokenCannotTakeARunningNodesName() throws {
        let cluster = try LocalCluster()
        try cluster.startAgent("n1")
        cluster.waitForAgent("n1", "registered as node")
        // A second agent with the same name and the join token, on another data directory.
        let intruder = Process()
        intruder.executableURL = CLITests.binary
        intruder.arguments = ["agent", "--server", cluster.url, "--data-dir", cluster.directory + "/intruder", "--name", "n1",
                              "--simulate-gpus", "4xH100-80GB", "--join-token", cluster.joinToken]
        let errors = Pipe()
        intruder.standardOutput = FileHandle.nullDevice
        intruder.standardError = errors
        try intruder.run()
        let said = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        intruder.waitUntilExit()
        #expect(intruder.terminationStatus != 0)
        #expect(said.contains("already registered"), "\(said)")
        let nodes = try cluster.json(cluster.get("/v1/nodes"))["items"] as? [[String: Any]] ?? []
        #expect(nodes.count == 1 && nodes.first?["state"] as? String == "ready")
    }

    @Test(.timeLimit(.minutes(1))) func aTwoNodeGangGetsDistinctRanksAndOneMasterAddress() throws {
        let cluster = try LocalCluster()
        try cluster.startAgent("n1")
        try cluster.startAgent("n2")
        cluster.waitForAgent("n1", "registered as node")
        cluster.waitForAgent("n2", "registered as node")
        let job = try cluster.submit(["sh", "-c", "echo rank=$FASTGPU_NODE_RANK of=$FASTGPU_NUM_NODES master=$FASTGPU_MASTER_ADDR:$FASTGPU_MASTER_PORT"],
                                     gpus: 4, extra: #","tasks":2"#)
        let lines = try cluster.followLogs(job).map(\.text).joined().split(separator: "\n").map(String.init).sorted()
        #expect(lines.count == 2, "\(lines)")
        #expect(lines.map { $0.prefix(13) } == ["rank=0 of=2 m", "rank=1 of=2 m"])
        let masters = Set(lines.compactMap { $0.split(separator: " ").last })
        #expect(masters.count == 1 && masters.first?.hasPrefix("master=127.0.0.1:") == true, "\(lines)")
        let view = try cluster.json(cluster.get("/v1/jobs/\(job)"))
        #expect(view["state"] as? String == "succeeded")
        #expect(Set((view["allocations"] as? [[String: Any]] ?? []).compactMap { $0["node"] as? Int }).count == 2, "one task per node")
    }

    @Test(.timeLimit(.minutes(1))) func aNodeWhoseAgentStaysDeadGoesDownAndItsJobFinishesElsewhere() throws {
        let cluster = try LocalCluster(serverArguments: ["--heartbeat-ttl", "1", "--heartbeat-grace", "1", "--startup-grace", "0", "--retry-backoff", "1"])
        try cluster.startAgent("n1")
        cluster.waitForAgent("n1", "registered as node")
        let marker = cluster.directory + "/first-attempt"
        let job = try cluster.submit(["sh", "-c", "if [ -e \(marker) ]; then echo second; else touch \(marker); echo first; sleep 300; fi"], gpus: 4)
        let started = cluster.waitForAgent("n1", "started allocation") ?? ""
        try cluster.startAgent("n2")
        cluster.waitForAgent("n2", "registered as node")
        // The machine dies: its agent and the workload with it.
        cluster.killAgent("n1")
        let allocation = started.split(separator: " ").drop { $0 != "allocation" }.dropFirst().first.map(String.init) ?? ""
        let pid = try String(contentsOfFile: cluster.directory + "/agent-n1/allocations/\(allocation)/pid", encoding: .utf8)
        kill(-(Int32(pid.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0), SIGKILL)
        // Down after heartbeat TTL + grace, requeued after the backoff, run on n2 to the end.
        // What the first attempt printed may have died with its machine before it was shipped.
        let lines = try cluster.followLogs(job).map(\.text).joined()
        #expect(lines == "first\nsecond\n" || lines == "second\n", "\(lines)")
        let view = try cluster.json(cluster.get("/v1/jobs/\(job)"))
        #expect(view["state"] as? String == "succeeded")
        #expect(view["attempts"] as? Int == 2)
        let outcomes = (view["allocations"] as? [[String: Any]] ?? []).map { $0["outcome"] as? String ?? "" }
        #expect(outcomes == ["lost", "succeeded"])
        let nodes = try cluster.json(cluster.get("/v1/nodes"))["items"] as? [[String: Any]] ?? []
        #expect(nodes.first { $0["name"] as? String == "n1" }?["state"] as? String == "down")
    }

    @Test(.timeLimit(.minutes(1))) func anAgentKilledWith9ReattachesWithoutASecondCopy() throws {
        let cluster = try LocalCluster()
        try cluster.startAgent("n1")
        cluster.waitForAgent("n1", "registered as node")
        let gate = cluster.mkfifo("gate")
        let job = try cluster.submit(["sh", "-c", "echo start; cat \(gate); echo done"])
        #expect(cluster.waitForAgent("n1", "started allocation") != nil)
        cluster.killAgent("n1")
        try cluster.startAgent("n1", register: false)
        #expect(cluster.waitForAgent("n1", "re-attached to node")?.contains("with 1 workload(s)") == true)
        // Let the job finish: it reads the gate, prints, exits; the new agent reports it.
        try "go\n".write(toFile: gate, atomically: false, encoding: .utf8)
        let lines = try cluster.followLogs(job).map(\.text).joined()
        #expect(lines == "start\ngo\ndone\n", "one copy, every line once")
        let view = try cluster.json(cluster.get("/v1/jobs/\(job)"))
        #expect(view["state"] as? String == "succeeded")
        #expect(view["attempts"] as? Int == 1)
    }
}

@Suite struct UpTests {
    @Test(.timeLimit(.minutes(1))) func upRunsAJobOnTwoSimulatedNodesAndStopsOnCtrlC() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("fastgpu-up-\(UInt64.random(in: 0...UInt64.max))").path
        let up = Process()
        up.executableURL = CLITests.binary
        up.arguments = ["up", "--data-dir", directory, "--port", "0", "--nodes", "2", "--simulate-gpus", "4xA100-80GB"]
        let out = Pipe(), errors = Pipe()
        up.standardOutput = out
        up.standardError = errors
        try up.run()
        defer { if up.isRunning { kill(up.processIdentifier, SIGKILL) } }
        let banner = LineReader(out.fileHandleForReading).waitFor { $0.hasPrefix("FastGPU is up at ") } ?? ""
        #expect(banner.contains("2 node(s) with 4xA100-80GB (simulated)"), "\(banner)")
        // "FastGPU is up at http://127.0.0.1:PORT: 2 node(s) …"
        let url = String(banner.dropFirst("FastGPU is up at ".count).split(separator: " ").first?.dropLast() ?? "")
        let agentLog = LineReader(errors.fileHandleForReading)
        #expect(agentLog.waitFor { $0.contains("registered as node 2") || $0.contains("registered as node 1") } != nil)
        #expect(agentLog.waitFor { $0.contains("registered as node") } != nil, "both agents registered")
        let token = try String(contentsOfFile: directory + "/admin-token", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let auth = ["-H", "Authorization: Bearer \(token)"]
        let submitted = try ServerProcessTests.curl(auth + ["-X", "POST", url + "/v1/jobs", "-d", #"{"project":"default","command":["sh","-c","echo gpus=$CUDA_VISIBLE_DEVICES"],"resources":{"gpus":4}}"#])
        #expect(submitted.contains(#""id":1"#), "\(submitted)")
        let logs = try ServerProcessTests.curl(auth + [url + "/v1/jobs/1/logs?follow=true"])
        #expect(logs.contains(#"gpus=0,1,2,3\n"#), "\(logs)")
        kill(up.processIdentifier, SIGINT)
        up.waitUntilExit()
        #expect(up.terminationStatus == 0, "Ctrl-C is a graceful stop")
    }
}
