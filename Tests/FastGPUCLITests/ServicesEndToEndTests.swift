import AsyncHTTPClient
import Foundation
import NIOCore
import Testing

/// Services end to end: a real server with its gateway, a real agent with simulated GPUs, and a
/// real model server process per replica (`scripts/model_server.py`: `/health` once its start-up
/// delay passed, `/predict` after a configurable sleep). Waits are on events — an agent's log
/// line, the answers themselves — never on the clock.
@Suite(.serialized, .enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/python3")))
struct ServicesEndToEndTests {
    static let modelServer = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("scripts/model_server.py").path

    /// A cluster of one agent with 8 simulated GPUs, and a client for its gateway.
    final class Rig: @unchecked Sendable {  // its fields are set once; the cluster is only read from the tasks
        let cluster: LocalCluster
        let gateway: String
        let http: HTTPClient
        /// The model server, copied where a replica can read it: an isolated job has a private
        /// /tmp, so a checkout under /tmp is out of its sight.
        let server: String

        init() throws {
            cluster = try LocalCluster()
            server = cluster.directory + "/model_server.py"
            try FileManager.default.copyItem(atPath: ServicesEndToEndTests.modelServer, toPath: server)
            chmod(server, 0o644)
            // Readiness is re-announced only after a minute: a gateway that needed it (instead of
            // the readiness event) would answer far later than any bound below.
            try cluster.startAgent("n1", gpus: "8xH100-80GB", extra: ["--replica-reannounce", "60"])
            gateway = try cluster.gateway()
            var configuration = HTTPClient.Configuration()
            configuration.connectionPool = .init(idleTimeout: .seconds(30), concurrentHTTP1ConnectionsPerHostSoftLimit: 256)
            http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        }

        func shutdown() async { try? await http.shutdown() }

        func create(_ name: String, env: [String: String], replicas: (Int, Int), extra: String = "") throws {
            let envJSON = String(decoding: try JSONSerialization.data(withJSONObject: env), as: UTF8.self)
            let reply = try cluster.post("/v1/services", #"{"name":"\#(name)","command":["python3","\#(server)"],"env":\#(envJSON),"resources":{"gpus":1,"cpuMillis":100,"memoryMiB":256},"replicas":{"min":\#(replicas.0),"max":\#(replicas.1)},"readiness":{"intervalSeconds":1,"timeoutSeconds":0.5}\#(extra)}"#)
            #expect(reply.contains(#""revision":1"#), "\(reply)")
        }

        /// One request through the gateway: its status (-1: no answer) and when the answer came.
        func call(_ path: String, body: String? = nil) async -> (status: Int, at: Date, text: String) {
            var request = HTTPClientRequest(url: gateway + path)
            request.headers.add(name: "Authorization", value: "Bearer \(cluster.admin)")
            if let body {
                request.method = .POST
                request.body = .bytes(ByteBuffer(string: body))
            }
            do {
                let response = try await http.execute(request, timeout: .seconds(90))
                let text = String(buffer: try await response.body.collect(upTo: 1 << 20))
                return (Int(response.status.code), Date(), text)
            } catch {
                return (-1, Date(), "\(error)")
            }
        }

        func events(_ name: String) throws -> [(time: Date, kind: String, message: String)] {
            let list = try cluster.json(cluster.get("/v1/services/\(name)/events"))["items"] as? [[String: Any]] ?? []
            let format = ISO8601DateFormatter()
            format.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
            return list.map { (format.date(from: $0["time"] as? String ?? "") ?? .distantPast, $0["kind"] as? String ?? "", $0["message"] as? String ?? "") }
        }

        func service(_ name: String) throws -> [String: Any] { try cluster.json(cluster.get("/v1/services/\(name)")) }

        /// Waits until the agent has logged `count` more lines containing `text`. The wait reads a
        /// pipe and blocks, so it runs on a thread of its own: the cooperative pool has one thread
        /// per core, and on a 2-core CI machine this test blocking one while another test blocked
        /// the other starved the load tasks that should make the agent say it (no request was sent
        /// in 60 s, so no replica was ever asked for).
        func agentSays(_ text: String, times count: Int = 1) async -> Bool {
            await withCheckedContinuation { continuation in
                Thread {
                    for _ in 0..<count where self.cluster.waitForAgent("n1", text) == nil {
                        continuation.resume(returning: false)
                        return
                    }
                    continuation.resume(returning: true)
                }.start()
            }
        }
    }

    /// Runs `body` on `workers` tasks in a loop until `stop` is set; every answer's status.
    final class Load: @unchecked Sendable {  // guarded by `lock`
        let lock = NSLock()
        var statuses: [Int] = []
        var stopped = false

        func run(_ rig: Rig, workers: Int, path: String) -> Task<Void, Never> {
            Task {
                await withTaskGroup(of: Void.self) { group in
                    for _ in 0..<workers {
                        group.addTask {
                            while !self.isStopped {
                                let answer = await rig.call(path, body: "{}")
                                self.lock.withLock { self.statuses.append(answer.status) }
                            }
                        }
                    }
                }
            }
        }

        var isStopped: Bool { lock.withLock { stopped } }
        func stop() { lock.withLock { stopped = true } }
        var answered: [Int] { lock.withLock { statuses } }
    }

    @Test(.timeLimit(.minutes(3))) func aHundredRequestsAtZeroReplicasAreAllAnsweredOnceTheReplicaIsReady() async throws {
        let rig = try Rig()
        // One replica at most, five seconds to become ready (a model loading).
        try rig.create("cold", env: ["STARTUP_DELAY_S": "5", "PREDICT_SLEEP_S": "0.05"], replicas: (0, 1))
        let started = Date()
        let answers = await withTaskGroup(of: (status: Int, at: Date, text: String).self) { group in
            for _ in 0..<100 { group.addTask { await rig.call("/cold/predict") } }
            var all: [(status: Int, at: Date, text: String)] = []
            for await answer in group { all.append(answer) }
            return all
        }
        await rig.shutdown()
        #expect(answers.filter { $0.status == 200 }.count == 100, "\(Dictionary(grouping: answers, by: \.status).mapValues(\.count)) \(answers.first { $0.status != 200 }?.text ?? "")")
        let ready = try #require(try rig.events("cold").first { $0.kind == "replicaReady" }?.time)
        let first = try #require(answers.map(\.at).min())
        #expect(ready.timeIntervalSince(started) >= 5, "the replica took its start-up delay")
        // Run alone (`swift test --filter ServicesEndToEndTests`) the first answer comes 0.1–0.3 s
        // after the ready event; inside the whole suite, which saturates both cores with other
        // servers, agents, moto and simulations, up to ~2.5 s was seen, 6–7 s since the storage
        // suites joined it, and once 9.7 s on a clean clone. The bound is what this test is for:
        // it fails a gateway that waits for a poll (the 30 s route long poll, the readiness
        // re-announce, set to 60 s above) instead of the readiness event. How fast the wake is,
        // is a benchmark's to say, not a test's.
        #expect(first.timeIntervalSince(ready) < 25, "first answer \(first.timeIntervalSince(ready)) s after the replica was ready")
        #expect(try rig.events("cold").filter { $0.kind == "replicaStarted" }.count == 1, "one wake, not one per request")
        let metrics = try rig.cluster.get("/metrics")
        #expect(metrics.contains(#"fastgpu_service_requests_total{service="cold",gateway="embedded"} 100"#), "\(metrics.split(separator: "\n").filter { $0.contains("service") })")
        #expect(metrics.contains(#"fastgpu_service_cold_start_requests_total{service="cold",gateway="embedded"} 100"#))
        #expect(metrics.contains(#"fastgpu_service_request_seconds_count{service="cold",gateway="embedded"} 100"#))
        #expect(metrics.split(separator: "\n").contains { $0.hasPrefix("fastgpu_service_replicas") && $0.contains(#"state="ready""#) && $0.hasSuffix(" 1") })
    }

    @Test(.timeLimit(.minutes(3))) func loadAddsReplicasWithinThePanicWindowAndTheyGoBackToZeroWhenItStops() async throws {
        let rig = try Rig()
        try rig.create("elastic", env: ["PREDICT_SLEEP_S": "0.3"], replicas: (0, 3),
                       extra: #","autoscaling":{"target":1,"stableWindowSeconds":6,"panicWindowSeconds":2,"scaleDownDelaySeconds":2,"scaleToZeroAfterSeconds":4}"#)
        let load = Load()
        let task = load.run(rig, workers: 6, path: "/elastic/predict")
        // Three replicas become ready under 6 requests in flight with a target of 1.
        #expect(await rig.agentSays("replica ready", times: 3))
        load.stop()
        await task.value
        #expect(load.answered.allSatisfy { $0 == 200 }, "\(Dictionary(grouping: load.answered, by: { $0 }).mapValues(\.count))")
        // With no load, every replica stops: to min (0) after the idle period.
        #expect(await rig.agentSays("stopped", times: 3))
        await rig.shutdown()
        let events = try rig.events("elastic")
        let wake = try #require(events.first { $0.kind == "scaled" }?.time)
        let toThree = try #require(events.first { $0.kind == "scaled" && $0.message.contains("→ 3") })
        #expect(toThree.message.contains("panicking"), "\(toThree.message)")
        #expect(toThree.time.timeIntervalSince(wake) <= 4, "3 replicas asked for \(toThree.time.timeIntervalSince(wake)) s after the wake")
        #expect(events.contains { $0.kind == "scaled" && $0.message.contains("→ 0") && $0.message.contains("scaleToZero") })
        #expect(try rig.service("elastic")["desiredReplicas"] as? Int == 0)
    }

    @Test(.timeLimit(.minutes(3))) func aRollingUpdateUnderConstantLoadFailsNoRequest() async throws {
        let rig = try Rig()
        try rig.create("roll", env: ["PREDICT_SLEEP_S": "0.05"], replicas: (2, 2))
        #expect(await rig.agentSays("replica ready", times: 2))
        let load = Load()
        let task = load.run(rig, workers: 4, path: "/roll/predict")
        let revised = try rig.cluster.curl(["-X", "PUT", rig.cluster.url + "/v1/services/roll", "-d",
            #"{"name":"roll","command":["python3","\#(rig.server)"],"env":{"PREDICT_SLEEP_S":"0.05","MODEL":"v2"},"resources":{"gpus":1,"cpuMillis":100,"memoryMiB":256},"replicas":{"min":2,"max":2},"readiness":{"intervalSeconds":1,"timeoutSeconds":0.5}}"#])
        #expect(revised.contains(#""revision":2"#), "\(revised)")
        // Two new replicas ready, two old ones drained and stopped.
        #expect(await rig.agentSays("replica ready", times: 2))
        #expect(await rig.agentSays("stopped", times: 2))
        load.stop()
        await task.value
        await rig.shutdown()
        let answered = load.answered
        #expect(answered.count > 20, "the load ran through the rollout")
        #expect(answered.allSatisfy { $0 == 200 }, "\(Dictionary(grouping: answered, by: { $0 }).mapValues(\.count))")
        let replicas = try rig.service("roll")["replicas"] as? [[String: Any]] ?? []
        let history = try rig.events("roll").map { "\($0.time) \($0.kind) \($0.message)" }.joined(separator: "\n")
        #expect(replicas.map { $0["revision"] as? Int } == [2, 2], "\(history)")
    }

    @Test(.timeLimit(.minutes(3))) func aReplicaKilledWith9IsRestartedAndNewRequestsGoElsewhere() async throws {
        let rig = try Rig()
        let pids = rig.cluster.directory + "/pids"
        try FileManager.default.createDirectory(atPath: pids, withIntermediateDirectories: true)
        chmod(pids, 0o777)
        try rig.create("sturdy", env: ["PREDICT_SLEEP_S": "0.1", "PID_DIR": pids], replicas: (2, 2))
        #expect(await rig.agentSays("replica ready", times: 2))
        let load = Load()
        let task = load.run(rig, workers: 4, path: "/sturdy/predict")
        let victim = try #require(try FileManager.default.contentsOfDirectory(atPath: pids).sorted().first)
        let pid = try #require(Int32(try String(contentsOfFile: pids + "/" + victim, encoding: .utf8)))
        kill(pid, SIGKILL)
        // The agent sees it exit; the service starts another, which becomes ready.
        #expect(await rig.agentSays("exited with"))
        #expect(await rig.agentSays("replica ready"))
        load.stop()
        await task.value
        let answered = load.answered
        let failed = answered.filter { $0 != 200 }.count
        #expect(failed <= 4, "at most the requests in flight at the kill fail (4 workers): \(Dictionary(grouping: answered, by: { $0 }).mapValues(\.count))")
        // New requests go to the two replicas that serve.
        var after: [Int] = []
        for _ in 0..<20 { after.append(await rig.call("/sturdy/predict", body: "{}").status) }
        await rig.shutdown()
        #expect(after.allSatisfy { $0 == 200 }, "\(after)")
        let events = try rig.events("sturdy")
        #expect(events.contains { $0.kind == "replicaExited" })
        #expect(events.filter { $0.kind == "replicaStarted" }.count == 3)
    }
}

extension ServicesEndToEndTests {
    @Test(.timeLimit(.minutes(2))) func aGatewayOfItsOwnRoutesByLongPollAndChecksCallers() async throws {
        let rig = try Rig()
        // A second gateway process, as an operator runs one behind a load balancer.
        let gateway = Process()
        gateway.executableURL = CLITests.binary
        gateway.arguments = ["gateway", "--server", rig.cluster.url, "--token", rig.cluster.admin, "--port", "0", "--name", "edge-1"]
        let out = Pipe()
        gateway.standardOutput = out
        gateway.standardError = FileHandle.nullDevice
        try gateway.run()
        defer { kill(gateway.processIdentifier, SIGKILL) }
        let line = try LineReader(out.fileHandleForReading).waitFor { $0.contains("gateway listening on") }.orThrow("the gateway did not start")
        let url = String(line[try line.range(of: "http://").orThrow("no URL").lowerBound...].prefix { $0 != " " })
        try rig.create("edge", env: ["STARTUP_DELAY_S": "1"], replicas: (0, 1))
        let outsider = try rig.cluster.json(rig.cluster.post("/v1/projects", #"{"name":"other"}"#))
        #expect(outsider["name"] as? String == "other")
        _ = try rig.cluster.curl(["-X", "PUT", rig.cluster.url + "/v1/projects/other/members/eve", "-d", #"{"role":"admin"}"#])
        let eve = try rig.cluster.json(rig.cluster.post("/v1/tokens", #"{"name":"eve","subject":"eve"}"#))["token"] as? String ?? ""

        func call(_ token: String?) async -> Int {
            var request = HTTPClientRequest(url: url + "/edge/predict")
            if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
            guard let response = try? await rig.http.execute(request, timeout: .seconds(60)) else { return -1 }
            _ = try? await response.body.collect(upTo: 1 << 20)
            return Int(response.status.code)
        }
        // From zero, through the second gateway: its held request wakes the service too.
        #expect(await call(rig.cluster.admin) == 200)
        #expect(await call(nil) == 401)
        #expect(await call(eve) == 404, "another project's member does not see the service")
        #expect(await call("fgpu_not-a-real-token") == 401)
        await rig.shutdown()
        let events = try rig.events("edge")
        #expect(events.contains { $0.kind == "scaled" && $0.message.contains("wake") })
    }
}

extension ServicesEndToEndTests {
    @Test(.timeLimit(.minutes(2))) func theReplayToolReportsEveryRequestAndWhatTheServiceCost() async throws {
        let rig = try Rig()
        try rig.create("replay", env: ["STARTUP_DELAY_S": "1"], replicas: (0, 2),
                       extra: #","autoscaling":{"target":1,"stableWindowSeconds":4,"panicWindowSeconds":1}"#)
        // A streamed answer comes through chunk by chunk.
        let streamed = await rig.call("/replay/stream?n=3")
        #expect(streamed.status == 200 && streamed.text == "token 0\ntoken 1\ntoken 2\n", "\(streamed.text)")
        await rig.shutdown()
        let trace = URL(fileURLWithPath: Self.modelServer).deletingLastPathComponent().appendingPathComponent("traces/small.csv").path
        let rows = try String(contentsOfFile: trace, encoding: .utf8).split(separator: "\n").count - 1
        let run = try CLITests.run(["bench", "serve", "--server", rig.cluster.url, "--token", rig.cluster.admin, "--trace", trace,
                                    "--service", "replay", "--gateway", rig.gateway, "--speedup", "2", "-o", "json"])
        #expect(run.status == 0, "\(run.errors)")
        let report = try rig.cluster.json(run.output)
        #expect(report["requests"] as? Int == rows)
        #expect(report["answered"] as? Int == rows)
        #expect(report["dropped"] as? Int == 0)
        #expect((report["replicaSeconds"] as? Double ?? 0) > 0)
        #expect((report["staticReplicaSeconds"] as? Double ?? 0) > 0)
        #expect((report["latencyP99Milliseconds"] as? Double ?? 0) >= (report["latencyP50Milliseconds"] as? Double ?? 0))
        // A trace that is not one is refused in one line.
        let bad = try CLITests.run(["bench", "serve", "--server", rig.cluster.url, "--token", rig.cluster.admin, "--trace", "/etc/hostname",
                                    "--service", "replay", "--gateway", rig.gateway])
        #expect(bad.status != 0 && bad.errors.split(separator: "\n").count == 1, "\(bad.errors)")
    }
}
