public import FastGPUStore
public import Logging

/// The audit log: every mutating request and every refused credential, appended to the store.
///
/// Records are committed in batches: one arriving while a batch is on its way joins the next
/// (group commit, as the control plane's own writes). A record is written after its request was
/// answered, so a crash can lose the last batch of records — never a change: the change itself
/// was durable before its answer. Kubernetes' batching audit backend makes the same trade.
///
/// It never holds a secret: the API gives it who (a subject and a token id), the route and the
/// path, the address and the status — no body, no header, no token.
public actor AuditLog {
    let store: any ClusterStore
    let logger: Logger
    private var buffered: [AuditRecord] = []
    private var flushing = false
    private var idleWaiters: [CheckedContinuation<Void, Never>] = []
    /// The buffer's cap: past it, records are dropped (and counted) rather than the server's
    /// memory spent on a store that cannot keep up.
    let maxBuffered: Int
    public private(set) var dropped = 0

    public init(store: any ClusterStore, maxBuffered: Int = 100_000, logger: Logger = Logger(label: "fastgpu.audit")) {
        self.store = store
        self.maxBuffered = maxBuffered
        self.logger = logger
    }

    /// Appends a record; it reaches the store with the next batch.
    public func record(_ record: AuditRecord) {
        guard buffered.count < maxBuffered else {
            dropped += 1
            if dropped == 1 || dropped % 10_000 == 0 { logger.error("audit buffer full; records dropped", metadata: ["dropped": "\(dropped)"]) }
            return
        }
        buffered.append(record)
        if !flushing {
            flushing = true
            Task { await self.flush() }
        }
    }

    private func flush() async {
        while !buffered.isEmpty {
            let batch = buffered
            buffered = []
            do {
                try await store.commit(StoreBatch(batch.map { .appendAudit($0) }))
            } catch {
                dropped += batch.count
                logger.error("audit records could not be stored", metadata: ["error": "\(error)", "records": "\(batch.count)"])
            }
        }
        flushing = false
        for waiter in idleWaiters { waiter.resume() }
        idleWaiters = []
    }

    /// Returns once every record appended so far is in the store (or was dropped): for readers
    /// that must see their own actions, and for tests.
    public func drain() async {
        guard flushing || !buffered.isEmpty else { return }
        await withCheckedContinuation { idleWaiters.append($0) }
    }

    /// Records after `sequence`, oldest first, for a cluster admin.
    public func records(after sequence: Int64, limit: Int, subject: String?, by principal: Principal) async throws -> [AuditRecord] {
        guard principal.kind == .user, principal.clusterAdmin else { throw ControlPlaneError.forbidden("only a cluster admin may read the audit log") }
        await drain()
        return try await store.audit(after: sequence, limit: max(1, min(limit, 1000)), subject: subject)
    }
}
