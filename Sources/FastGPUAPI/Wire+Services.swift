import FastGPUControlPlane
import FastGPUModel
import FastGPUWire
import Foundation

extension ServiceSpecBody {
    /// The spec with every default filled in; a problem names its field (`replicas.min`).
    func spec() throws -> ServiceSpec {
        func seconds(_ value: Double?, _ field: String, default fallback: Duration) throws -> Duration {
            guard let value else { return fallback }
            guard value.isFinite, value >= 0, value <= 7 * 86400 else {
                throw APIProblem(status: .unprocessableContent, title: "Unprocessable request", detail: "\(field) must be 0 to 604800 seconds", field: field)
            }
            return .milliseconds(Int64((value * 1000).rounded()))
        }
        // The command, environment and image pass the same checks as a job's.
        let asJob = JobSubmissionBody(project: project ?? "default", command: command, env: env, image: image)
        do {
            guard !command.isEmpty, !command[0].isEmpty else { throw WireError(description: "command needs at least a program") }
            try asJob.checkLaunchSize()
            _ = try asJob.checkedImage()
        } catch let error as WireError {
            let field = error.description.hasPrefix("image") ? "image" : (error.description.contains("env") ? "env" : "command")
            throw APIProblem(status: .unprocessableContent, title: "Unprocessable request", detail: error.description, field: field)
        }
        let resources: TaskResources
        do { resources = try (self.resources ?? ResourcesBody(gpus: 1)).taskResources() } catch let error as WireError {
            throw APIProblem(status: .unprocessableContent, title: "Unprocessable request", detail: "resources: \(error.description)", field: "resources")
        }
        let defaults = ServiceSpec(command: command, resources: resources)
        var readiness = defaults.readiness
        if let body = self.readiness {
            readiness.path = body.path ?? readiness.path
            readiness.interval = try seconds(body.intervalSeconds, "readiness.intervalSeconds", default: readiness.interval)
            readiness.timeout = try seconds(body.timeoutSeconds, "readiness.timeoutSeconds", default: readiness.timeout)
            readiness.failureThreshold = body.failureThreshold ?? readiness.failureThreshold
            readiness.startupTimeout = try seconds(body.startupTimeoutSeconds, "readiness.startupTimeoutSeconds", default: readiness.startupTimeout)
        }
        var autoscaling = defaults.autoscaling
        if let body = self.autoscaling {
            if let metric = body.metric {
                guard let parsed = ScalingMetric(rawValue: metric) else {
                    throw APIProblem(status: .unprocessableContent, title: "Unprocessable request",
                                     detail: "autoscaling.metric must be concurrency or rps, not '\(metric.prefix(32))'", field: "autoscaling.metric")
                }
                autoscaling.metric = parsed
            }
            autoscaling.target = body.target ?? autoscaling.target
            autoscaling.stableWindow = try seconds(body.stableWindowSeconds, "autoscaling.stableWindowSeconds", default: autoscaling.stableWindow)
            autoscaling.panicWindow = try seconds(body.panicWindowSeconds, "autoscaling.panicWindowSeconds", default: autoscaling.panicWindow)
            autoscaling.scaleDownDelay = try seconds(body.scaleDownDelaySeconds, "autoscaling.scaleDownDelaySeconds", default: autoscaling.scaleDownDelay)
            autoscaling.scaleToZeroAfter = try seconds(body.scaleToZeroAfterSeconds, "autoscaling.scaleToZeroAfterSeconds", default: autoscaling.scaleToZeroAfter)
        }
        let priority: PriorityClass
        switch self.priority ?? "service" {
        case "low": priority = .low
        case "normal": priority = .normal
        case "service": priority = .service
        case "high": priority = .high
        case let other:
            throw APIProblem(status: .unprocessableContent, title: "Unprocessable request",
                             detail: "priority must be low, normal, service or high, not '\(other.prefix(32))'", field: "priority")
        }
        let min = replicas?.min ?? 1
        let spec = ServiceSpec(command: command, image: image, environment: env ?? [:], resources: resources, port: port,
                               replicas: ReplicaRange(min: min, max: replicas?.max ?? Swift.max(min, 1)), readiness: readiness, autoscaling: autoscaling,
                               priority: priority, isPublic: self.public ?? false, concurrencyLimit: concurrencyLimit ?? 0,
                               requestTimeout: try seconds(requestTimeoutSeconds, "requestTimeoutSeconds", default: defaults.requestTimeout),
                               // Resolved by the control plane under the project's prefix: only the URI is known here.
                               inputs: try inputs.map { list in
                                   guard list.count <= 16 else {
                                       throw APIProblem(status: .unprocessableContent, title: "Unprocessable request", detail: "a service has at most 16 inputs", field: "inputs")
                                   }
                                   return list.map { InputSource(path: $0.path, backend: "", key: "", uri: $0.from) }
                               })
        if let problem = spec.problems.first {
            throw APIProblem(status: .unprocessableContent, title: "Unprocessable request", detail: problem.description, field: problem.field)
        }
        return spec
    }
}

extension Wire {
    static func seconds(_ duration: Duration) -> Double { Double(duration.wholeMilliseconds) / 1000 }

    static func serviceSpec(_ record: ServiceRecord, projectName: String) -> ServiceSpecBody {
        let spec = record.spec
        var resources: ResourcesBody
        switch spec.resources.gpu {
        case .none: resources = ResourcesBody()
        case .whole(let count): resources = ResourcesBody(gpus: count)
        case .share(let milli, let memory): resources = ResourcesBody(gpuMemoryMiB: memory, gpuMilli: milli)
        case .mig(let profile): resources = ResourcesBody(mig: profile)
        }
        resources.gpuModel = spec.resources.gpuModel
        resources.cpuMillis = spec.resources.cpuMillis
        resources.memoryMiB = spec.resources.memoryMiB
        resources.nodeSelector = spec.resources.nodeSelector.isEmpty ? nil : spec.resources.nodeSelector
        let r = spec.readiness, a = spec.autoscaling
        return ServiceSpecBody(
            name: record.name, project: projectName, command: spec.command, image: spec.image, env: spec.environment, resources: resources, port: spec.port,
            replicas: ReplicaRangeBody(min: spec.replicas.min, max: spec.replicas.max),
            readiness: ReadinessBody(path: r.path, intervalSeconds: seconds(r.interval), timeoutSeconds: seconds(r.timeout), failureThreshold: r.failureThreshold,
                                     startupTimeoutSeconds: seconds(r.startupTimeout)),
            autoscaling: AutoscalingBody(metric: a.metric.rawValue, target: a.target, stableWindowSeconds: seconds(a.stableWindow),
                                         panicWindowSeconds: seconds(a.panicWindow), scaleDownDelaySeconds: seconds(a.scaleDownDelay),
                                         scaleToZeroAfterSeconds: seconds(a.scaleToZeroAfter)),
            priority: spec.priority.name, public: spec.isPublic, concurrencyLimit: spec.concurrencyLimit, requestTimeoutSeconds: seconds(spec.requestTimeout))
    }

    static func service(_ view: ServiceView, gateway: String? = nil) -> ServiceWire {
        let record = view.record
        return ServiceWire(
            name: record.name, project: view.projectName, revision: record.revision, desiredReplicas: record.desiredReplicas,
            readyReplicas: view.replicas.count { $0.state == .ready && $0.revision == record.revision }, deleting: record.deleting,
            createdBy: record.createdBy, createdAt: time(record.createdAt), spec: serviceSpec(record, projectName: view.projectName),
            replicas: view.replicas.map { ReplicaWire(job: $0.job.rawValue, revision: $0.revision, state: $0.state.rawValue, allocation: $0.allocation?.rawValue,
                                                      node: $0.node, endpoint: $0.endpoint, inFlight: $0.inFlight) },
            path: "/\(record.name)/", url: gateway.map { "\($0)/\(record.name)/" })
    }

    static func serviceEvent(_ record: ServiceEventRecord) -> ServiceEventWire {
        let (kind, message): (String, String)
        switch record.event {
        case .created(let revision): (kind, message) = ("created", "created at revision \(revision)")
        case .revised(let revision): (kind, message) = ("revised", "revision \(revision) rolls out (surge 1)")
        case .scaled(let from, let to, let reason, let stable, let panic, let panicking):
            (kind, message) = ("scaled", "\(from) → \(to) replicas (\(reason)): stable-window load \(Double(stable) / 1000), panic-window load \(Double(panic) / 1000)\(panicking ? ", panicking" : "")")
        case .replicaStarted(let job, let revision): (kind, message) = ("replicaStarted", "replica \(job) of revision \(revision) submitted")
        case .replicaReady(let job, let allocation, let ms): (kind, message) = ("replicaReady", "replica \(job) (\(allocation)) ready \(Double(ms) / 1000) s after placement")
        case .replicaUnready(let job, let allocation): (kind, message) = ("replicaUnready", "replica \(job) (\(allocation)) fails its readiness probe")
        case .replicaExited(let job, let state): (kind, message) = ("replicaExited", "replica \(job) ended: \(state.rawValue)")
        case .replicaDraining(let job, let inFlight): (kind, message) = ("replicaDraining", "replica \(job) drains (\(inFlight) request(s) in flight)")
        case .replicaStopped(let job): (kind, message) = ("replicaStopped", "replica \(job) stopped")
        case .restartBackoff(let failures, let delay): (kind, message) = ("restartBackoff", "\(failures) replica(s) in a row ended without serving; next start in \(Double(delay) / 1000) s")
        case .deleted: (kind, message) = ("deleted", "deleted: replicas drain, then the service goes")
        }
        return ServiceEventWire(time: time(record.time), kind: kind, message: message)
    }
}
