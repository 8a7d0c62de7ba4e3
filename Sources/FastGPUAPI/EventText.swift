public import FastGPUModel

/// Events become sentences here, at the edge, and nowhere else: the control plane and the
/// store keep them typed (`ClusterEvent`).
public enum EventText {
    /// The event in words; `time` is when it happened (a retry's delay is told from it), and
    /// nodes and projects are called by their names where `names` knows them.
    public static func message(_ event: ClusterEvent, at time: Timestamp, names: EventNames = EventNames()) -> String {
        let node = { (id: NodeID) in names.nodes[id] ?? id.description }
        let project = { (id: ProjectID) in names.projects[id] ?? id.description }
        return switch event {
        case .submitted(_, let id): "submitted to \(project(id))"
        case .placed(let a):
            "task \(a.task.group)/\(a.task.index) placed on \(node(a.node)) with \(a.devices.isEmpty ? "no GPU" : a.devices.map(\.description).joined(separator: ", ")) as \(a.id)"
        case .pulling(let id, _, _, let image): "\(id) pulling image \(image)"
        case .started(let id, _, _): "\(id) started"
        case .ended(let a, let outcome, let cause): "\(a.id) " + ended(outcome, cause)
        case .requeued(_, let notBefore): "requeued; retried in \(max(0, notBefore.milliseconds(since: time)) / 1000) s"
        case .cancelled: "cancelled"
        case .uploading: "processes done, GPUs released; uploading outputs"
        case .outputsUploaded(_, let id, let succeeded, let error):
            succeeded ? "outputs of \(id) uploaded" : "outputs of \(id) could not be uploaded (output_upload_failed): \(error ?? "no reason given")"
        case .nodeRegistered(_, let name, let gpus, let again): again ? "\(name) registered again" : "\(name) registered with \(gpus) GPUs"
        case .nodeStateChanged(let id, let from, let to):
            from == .down ? "\(node(id)) is back (\(to.rawValue))" : to == .down ? "\(node(id)) is down; its allocations are lost" : "\(node(id)) is \(to.rawValue)"
        case .nodeReplaced(let id): "\(node(id))'s credential revoked; it awaits a new registration"
        case .gpuHealthChanged(let id, let gpu, let health): "gpu\(gpu) of \(node(id)) is \(health == .healthy ? "healthy" : "unhealthy")"
        case .gpuIdle(let allocation, _, let id, let gpu, let seconds):
            "\(allocation) holds gpu\(gpu) of \(node(id)) at 0 % utilisation for \(seconds / 60) min \(seconds % 60) s: release it if it is not needed"
        case .projectChanged(let id, let weight, let maxPriority): "\(project(id)): weight \(weight), max priority \(maxPriority)"
        case .secretChanged(let id, let name, let removed): "secret \(name) of \(project(id)) \(removed ? "removed" : "set")"
        case .budgetThreshold(let id, let spent, let limit, let exhausted):
            "\(project(id)) spent \(Money.text(spent)) of its \(Money.text(limit)) budget this month\(exhausted ? ": new work is refused" : "")"
        case .invoiceIssued(let id, let month, let total): "invoice \(month) of \(project(id)) issued: \(Money.text(total)) to pay"
        case .recorded(_, let message): message
        }
    }

    static func ended(_ outcome: AllocationOutcome, _ cause: EndCause) -> String {
        switch (outcome, cause) {
        case (.succeeded, _): "exited with code 0"
        case (.failed(let code), .exited): "exited with code \(code)"
        case (.failed, .outOfAttempts): "lost, out of attempts: the job failed"
        case (.failed, .partnerEnded(let partner)): "stopped: \(partner) of its job failed"
        case (.failed, _): "failed"
        case (.lost, _): "lost: \(why(cause))"
        case (.preempted, _): "preempted: \(why(cause))"
        case (.cancelled, _): "stopped: \(why(cause))"
        }
    }

    static func why(_ cause: EndCause) -> String {
        switch cause {
        case .exited: "its process exited"
        case .agentLostIt: "its agent no longer runs it"
        case .nodeDown: "its node went down"
        case .outOfAttempts: "no attempt left"
        case .preempted(let beneficiary): "made room for \(beneficiary)"
        case .cancelled: "its job was cancelled"
        case .partnerEnded(let partner): "\(partner) of its gang ended"
        }
    }
}

/// The names events are told with.
public struct EventNames: Sendable {
    public var nodes: [NodeID: String]
    public var projects: [ProjectID: String]

    public init(nodes: [NodeID: String] = [:], projects: [ProjectID: String] = [:]) {
        self.nodes = nodes
        self.projects = projects
    }
}
