public import FastGPUModel

/// One replica as the rollout sees it.
public struct ReplicaStatus: Hashable, Sendable {
    public var job: JobID
    public var revision: Int
    public var state: ReplicaState
    /// Requests the gateways have in flight at it.
    public var inFlight: Int
    public init(job: JobID, revision: Int, state: ReplicaState, inFlight: Int) {
        self.job = job
        self.revision = revision
        self.state = state
        self.inFlight = inFlight
    }
}

/// What to do to a service's replicas now.
public struct RolloutActions: Hashable, Sendable {
    /// New replicas of the current revision to start.
    public var start = 0
    /// Ready replicas to drain: the gateway stops sending them requests; they stop when idle.
    public var drain: [JobID] = []
    /// Replicas that serve nothing yet (pending, starting): stopped at once.
    public var stop: [JobID] = []
    public init() {}
}

/// Brings a service to `desired` replicas of its current revision: a new revision rolls out with
/// a surge of one and never fewer ready replicas than asked for (the old one drains only once a
/// new one is ready); a lower count drains the idle ready replicas with the fewest requests first.
///
/// Pure and stateless: the control plane calls it with the replicas as they are every tick.
public enum ServiceRollout {
    public static func actions(desired: Int, revision: Int, replicas: [ReplicaStatus]) -> RolloutActions {
        var actions = RolloutActions()
        let active = replicas.filter { $0.state != .draining }
        let current = active.filter { $0.revision == revision }
        let old = active.filter { $0.revision != revision }
        let readyCurrent = current.count { $0.state == .ready }
        let readyOld = old.count { $0.state == .ready }

        // Old replicas that serve nothing go at once; ready ones only while enough others serve.
        actions.stop += old.filter { $0.state != .ready }.map(\.job)
        var oldReadyLeft = readyOld
        let oldReady = old.filter { $0.state == .ready }.sorted { ($0.inFlight, $0.job) < ($1.inFlight, $1.job) }
        for replica in oldReady where readyCurrent + oldReadyLeft > desired || desired == 0 {
            actions.drain.append(replica.job)
            oldReadyLeft -= 1
        }
        // Surge one: at most desired + 1 active replicas while old ones remain.
        let oldActive = oldReadyLeft
        let room = oldActive > 0 ? Swift.max(0, desired + 1 - oldActive - current.count) : desired - current.count
        if current.count < desired { actions.start = Swift.min(desired - current.count, room) }

        if current.count > desired {
            // Not-yet-ready ones first (they serve nothing), newest first; then the idlest ready ones.
            var excess = current.count - desired
            for replica in current.filter({ $0.state != .ready }).sorted(by: { $0.job > $1.job }) where excess > 0 {
                actions.stop.append(replica.job)
                excess -= 1
            }
            for replica in current.filter({ $0.state == .ready }).sorted(by: { ($0.inFlight, $0.job) < ($1.inFlight, $1.job) }) where excess > 0 {
                actions.drain.append(replica.job)
                excess -= 1
            }
        }
        return actions
    }
}
