import AsyncHTTPClient
import FastGPUWire
import Foundation
import NIOCore

/// A replica's port and readiness probe, and what the probes have found so far. Kept with the
/// workload on disk, so a restarted agent probes the same port.
struct ReplicaProbe: Codable, Equatable {
    var service: String
    /// The node's port the gateway reaches the replica at (a container's is published to it).
    var hostPort: Int
    var path: String
    var intervalMilliseconds: Int64
    var timeoutMilliseconds: Int64
    var failureThreshold: Int
    var startupTimeoutMilliseconds: Int64
    var ready = false
    var everReady = false
    var failures = 0
    var startedAt: Date?
    var nextProbeAt: Date?
    /// What the control plane last accepted, and when (it is told again now and then: a
    /// restarted control plane learns readiness from these).
    var reportedReady: Bool?
    var reportedAt: Date?
    /// The start-up timeout passed: the agent stopped it.
    var gaveUp = false

    init(_ wire: ReplicaAssignmentWire, hostPort: Int) {
        service = wire.service
        self.hostPort = hostPort
        path = wire.path
        intervalMilliseconds = wire.intervalMilliseconds
        timeoutMilliseconds = wire.timeoutMilliseconds
        failureThreshold = wire.failureThreshold
        startupTimeoutMilliseconds = wire.startupTimeoutMilliseconds
    }

    /// Until a replica first answers, it is probed every 100 ms: the first request held at the
    /// gateway waits for this, not for the spec's interval.
    static let startupProbeInterval: TimeInterval = 0.1
}

// Readiness: the agent probes each running replica on its port and tells the control plane when
// it becomes ready or stops being so; one that never becomes ready within its start-up timeout is
// stopped (and the service starts another, with backoff).
extension Agent {
    func readinessLoop() async throws {
        while !Task.isCancelled {
            try await Task.sleep(for: .milliseconds(100))
            await probeReplicas()
        }
    }

    func probeReplicas() async {
        guard let state else { return }
        let now = Date()
        var due: [(id: UInt64, port: Int, path: String, timeout: Int64)] = []
        for (id, workload) in state.workloads {
            guard var probe = workload.replica, workload.reportedRunning, workload.stoppingSince == nil, !probe.gaveUp else { continue }
            if probe.startedAt == nil {
                probe.startedAt = now
                self.state?.workloads[id]?.replica = probe
            }
            if probe.nextProbeAt.map({ now >= $0 }) ?? true { due.append((id, probe.hostPort, probe.path, probe.timeoutMilliseconds)) }
        }
        guard !due.isEmpty else { return }
        let http = self.http
        let results = await withTaskGroup(of: (UInt64, Bool).self) { group in
            for item in due {
                group.addTask { (item.id, await Self.probe(http: http, port: item.port, path: item.path, timeoutMilliseconds: item.timeout)) }
            }
            var results: [UInt64: Bool] = [:]
            for await (id, ok) in group { results[id] = ok }
            return results
        }
        for (id, ok) in results.sorted(by: { $0.key < $1.key }) {
            guard var workload = self.state?.workloads[id], var probe = workload.replica, workload.stoppingSince == nil else { continue }
            let now = Date()
            if ok {
                probe.failures = 0
                probe.ready = true
                probe.everReady = true
            } else {
                probe.failures += 1
                if probe.ready && probe.failures >= probe.failureThreshold { probe.ready = false }
                if !probe.everReady, let started = probe.startedAt,
                   now.timeIntervalSince(started) * 1000 > Double(probe.startupTimeoutMilliseconds) {
                    probe.gaveUp = true
                    let note = "fastgpu: the replica did not answer GET \(probe.path) on port \(probe.hostPort) within its start-up timeout of \(probe.startupTimeoutMilliseconds / 1000) s; stopping it\n"
                    if let handle = FileHandle(forWritingAtPath: workload.directory + "/stderr") {
                        handle.seekToEndOfFile()
                        handle.write(Data(note.utf8))
                        try? handle.close()
                    }
                    logger.info("allocation \(id): replica not ready within its start-up timeout; stopping it")
                    WorkloadProcesses.signal(SIGKILL, group: workload.pid, cgroups: workload.cgroups ?? [])
                }
            }
            probe.nextProbeAt = now.addingTimeInterval(probe.everReady ? Double(probe.intervalMilliseconds) / 1000 : ReplicaProbe.startupProbeInterval)
            workload.replica = probe
            self.state?.workloads[id] = workload
            let stale = probe.reportedAt.map { now.timeIntervalSince($0) > Double(configuration.replicaReannounce.components.seconds) } ?? true
            if probe.reportedReady != probe.ready || (probe.ready && stale) {
                await reportReadiness(id, ready: probe.ready, epoch: workload.epoch, port: probe.hostPort)
            }
        }
    }

    func reportReadiness(_ id: UInt64, ready: Bool, epoch: UInt64, port: Int) async {
        guard let state else { return }
        do {
            try await client.reportReadiness(node: state.nodeID, token: state.token, allocation: id, epoch: epoch, ready: ready,
                                             host: configuration.address, port: port)
            self.state?.workloads[id]?.replica?.reportedReady = ready
            self.state?.workloads[id]?.replica?.reportedAt = Date()
            logger.info("allocation \(id): replica \(ready ? "ready" : "not ready") on port \(port)")
        } catch {
            logger.warning("allocation \(id): cannot report readiness: \(error)")
        }
    }

    /// `GET path` on the replica's port: ready when it answers 2xx or 3xx within the timeout.
    static func probe(http: HTTPClient, port: Int, path: String, timeoutMilliseconds: Int64) async -> Bool {
        var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)\(path)")
        request.method = .GET
        do {
            let response = try await http.execute(request, timeout: .milliseconds(timeoutMilliseconds))
            _ = try? await response.body.collect(upTo: 64 * 1024)
            return (200..<400).contains(Int(response.status.code))
        } catch {
            return false
        }
    }

    /// A port nothing listens on now, from the kernel (the replica binds it a moment later).
    static func freePort() -> Int? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = INADDR_ANY
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
        guard bound == 0 else { return nil }
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}

/// The kernel gave no port for a replica.
struct NoFreePort: Error, CustomStringConvertible {
    var description: String { "no free port for a replica" }
}
