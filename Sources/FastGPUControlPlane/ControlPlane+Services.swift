public import FastGPUModel
public import FastGPUScheduler
public import FastGPUStore

/// A service name: it is the first segment of the gateway's path, so it is a DNS-label-like word.
public enum ServiceName {
    /// Paths of the API and the gateway's own that no service may take.
    static let reserved: Set<String> = ["v1", "metrics", "healthz", "readyz", "openapi.yaml", "ui", "_gateway"]

    public static func problem(_ name: String) -> String? {
        let allowed = name.utf8.allSatisfy { ($0 >= 97 && $0 <= 122) || ($0 >= 48 && $0 <= 57) || $0 == 45 }
        guard (1...63).contains(name.utf8.count), allowed, name.first != "-", name.last != "-" else {
            return "name must be 1 to 63 lower-case letters, digits and dashes, starting and ending with a letter or digit"
        }
        if reserved.contains(name) { return "name \(name) is reserved" }
        return nil
    }
}

// Services: the API's side (create, revise, scale, delete, read), the agents' readiness reports,
// the gateways' routes and load reports, and the reconciler that brings replicas to what the
// autoscaler and the rollout ask for.
extension ControlPlane {
    // MARK: - Users

    /// Creates a service (revision 1) once it is durable; its replicas start on the next reconcile.
    public func createService(name: String, project projectName: String, spec: ServiceSpec, by principal: Principal) async throws -> ServiceView {
        try checkWritable()
        try requireUser(principal)
        let project = try visibleProject(projectName, by: principal)
        guard let role = role(of: principal, in: project), role >= .member else {
            throw ControlPlaneError.forbidden("a viewer of project \(projectName) cannot create services")
        }
        if let why = ServiceName.problem(name) { throw ControlPlaneError.invalid(why) }
        try checkPriority(spec.priority, project: project, principal: principal)
        if services.records[name] != nil { throw ControlPlaneError.conflict("a service named \(name) exists; change it with PUT /v1/services/\(name)") }
        let spec = try resolvingInputs(of: spec, projectName: projectName)
        let now = clock.now()
        var record = ServiceRecord(name: name, project: project, createdBy: principal.subject, createdAt: now, spec: spec)
        record.append(.created(revision: 1), at: now)
        services.records[name] = record
        services.autoscalers[name] = ServiceAutoscaler()
        pending.direct.append(.saveService(record))
        reconcile(name, now: now)
        try await awaitDurable()
        routesChanged()
        return try serviceView(name)
    }

    /// A new spec: a new revision, rolled out with a surge of one.
    public func reviseService(_ name: String, spec: ServiceSpec, by principal: Principal) async throws -> ServiceView {
        try checkWritable()
        var record = try changeableService(name, by: principal)
        try checkPriority(spec.priority, project: record.project, principal: principal)
        let spec = try resolvingInputs(of: spec, projectName: projects[record.project]?.name ?? "")
        let now = clock.now()
        if record.spec != spec {
            let rangeOnly = { (a: ServiceSpec, b: ServiceSpec) -> Bool in
                var a = a, b = b
                a.replicas = b.replicas
                a.autoscaling = b.autoscaling
                return a == b
            }(record.spec, spec)
            if !rangeOnly {
                record.revision += 1
                record.append(.revised(revision: record.revision), at: now)
                record.failures = 0
                record.restartNotBefore = nil
            }
            record.spec = spec
            record.updatedAt = now
            services.records[name] = record
            pending.direct.append(.saveService(record))
            reconcile(name, now: now)
        }
        try await awaitDurable()
        routesChanged()
        return try serviceView(name)
    }

    /// `fastgpu services scale`: new bounds for the autoscaler (no new revision).
    public func scaleService(_ name: String, min: Int?, max: Int?, by principal: Principal) async throws -> ServiceView {
        let record = try changeableService(name, by: principal)
        var spec = record.spec
        if let min { spec.replicas.min = min }
        if let max { spec.replicas.max = max }
        if let problem = spec.problems.first { throw ControlPlaneError.invalid(problem.description) }
        return try await reviseService(name, spec: spec, by: principal)
    }

    /// Drains every replica; the service goes once they have stopped.
    public func deleteService(_ name: String, by principal: Principal) async throws -> ServiceView {
        try checkWritable()
        var record = try changeableService(name, by: principal)
        if !record.deleting {
            let now = clock.now()
            record.deleting = true
            record.append(.deleted, at: now)
            services.records[name] = record
            pending.direct.append(.saveService(record))
            reconcile(name, now: now)
        }
        let view = try serviceView(name)
        try await awaitDurable()
        return view
    }

    public func service(_ name: String, by principal: Principal) throws -> ServiceView {
        _ = try visibleService(name, by: principal)
        return try serviceView(name)
    }

    public func services(by principal: Principal, project: String?) throws -> [ServiceView] {
        try requireUser(principal)
        let only = try project.map { try visibleProject($0, by: principal) }
        return try services.records.values
            .filter { record in (only == nil || record.project == only) && role(of: principal, in: record.project) != nil }
            .sorted { $0.name < $1.name }
            .map { try serviceView($0.name) }
    }

    func visibleService(_ name: String, by principal: Principal) throws(ControlPlaneError) -> ServiceRecord {
        guard principal.kind == .user, let record = services.records[name], role(of: principal, in: record.project) != nil else {
            throw .notFound("service \(name) not found")
        }
        return record
    }

    func changeableService(_ name: String, by principal: Principal) throws(ControlPlaneError) -> ServiceRecord {
        let record = try visibleService(name, by: principal)
        guard let role = role(of: principal, in: record.project), role >= .member else {
            throw .forbidden("a viewer cannot change services")
        }
        return record
    }

    func checkPriority(_ priority: PriorityClass, project: ProjectID, principal: Principal) throws(ControlPlaneError) {
        // Replicas run at `service` by default; above that is the project's ceiling, as for jobs.
        let ceiling = projects[project].flatMap { PriorityClass.named($0.maxPriority) } ?? .normal
        if priority > Swift.max(ceiling, .service) && !principal.clusterAdmin {
            throw .forbidden("this project's services may run at priority service at most; a cluster admin raises the project's --max-priority")
        }
    }

    func serviceView(_ name: String) throws(ControlPlaneError) -> ServiceView {
        guard let record = services.records[name] else { throw .notFound("service \(name) not found") }
        let inFlight = replicaInFlight(name)
        let replicas = record.replicas.map { replica -> ReplicaView in
            let allocation = state.jobs[replica.job]?.liveAllocations.values.first
            let endpoint = allocation.flatMap { services.endpoints[$0] }
            return ReplicaView(job: replica.job, revision: replica.revision, state: replicaState(replica), allocation: allocation,
                               node: allocation.flatMap { state.allocations[$0] }.flatMap { nodeRecords[$0.node]?.name },
                               endpoint: endpoint.map { "\($0.host):\($0.port)" }, inFlight: allocation.flatMap { inFlight[$0] } ?? 0)
        }
        return ServiceView(record: record, projectName: projects[record.project]?.name ?? "\(record.project)", replicas: replicas)
    }

    func replicaState(_ replica: ReplicaRecord) -> ReplicaState {
        if replica.drainingSince != nil { return .draining }
        guard let job = state.jobs[replica.job], let allocation = job.liveAllocations.values.first else { return .pending }
        return services.endpoints[allocation]?.ready == true ? .ready : .starting
    }

    /// Requests in flight per allocation, summed over the gateways that reported lately.
    func replicaInFlight(_ name: String, now: Timestamp? = nil) -> [AllocationID: Int] {
        var total: [AllocationID: Int] = [:]
        for load in freshLoads(name, now: now ?? clock.now()) { total.merge(load.inFlight, uniquingKeysWith: +) }
        return total
    }

    /// The gateways' last reports on a service, those not older than `gatewayReportTTL`.
    func freshLoads(_ name: String, now: Timestamp) -> [GatewayLoad] {
        (services.loads[name] ?? [:]).values.filter { now.milliseconds(since: $0.at) <= Self.gatewayReportTTL.wholeMilliseconds }
    }

    static let gatewayReportTTL: Duration = .seconds(5)
    /// A draining replica stops no earlier than this after it left the routes: every gateway has
    /// seen the change (they long-poll) and sends it nothing new.
    static let drainSettle: Duration = .seconds(1)

    // MARK: - Agents

    /// An agent's word on a replica's readiness (and its port).
    public func replicaReadiness(node id: NodeID, allocation allocationID: AllocationID, epoch: Epoch, ready: Bool, host: String, port: Int,
                                 by principal: Principal) async throws {
        try checkWritable()
        try requireNode(id, principal)
        guard let allocation = state.allocations[allocationID] else { throw ControlPlaneError.conflict("\(allocationID) is no longer live") }
        guard allocation.node == id else { throw ControlPlaneError.notFound("\(allocationID) not found on \(id)") }
        guard allocation.epoch == epoch else { throw ControlPlaneError.conflict("stale epoch \(epoch.rawValue): \(allocationID) is at epoch \(allocation.epoch.rawValue)") }
        guard let replica = state.launches[allocation.task.job]?.replica else { throw ControlPlaneError.invalid("\(allocationID) is not a service's replica") }
        guard (1...65535).contains(port) else { throw ControlPlaneError.invalid("port must be 1 to 65535") }
        if let why = InputText.problem(host, field: "host", maxBytes: 253) { throw ControlPlaneError.invalid(why) }
        let now = clock.now()
        let before = services.endpoints[allocationID]
        var endpoint = ReplicaEndpoint(host: host, port: port, ready: ready, readySince: before?.readySince)
        guard before != endpoint || (ready && before?.readySince == nil) else { return }
        if ready && endpoint.readySince == nil {
            endpoint.readySince = now
            if var record = services.records[replica.service] {
                let startup = now.milliseconds(since: allocation.startTime)
                record.append(.replicaReady(job: allocation.task.job, allocation: allocationID, startupMilliseconds: startup), at: now)
                record.failures = 0
                record.restartNotBefore = nil
                services.records[replica.service] = record
                pending.direct.append(.saveService(record))
            }
        } else if !ready && before?.ready == true, var record = services.records[replica.service] {
            record.append(.replicaUnready(job: allocation.task.job, allocation: allocationID), at: now)
            services.records[replica.service] = record
            pending.direct.append(.saveService(record))
        }
        services.endpoints[allocationID] = endpoint
        routesChanged()
        reconcile(replica.service, now: now)
        try await awaitDurable()
    }

    // MARK: - Gateways

    /// Every service's ready replicas, and the version to long-poll after.
    public func routes() -> (version: UInt64, routes: [ServiceRoute]) {
        // A deleted service leaves the routes at once: its callers get 404, not a wait.
        let routes = services.records.values.filter { !$0.deleting }.sorted { $0.name < $1.name }.map { record -> ServiceRoute in
            let replicas = record.replicas.compactMap { replica -> ServiceRoute.Replica? in
                guard replica.drainingSince == nil, !record.deleting, let job = state.jobs[replica.job],
                      let allocation = job.liveAllocations.values.first, let endpoint = services.endpoints[allocation], endpoint.ready else { return nil }
                return ServiceRoute.Replica(allocation: allocation, host: endpoint.host, port: endpoint.port)
            }
            return ServiceRoute(name: record.name, project: record.project, isPublic: record.spec.isPublic,
                                concurrencyLimit: record.spec.concurrencyLimit, requestTimeout: record.spec.requestTimeout, replicas: replicas)
        }
        return (watchers.version(of: .routes), routes)
    }

    /// Waits until the routes pass `version` or `timeout` passes.
    public func waitForRoutes(after version: UInt64, timeout: Duration) async {
        await wait(for: .routes, after: version, timeout: timeout)
    }

    func routesChanged() { watchers.changed(.routes) }

    /// A gateway's load; a held request at zero replicas wakes its service at once.
    public func gatewayReport(_ report: GatewayReport) async throws {
        let now = clock.now()
        for entry in report.services {
            guard services.records[entry.name] != nil else { continue }
            services.loads[entry.name, default: [:]][report.gateway] = GatewayLoad(at: now, inFlight: entry.inFlight, held: entry.held)
            services.arrivals[entry.name, default: 0] += entry.arrivals
            if entry.held > 0 && (services.records[entry.name]?.desiredReplicas ?? 0) == 0 {
                reconcile(entry.name, now: now)
            }
        }
        try await awaitDurable()
    }

    /// A gateway of its own reads the routes over the API: cluster admins only (the routes name
    /// every project's replicas).
    public func gatewayRoutes(after version: UInt64, wait: Duration, by principal: Principal) async throws -> (version: UInt64, routes: [ServiceRoute]) {
        try requireUser(principal)
        try requireClusterAdmin(principal)
        await waitForRoutes(after: version, timeout: wait)
        return routes()
    }

    public func gatewayReport(_ report: GatewayReport, by principal: Principal) async throws {
        try requireUser(principal)
        try requireClusterAdmin(principal)
        guard report.services.count <= 10_000, report.services.allSatisfy({ $0.inFlight.count <= 10_000 && $0.held >= 0 && $0.arrivals >= 0 }) else {
            throw ControlPlaneError.invalid("a load report holds at most 10000 services of 10000 replicas, with counts of 0 or more")
        }
        try await gatewayReport(report)
    }

    /// Whether the bearer of `token` may call a service of `project` (the gateway's question).
    public func authorizeCall(token: String, project: ProjectID, by principal: Principal) throws -> String {
        try requireUser(principal)
        try requireClusterAdmin(principal)
        guard case .success(let caller) = tokens.authenticate(token, now: clock.now()) else { return "unauthenticated" }
        return reads.role(of: caller, inProject: project) != nil ? "allowed" : "notVisible"
    }

    // MARK: - Reconciling

    /// One tick for every service: sample load, decide, roll out, stop drained replicas.
    public func reconcileServices() async throws {
        guard storeFailure == nil, !services.records.isEmpty else { return }
        let now = clock.now()
        for name in services.records.keys.sorted() { reconcile(name, now: now, sample: true) }
        try await awaitDurable()
    }

    /// Brings one service's replicas toward what its autoscaler and rollout ask for. Writes go
    /// into the next transaction; the caller awaits it.
    func reconcile(_ name: String, now: Timestamp, sample: Bool = false) {
        guard var record = services.records[name] else { return }
        let before = record
        var routes = false

        // Replicas whose job ended on its own: restarted, with backoff when they never served.
        let ended = record.replicas.filter { state.jobs[$0.job]?.state.isFinished ?? true }
        for replica in ended {
            record.append(.replicaExited(job: replica.job, state: state.jobs[replica.job]?.state ?? .cancelled), at: now)
            if replica.drainingSince == nil && replica.revision == record.revision {
                record.failures += 1
                let delay = Swift.min(Int64(1000) << Int64(Swift.min(record.failures - 1, 6)), 60_000)
                record.restartNotBefore = now + .milliseconds(delay)
                record.append(.restartBackoff(failures: record.failures, delayMilliseconds: delay), at: now)
            }
            routes = true
        }
        let endedJobs = Set(ended.map(\.job))
        record.replicas.removeAll { endedJobs.contains($0.job) }

        // The autoscaler: one sample per tick, a decision whenever asked.
        let held = freshLoads(name, now: now).reduce(0) { $0 + $1.held }
        let inFlightByAllocation = replicaInFlight(name, now: now)
        let inFlight = inFlightByAllocation.values.reduce(0, +) + held
        var scaler = services.autoscalers[name] ?? ServiceAutoscaler()
        if sample || (held > 0 && record.desiredReplicas == 0) {
            scaler.record(LoadSample(at: now, inFlight: inFlight, arrivals: services.arrivals[name] ?? 0), spec: record.spec.autoscaling)
            services.arrivals[name] = 0
        }
        let statuses = record.replicas.map { replica -> ReplicaStatus in
            let allocation = state.jobs[replica.job]?.liveAllocations.values.first
            let count = allocation.flatMap { inFlightByAllocation[$0] } ?? 0
            return ReplicaStatus(job: replica.job, revision: replica.revision, state: replicaState(replica), inFlight: count)
        }
        let ready = statuses.count { $0.revision == record.revision && $0.state == .ready }
        if record.deleting {
            record.desiredReplicas = 0
        } else {
            let decision = scaler.decide(now: now, current: record.desiredReplicas, ready: ready, range: record.spec.replicas, spec: record.spec.autoscaling)
            if decision.desired != record.desiredReplicas {
                record.append(.scaled(from: record.desiredReplicas, to: decision.desired, reason: decision.reason.rawValue, stableMilli: decision.stableMilli,
                                      panicMilli: decision.panicMilli, panicking: decision.panicking), at: now)
                record.desiredReplicas = decision.desired
            }
        }
        services.autoscalers[name] = scaler

        let actions = ServiceRollout.actions(desired: record.desiredReplicas, revision: record.revision, replicas: statuses)
        for job in actions.stop {
            stopReplica(job, in: &record, now: now)
            routes = true
        }
        for job in actions.drain {
            guard let index = record.replicas.firstIndex(where: { $0.job == job }) else { continue }
            record.replicas[index].drainingSince = now
            record.append(.replicaDraining(job: job, inFlight: statuses.first { $0.job == job }?.inFlight ?? 0), at: now)
            routes = true
        }
        if actions.start > 0 && (record.restartNotBefore.map { now >= $0 } ?? true) {
            for _ in 0..<actions.start {
                guard let job = try? startReplica(of: record, now: now) else { break }
                record.replicas.append(ReplicaRecord(job: job, revision: record.revision))
                record.append(.replicaStarted(job: job, revision: record.revision), at: now)
            }
        }
        // Draining replicas stop once the gateways have no request at them (or the longest
        // request could no longer be running).
        for replica in record.replicas where replica.drainingSince != nil {
            let since = replica.drainingSince ?? now
            let busy = statuses.first { $0.job == replica.job }?.inFlight ?? 0
            let waited = now.milliseconds(since: since)
            if (busy == 0 && waited >= Self.drainSettle.wholeMilliseconds) || waited > record.spec.requestTimeout.wholeMilliseconds + 1000 {
                stopReplica(replica.job, in: &record, now: now)
            }
        }
        if record.deleting && record.replicas.isEmpty {
            services.records[name] = nil
            services.autoscalers[name] = nil
            services.loads[name] = nil
            pending.direct.append(.removeService(name: name))
            routesChanged()
            return
        }
        if record != before {
            services.records[name] = record
            pending.direct.append(.saveService(record))
        }
        if routes || record.replicas.map(\.drainingSince) != before.replicas.map(\.drainingSince) { routesChanged() }
    }

    func stopReplica(_ job: JobID, in record: inout ServiceRecord, now: Timestamp) {
        record.replicas.removeAll { $0.job == job }
        if let current = state.jobs[job], !current.state.isFinished {
            try? apply(.cancel(job, at: now), now: now, by: "service \(record.name)")
            wake()
        }
        record.append(.replicaStopped(job: job), at: now)
    }

    /// Submits one replica: a one-task job at the service's priority, tagged with the replica
    /// launch so the agent gives it a port and probes it. A node lost moves it (it is retried);
    /// an exit ends it and the reconciler starts another.
    func startReplica(of record: ServiceRecord, now: Timestamp) throws -> JobID {
        let spec = record.spec
        let id = JobID(nextJobID)
        var environment = spec.environment
        environment["FASTGPU_SERVICE"] = record.name
        environment["FASTGPU_REVISION"] = String(record.revision)
        var launch = JobLaunch(command: spec.command, environment: environment, maxAttempts: 1000, image: spec.image,
                               network: spec.image == nil ? nil : .isolated,
                               replica: ReplicaLaunch(service: record.name, revision: record.revision, port: spec.port, readiness: spec.readiness))
        launch.inputs = spec.inputs ?? []
        let job = Job(id: id, name: "\(record.name)-r\(record.revision)", project: record.project, submitter: record.createdBy, priority: spec.priority,
                      taskGroups: [TaskGroup(name: "replica", count: 1, resources: spec.resources)], submitTime: now)
        if let why = ClusterState.validate(job) { throw ControlPlaneError.invalid(why) }
        try apply(.submit(job, launch: launch), now: now, by: "service \(record.name)")
        nextJobID += 1
        pending.submitted[id] = .some(nil)
        wake()
        return id
    }

    func restoreServices(_ stored: [ServiceRecord]) {
        for record in stored {
            services.records[record.name] = record
            services.autoscalers[record.name] = ServiceAutoscaler()
        }
    }
}
