import ArgumentParser
import AsyncHTTPClient
import FastGPUClient
import FastGPUWire
import Foundation
import NIOCore
import Synchronization

/// `fastgpu bench serve`: replay a trace of requests against a service and say what serving it cost.
struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Replay request traces against services (and any HTTP endpoint) and report latency and cost.",
        subcommands: [Serve.self, Storage.self])

    struct Serve: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "serve",
            abstract: "Replay a CSV of requests (t_s,duration_s[,model]) against a service through the gateway.",
            discussion: """
                Each row is one request: its arrival time in seconds from the start, and the time the \
                replica should spend on it (sent as ?sleep=SECONDS to /predict; the model server of \
                scripts/model_server.py honours it). Reports answered and dropped requests, the wait \
                the gateway added and the wait for cold starts (p50/p99), the replica-seconds the \
                service used, and the replica-seconds of a static deployment sized for the trace's peak.
                """)

        @OptionGroup var connection: ClientOptions
        @Option(help: ArgumentHelp("The trace: CSV rows t_s,duration_s[,model]; a header line is skipped.", valueName: "file"))
        var trace: String
        @Option(help: "The service to call (through the gateway).") var service: String?
        @Option(help: ArgumentHelp("The gateway's URL.", valueName: "url")) var gateway = "http://127.0.0.1:8471"
        @Option(help: ArgumentHelp("Call this URL for every request instead (e.g. a replica directly, or another proxy); ?sleep= is added.", valueName: "url"))
        var target: String?
        @Option(help: "Replay N times faster (arrival times and durations are both divided).") var speedup = 1.0
        @Option(help: "Ignore arrival times: N workers send the trace's requests back to back (throughput).") var closedLoop: Int?
        @Option(help: "Seconds a request may take before it counts as dropped.") var timeout = 120
        @OptionGroup var format: OutputOptions

        func validate() throws {
            guard (service == nil) != (target == nil) else { throw ValidationError("give --service or --target") }
            guard speedup > 0, speedup <= 10_000 else { throw ValidationError("--speedup must be above 0 and at most 10000") }
            if let closedLoop { guard (1...4096).contains(closedLoop) else { throw ValidationError("--closed-loop must be 1 to 4096") } }
            guard (1...3600).contains(timeout) else { throw ValidationError("--timeout must be 1 to 3600") }
        }

        func run() async throws {
            let rows = try ReplayTrace.load(trace, speedup: speedup)
            guard !rows.isEmpty else { throw CommandFailure("\(trace) holds no request") }
            var token: String?
            var client: FastGPUClient?
            if service != nil {
                let made = try await connection.client()
                client = made
                token = made.token
            }
            let url = target ?? "\(gateway.hasSuffix("/") ? String(gateway.dropLast()) : gateway)/\(service ?? "")/predict"
            var configuration = HTTPClient.Configuration()
            configuration.connectionPool = .init(idleTimeout: .seconds(30), concurrentHTTP1ConnectionsPerHostSoftLimit: 4096)
            let http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
            let started = Date()
            let results = await ReplayTrace.replay(rows, url: url, token: token, http: http, closedLoop: closedLoop, timeout: .seconds(Int64(timeout)))
            let ended = Date()
            try? await http.shutdown()
            var report = ReplayTrace.Report(results: results, rows: rows, wall: ended.timeIntervalSince(started))
            if let client, let service {
                let events = try await client.serviceEvents(service)
                let spec = try await client.service(service).spec
                report.addCost(events: events.items, rows: rows, from: started, to: ended, target: spec.autoscaling?.target ?? 1)
            }
            if format.json { return try Output.json(report) }
            Output.write(report.text)
        }
    }
}

/// A trace of requests and its replay.
enum ReplayTrace {
    struct Row: Sendable {
        var at: Double
        var duration: Double
    }

    struct Result: Sendable {
        var status: Int
        var latency: Double
        var duration: Double
        var held: Double
    }

    static func load(_ path: String, speedup: Double) throws -> [Row] {
        guard let data = FileManager.default.contents(atPath: path) else { throw CommandFailure("cannot read the trace \(path)") }
        var rows: [Row] = []
        for (number, line) in String(decoding: data, as: UTF8.self).split(whereSeparator: \.isNewline).enumerated() {
            let fields = line.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
            guard let at = Double(fields[0]), fields.count >= 2, let duration = Double(fields[1]) else {
                if number == 0 { continue }  // a header
                throw CommandFailure("\(path):\(number + 1): expected t_s,duration_s[,model], not '\(line.prefix(80))'")
            }
            guard at >= 0, at.isFinite, duration >= 0, duration <= 3600 else { throw CommandFailure("\(path):\(number + 1): times must be 0 or more (a duration at most 3600 s)") }
            rows.append(Row(at: at / speedup, duration: duration / speedup))
        }
        guard rows.count <= 10_000_000 else { throw CommandFailure("\(path) holds more than 10,000,000 requests") }
        return rows.sorted { $0.at < $1.at }
    }

    static func replay(_ rows: [Row], url: String, token: String?, http: HTTPClient, closedLoop: Int?, timeout: Duration) async -> [Result] {
        let clock = ContinuousClock()
        let start = clock.now
        @Sendable func send(_ row: Row) async -> Result {
            var request = HTTPClientRequest(url: url + (url.contains("?") ? "&" : "?") + "sleep=\(row.duration)")
            request.method = .POST
            request.body = .bytes(ByteBuffer(string: "{}"))
            if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
            let sent = clock.now
            do {
                let response = try await http.execute(request, timeout: .nanoseconds(Int64(timeout.components.seconds) * 1_000_000_000))
                _ = try await response.body.collect(upTo: 16 << 20)
                let held = Double(response.headers.first(name: "X-FastGPU-Held-Ms") ?? "0").map { $0 / 1000 } ?? 0
                return Result(status: Int(response.status.code), latency: seconds(clock.now - sent), duration: row.duration, held: held)
            } catch {
                return Result(status: -1, latency: seconds(clock.now - sent), duration: row.duration, held: 0)
            }
        }
        if let workers = closedLoop {
            let next = NextRow(count: rows.count)
            return await withTaskGroup(of: [Result].self) { group in
                for _ in 0..<workers {
                    group.addTask {
                        var mine: [Result] = []
                        while let index = next.take() { mine.append(await send(rows[index])) }
                        return mine
                    }
                }
                var all: [Result] = []
                for await part in group { all += part }
                return all
            }
        }
        return await withTaskGroup(of: Result.self) { group in
            for row in rows {
                // Open loop: each request leaves at its time, whatever the others do.
                try? await clock.sleep(until: start + .nanoseconds(Int64(row.at * 1e9)))
                group.addTask { await send(row) }
            }
            var all: [Result] = []
            for await result in group { all.append(result) }
            return all
        }
    }

    static func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18 }

    /// Hands out row indexes to closed-loop workers.
    final class NextRow: Sendable {
        let state: Mutex<Int>
        let count: Int
        init(count: Int) {
            self.count = count
            state = Mutex(0)
        }
        func take() -> Int? {
            state.withLock { value in
                guard value < count else { return nil }
                defer { value += 1 }
                return value
            }
        }
    }

    struct Report: Encodable {
        var requests: Int
        var answered: Int
        var dropped: Int
        var wallSeconds: Double
        var requestsPerSecond: Double
        /// Latency minus the replica's own time, minus the time held for a replica: what the gateway added.
        var gatewayAddedP50Milliseconds: Double
        var gatewayAddedP99Milliseconds: Double
        var latencyP50Milliseconds: Double
        var latencyP99Milliseconds: Double
        /// Time held waiting for a replica (cold starts, or replicas at their cap).
        var heldRequests: Int
        var coldStartWaitP50Milliseconds: Double
        var coldStartWaitP99Milliseconds: Double
        var replicaSeconds: Double?
        var staticPeakReplicas: Int?
        var staticReplicaSeconds: Double?

        init(results: [Result], rows: [Row], wall: Double) {
            requests = results.count
            let ok = results.filter { (200..<300).contains($0.status) }
            answered = ok.count
            dropped = results.count - ok.count
            wallSeconds = wall
            requestsPerSecond = wall > 0 ? Double(ok.count) / wall : 0
            let added = ok.map { max(0, $0.latency - $0.duration - $0.held) * 1000 }.sorted()
            gatewayAddedP50Milliseconds = Self.percentile(added, 0.50)
            gatewayAddedP99Milliseconds = Self.percentile(added, 0.99)
            let latency = ok.map { $0.latency * 1000 }.sorted()
            latencyP50Milliseconds = Self.percentile(latency, 0.50)
            latencyP99Milliseconds = Self.percentile(latency, 0.99)
            let held = ok.filter { $0.held > 0.001 }.map { $0.held * 1000 }.sorted()
            heldRequests = held.count
            coldStartWaitP50Milliseconds = Self.percentile(held, 0.50)
            coldStartWaitP99Milliseconds = Self.percentile(held, 0.99)
        }

        static func percentile(_ sorted: [Double], _ p: Double) -> Double {
            guard !sorted.isEmpty else { return 0 }
            return sorted[min(sorted.count - 1, Int((Double(sorted.count) * p).rounded(.up)) - 1)]
        }

        /// Replica-seconds from the service's events in the replay's window, against a static
        /// deployment of ceil(peak concurrency ÷ target) replicas for the same window.
        mutating func addCost(events: [ServiceEventWire], rows: [Row], from start: Date, to end: Date, target: Int) {
            let format = ISO8601DateFormatter()
            format.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
            var since: [String: Date] = [:]
            var total = 0.0
            for event in events {
                guard let time = format.date(from: event.time) else { continue }
                let job = event.message.split(separator: " ").dropFirst().first.map(String.init) ?? ""
                switch event.kind {
                case "replicaStarted": since[job] = max(time, start)
                case "replicaStopped", "replicaExited":
                    if let begun = since.removeValue(forKey: job), time > start { total += min(time, end).timeIntervalSince(begun) }
                default: break
                }
            }
            // Replicas up before the replay began, and still up at its end.
            for begun in since.values { total += end.timeIntervalSince(begun) }
            replicaSeconds = total
            let peak = Self.peakConcurrency(rows)
            let replicas = max(1, (peak + target - 1) / max(1, target))
            staticPeakReplicas = replicas
            staticReplicaSeconds = Double(replicas) * end.timeIntervalSince(start)
        }

        static func peakConcurrency(_ rows: [Row]) -> Int {
            var edges: [(Double, Int)] = []
            for row in rows { edges.append((row.at, 1)); edges.append((row.at + row.duration, -1)) }
            edges.sort { $0.0 < $1.0 || ($0.0 == $1.0 && $0.1 < $1.1) }
            var now = 0, peak = 0
            for edge in edges { now += edge.1; peak = max(peak, now) }
            return peak
        }

        var text: String {
            var out = "requests \(requests): answered \(answered), dropped \(dropped) in \(String(format: "%.1f", wallSeconds)) s (\(String(format: "%.0f", requestsPerSecond)) answered/s)\n"
            out += "latency p50 \(String(format: "%.2f", latencyP50Milliseconds)) ms, p99 \(String(format: "%.2f", latencyP99Milliseconds)) ms\n"
            out += "added by the gateway: p50 \(String(format: "%.2f", gatewayAddedP50Milliseconds)) ms, p99 \(String(format: "%.2f", gatewayAddedP99Milliseconds)) ms\n"
            out += "held for a replica (cold starts): \(heldRequests) request(s), p50 \(String(format: "%.0f", coldStartWaitP50Milliseconds)) ms, p99 \(String(format: "%.0f", coldStartWaitP99Milliseconds)) ms\n"
            if let replicaSeconds, let staticReplicaSeconds, let staticPeakReplicas {
                out += "replica-seconds used: \(String(format: "%.1f", replicaSeconds)); a static deployment sized for the peak (\(staticPeakReplicas) replica(s)): \(String(format: "%.1f", staticReplicaSeconds))\n"
            }
            return out
        }
    }
}
