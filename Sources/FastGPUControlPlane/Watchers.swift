/// Blocking queries on versioned keys (a node's assignments, a job's state and logs): a reader
/// reads a key's version, then waits for it to pass that version or for its timeout, whichever
/// comes first. Owned by the control plane's actor; nothing here is shared across isolation.
public import FastGPUModel
import Synchronization

struct Watchers<Key: Hashable & Sendable> {
    private var versions: [Key: UInt64] = [:]
    private var waiting: [Key: [UInt64: CheckedContinuation<Void, Never>]] = [:]
    private var nextID: UInt64 = 1
    /// Set at shutdown: every waiter is answered, and no new one waits.
    private(set) var closed = false

    func version(of key: Key) -> UInt64 { versions[key] ?? 0 }

    /// The key changed: its version moves to `version` (or one past the last) and its waiters answer.
    mutating func changed(_ key: Key, to version: UInt64? = nil) {
        versions[key] = version ?? (versions[key] ?? 0) + 1
        if let watchers = waiting.removeValue(forKey: key) { for watcher in watchers.values { watcher.resume() } }
    }

    /// Answers the key's waiters without moving its version: something they read besides the
    /// versioned state changed (a node's steps), and a reader that was not waiting finds it by
    /// other means.
    mutating func poke(_ key: Key) {
        if let watchers = waiting.removeValue(forKey: key) { for watcher in watchers.values { watcher.resume() } }
    }

    /// Whether a reader that saw `version` would wait.
    func wouldWait(_ key: Key, after version: UInt64) -> Bool { !closed && self.version(of: key) <= version }

    /// Parks a waiter; returns its id, for `expire`.
    mutating func add(_ key: Key, _ continuation: CheckedContinuation<Void, Never>) -> UInt64 {
        let id = nextID
        nextID += 1
        waiting[key, default: [:]][id] = continuation
        return id
    }

    /// A waiter's timeout passed: it answers with whatever there is.
    mutating func expire(_ key: Key, _ id: UInt64) {
        waiting[key]?.removeValue(forKey: id)?.resume()
        if waiting[key]?.isEmpty == true { waiting[key] = nil }
    }

    /// Answers every waiter now and lets no new one wait.
    mutating func close() {
        closed = true
        for watchers in waiting.values { for watcher in watchers.values { watcher.resume() } }
        waiting = [:]
    }
}

/// What a blocking query waits on: a node's assignments (versioned by the state index of
/// their last durable change) or a job's state and logs (versioned by a count of changes).
enum Watched: Hashable, Sendable {
    case node(NodeID)
    case job(JobID)
    /// Every service's ready replicas (what gateways route to).
    case routes
    /// A step's state and output.
    case step(UInt64)
}

extension ControlPlane {
    /// Waits until `key` passes `version` or `timeout` passes on the injected clock.
    func wait(for key: Watched, after version: UInt64, timeout: Duration) async {
        guard watchers.wouldWait(key, after: version), timeout > .zero else { return }
        // A cancelled waiter (a gateway stopping) answers at once instead of at its timeout.
        let parked = Mutex<UInt64?>(nil)
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let id = watchers.add(key, continuation)
                parked.withLock { $0 = id }
                if Task.isCancelled {
                    watchers.expire(key, id)
                    return
                }
                let clock = self.clock
                Task { [weak self] in
                    try? await clock.sleep(for: timeout)
                    await self?.expireWatcher(key, id)
                }
            }
        } onCancel: {
            if let id = parked.withLock({ $0 }) { Task { await self.expireWatcher(key, id) } }
        }
    }

    private func expireWatcher(_ key: Watched, _ id: UInt64) {
        watchers.expire(key, id)
    }

    /// Answers every blocking query now and lets no new one wait: the server is shutting down
    /// and must not hold its graceful stop for a long poll.
    public func releaseWaiters() {
        watchers.close()
    }
}
