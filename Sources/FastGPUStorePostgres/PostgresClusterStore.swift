public import FastGPUModel
public import FastGPUStore
import Foundation
public import Logging
public import PostgresNIO
import Synchronization

/// The store for several control planes: PostgreSQL through PostgresNIO. Each record is a row
/// whose keys and query columns are columns of their own and whose body is the record's JSON
/// (`doc`), as the SQLite store keeps services and events; the ledger has a column per field
/// (money is summed in SQL). A batch is one transaction; `commit` returns after COMMIT, so what
/// it acknowledged survives the server's crash (`synchronous_commit` on, the default).
public final class PostgresClusterStore: ClusterStore {
    let client: PostgresClient
    let logger: Logger
    private let runner: Task<Void, Never>
    /// Set on a leader (`fence(holder:epoch:)`): every commit checks it.
    let fencing = Mutex<Fence?>(nil)

    /// Connects (the pool runs until `shutdown`), checks the credentials with one query (a wrong
    /// password is said at once, not after PostgresNIO's minute of retries) and applies the
    /// migrations the database lacks.
    public init(configuration: PostgresClient.Configuration, logger: Logger = Logger(label: "fastgpu.store.postgres")) async throws {
        let client = PostgresClient(configuration: configuration, backgroundLogger: logger)
        self.client = client
        self.logger = logger
        runner = Task { await client.run() }
        do {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { _ = try await client.query("SELECT 1", logger: logger) }
                group.addTask {
                    try await Task.sleep(for: .seconds(10))
                    throw StoreError("no answer from PostgreSQL at \(configuration.host ?? "?") within 10 s")
                }
                try await group.next()
                group.cancelAll()
            }
            try await migrate()
        } catch {
            runner.cancel()
            throw StoreError("cannot use PostgreSQL at \(configuration.host ?? "?"): \(String(reflecting: error).prefix(300))")
        }
    }

    public func shutdown() { runner.cancel() }

    deinit { runner.cancel() }

    // MARK: Schema

    /// Frozen once released: a later change is a new entry, never an edit.
    static let migrations: [(id: String, sql: [String])] = [
        ("v1: the control plane's tables", [
            "CREATE TABLE meta (id integer PRIMARY KEY, doc text NOT NULL)",
            "CREATE TABLE project (id bigint PRIMARY KEY, name text NOT NULL UNIQUE, doc text NOT NULL)",
            "CREATE TABLE member (project_id bigint NOT NULL REFERENCES project(id) ON DELETE CASCADE, subject text NOT NULL, doc text NOT NULL, PRIMARY KEY (project_id, subject))",
            "CREATE TABLE token (id bigint PRIMARY KEY, secret_hash text NOT NULL UNIQUE, doc text NOT NULL)",
            "CREATE TABLE node (id bigint PRIMARY KEY, name text NOT NULL UNIQUE, doc text NOT NULL)",
            "CREATE TABLE gpu (node_id bigint NOT NULL REFERENCES node(id) ON DELETE CASCADE, idx integer NOT NULL, doc text NOT NULL, PRIMARY KEY (node_id, idx))",
            "CREATE TABLE job (id bigint PRIMARY KEY, project_id bigint NOT NULL REFERENCES project(id), doc text NOT NULL)",
            "CREATE INDEX job_by_project ON job (project_id, id)",
            "CREATE TABLE allocation (id bigint PRIMARY KEY, job_id bigint NOT NULL REFERENCES job(id), live boolean NOT NULL, doc text NOT NULL)",
            "CREATE INDEX allocation_by_job ON allocation (job_id, id)",
            "CREATE INDEX allocation_live ON allocation (live) WHERE live",
            "CREATE TABLE event (sequence bigserial PRIMARY KEY, time bigint NOT NULL, kind text NOT NULL, job_id bigint, node_id bigint, allocation_id bigint, actor text, payload text NOT NULL)",
            "CREATE INDEX event_by_job ON event (job_id, sequence)",
            "CREATE TABLE idempotency_key (subject text NOT NULL, key text NOT NULL, created_at bigint NOT NULL, doc text NOT NULL, PRIMARY KEY (subject, key))",
            "CREATE TABLE log_chunk (allocation_id bigint NOT NULL, sequence bigint NOT NULL, job_id bigint NOT NULL, position bigint NOT NULL, doc text NOT NULL, PRIMARY KEY (allocation_id, sequence))",
            "CREATE INDEX log_by_position ON log_chunk (job_id, position)",
            "CREATE INDEX log_position ON log_chunk (position)",
            "CREATE TABLE audit (sequence bigserial PRIMARY KEY, subject text NOT NULL, doc text NOT NULL)",
            "CREATE INDEX audit_by_subject ON audit (subject, sequence)",
            "CREATE TABLE secret (project_id bigint NOT NULL REFERENCES project(id) ON DELETE CASCADE, name text NOT NULL, doc text NOT NULL, PRIMARY KEY (project_id, name))",
            "CREATE TABLE service (name text PRIMARY KEY, project_id bigint NOT NULL REFERENCES project(id) ON DELETE CASCADE, doc text NOT NULL)",
            "CREATE TABLE storage_backend (name text PRIMARY KEY, doc text NOT NULL)",
            "CREATE TABLE price_version (version integer PRIMARY KEY, effective_at bigint NOT NULL, prices text NOT NULL, spot_percent integer NOT NULL, created_at bigint NOT NULL, created_by text NOT NULL)",
            """
            CREATE TABLE charge (sequence bigserial PRIMARY KEY, source_id text NOT NULL UNIQUE, project_id bigint NOT NULL, job_id bigint NOT NULL,
                allocation_id bigint NOT NULL, segment integer NOT NULL, sku text NOT NULL, tier text NOT NULL, price_version integer NOT NULL,
                unit_price_micros_per_hour bigint NOT NULL, quantity bigint NOT NULL, start bigint NOT NULL, "end" bigint NOT NULL, usage bigint NOT NULL,
                month text NOT NULL, reverses text)
            """,
            "CREATE INDEX charge_project_start ON charge (project_id, start)",
            "CREATE INDEX charge_job ON charge (job_id)",
            "CREATE INDEX charge_allocation ON charge (allocation_id, segment)",
            // No UPDATE or DELETE ever reaches the ledger, nor a final invoice: the database refuses them too.
            "CREATE FUNCTION fastgpu_refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION '%', TG_ARGV[0]; END $$",
            "CREATE TRIGGER charge_append_only BEFORE UPDATE OR DELETE ON charge FOR EACH ROW EXECUTE FUNCTION fastgpu_refuse('the ledger is append-only')",
            "CREATE TABLE budget (project_id bigint PRIMARY KEY REFERENCES project(id) ON DELETE CASCADE, doc text NOT NULL)",
            "CREATE TABLE package (project_id bigint PRIMARY KEY REFERENCES project(id) ON DELETE CASCADE, doc text NOT NULL)",
            """
            CREATE TABLE credit (id bigint PRIMARY KEY, project_id bigint NOT NULL REFERENCES project(id) ON DELETE CASCADE, kind text NOT NULL,
                amount_micros bigint NOT NULL, paid_micros bigint NOT NULL, granted_at bigint NOT NULL, expires_at bigint, granted_by text NOT NULL)
            """,
            "CREATE TABLE invoice (project_id bigint NOT NULL, month text NOT NULL, body text NOT NULL, issued_at bigint NOT NULL, PRIMARY KEY (project_id, month))",
            "CREATE TRIGGER invoice_final BEFORE UPDATE ON invoice FOR EACH ROW EXECUTE FUNCTION fastgpu_refuse('a final invoice never changes')",
        ]),
        ("v2: the leader lease; events carry the epoch of the leader that committed them", [
            """
            CREATE TABLE leader_lease (id integer PRIMARY KEY CHECK (id = 1), holder text NOT NULL, url text NOT NULL, epoch bigint NOT NULL,
                backend_pid integer NOT NULL, expires_at timestamptz NOT NULL, taken_at timestamptz)
            """,
            "INSERT INTO leader_lease (id, holder, url, epoch, backend_pid, expires_at) VALUES (1, '', '', 0, 0, '-infinity')",
            "ALTER TABLE event ADD COLUMN epoch bigint",
        ]),
    ]

    func migrate() async throws {
        try await client.withTransaction(logger: logger) { connection in
            // One migrator at a time across replicas: a transaction-scoped advisory lock, waited for
            // as long as another replica's migration takes (not the pool's lock timeout).
            try await connection.query("SET LOCAL lock_timeout = 0", logger: logger)
            try await connection.query("SELECT pg_advisory_xact_lock(4242001)", logger: logger)
            try await connection.query("CREATE TABLE IF NOT EXISTS schema_migration (id text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())", logger: logger)
            var applied: Set<String> = []
            for try await id in try await connection.query("SELECT id FROM schema_migration", logger: logger).decode(String.self) { applied.insert(id) }
            let known = Set(Self.migrations.map(\.id))
            if let unknown = applied.first(where: { !known.contains($0) }) {
                throw StoreError("the database comes from a newer FastGPU (its migration '\(unknown)' is unknown here)")
            }
            for migration in Self.migrations where !applied.contains(migration.id) {
                for statement in migration.sql { try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger) }
                try await connection.query("INSERT INTO schema_migration (id) VALUES (\(migration.id))", logger: logger)
            }
        }
    }

    // MARK: Reads

    static func json<T: Encodable>(_ value: T) throws -> String { String(decoding: try JSONEncoder().encode(value), as: UTF8.self) }
    static func value<T: Decodable>(_ type: T.Type, _ text: String) throws -> T { try JSONDecoder().decode(type, from: Data(text.utf8)) }

    func docs<T: Decodable>(_ type: T.Type, _ query: PostgresQuery, on connection: PostgresConnection) async throws -> [T] {
        var out: [T] = []
        for try await doc in try await connection.query(query, logger: logger).decode(String.self) { out.append(try Self.value(type, doc)) }
        return out
    }

    public func load() async throws -> StoredState {
        try await client.withTransaction(logger: logger) { c in
            try await c.query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY", logger: logger)
            var stored = StoredState(
                meta: try await docs(StoreMeta.self, "SELECT doc FROM meta WHERE id = 1", on: c).first,
                projects: try await docs(ProjectRecord.self, "SELECT doc FROM project ORDER BY id", on: c),
                members: try await docs(MemberRecord.self, "SELECT doc FROM member ORDER BY project_id, subject", on: c),
                tokens: try await docs(TokenRecord.self, "SELECT doc FROM token ORDER BY id", on: c),
                nodes: try await docs(NodeRecord.self, "SELECT doc FROM node ORDER BY id", on: c),
                gpus: try await docs(GPURecord.self, "SELECT doc FROM gpu ORDER BY node_id, idx", on: c),
                jobs: try await docs(JobRecord.self, "SELECT doc FROM job ORDER BY id", on: c),
                liveAllocations: try await docs(AllocationRecord.self, "SELECT doc FROM allocation WHERE live ORDER BY id", on: c),
                idempotencyKeys: try await docs(IdempotencyRecord.self, "SELECT doc FROM idempotency_key ORDER BY subject, key", on: c),
                secrets: try await docs(SecretRecord.self, "SELECT doc FROM secret ORDER BY project_id, name", on: c))
            stored.storageBackends = try await docs(StorageBackendRecord.self, "SELECT doc FROM storage_backend ORDER BY name", on: c)
            stored.services = try await docs(ServiceRecord.self, "SELECT doc FROM service ORDER BY name", on: c)
            stored.billing = try await loadBilling(c)
            return stored
        }
    }

    public func events(job: JobID, after sequence: Int64, limit: Int) async throws -> [EventRecord] {
        // Ids come from requests too: one no row can have is answered, not trapped on.
        guard Int64(exactly: job.rawValue) != nil else { return [] }
        let rows = try await client.query("""
            SELECT sequence, time, actor, payload FROM event WHERE job_id = \(Int64(job.rawValue)) AND sequence > \(sequence) ORDER BY sequence LIMIT \(limit)
            """, logger: logger)
        var out: [EventRecord] = []
        for try await (sequence, time, actor, payload) in rows.decode((Int64, Int64, String?, String).self) {
            out.append(EventRecord(sequence: sequence, time: Timestamp(millisecondsSinceEpoch: time), event: try Self.value(ClusterEvent.self, payload), actor: actor))
        }
        return out
    }

    public func logs(job: JobID, after position: Int64, limit: Int) async throws -> [StoredLogChunk] {
        guard Int64(exactly: job.rawValue) != nil else { return [] }
        let rows = try await client.query("""
            SELECT position, doc FROM log_chunk WHERE job_id = \(Int64(job.rawValue)) AND position > \(position) ORDER BY position LIMIT \(limit)
            """, logger: logger)
        var out: [StoredLogChunk] = []
        for try await (position, doc) in rows.decode((Int64, String).self) {
            out.append(StoredLogChunk(position: position, chunk: try Self.value(LogChunkRecord.self, doc)))
        }
        return out
    }

    public func allocations(job: JobID) async throws -> [AllocationRecord] {
        guard Int64(exactly: job.rawValue) != nil else { return [] }
        return try await client.withConnection { c in
            try await docs(AllocationRecord.self, "SELECT doc FROM allocation WHERE job_id = \(Int64(job.rawValue)) ORDER BY id", on: c)
        }
    }

    public func allocation(_ id: AllocationID) async throws -> AllocationRecord? {
        guard Int64(exactly: id.rawValue) != nil else { return nil }
        return try await client.withConnection { c in
            try await docs(AllocationRecord.self, "SELECT doc FROM allocation WHERE id = \(Int64(id.rawValue))", on: c).first
        }
    }

    public func audit(after sequence: Int64, limit: Int, subject: String?) async throws -> [AuditRecord] {
        let rows: PostgresRowSequence
        if let subject {
            rows = try await client.query("SELECT sequence, doc FROM audit WHERE sequence > \(sequence) AND subject = \(subject) ORDER BY sequence LIMIT \(limit)", logger: logger)
        } else {
            rows = try await client.query("SELECT sequence, doc FROM audit WHERE sequence > \(sequence) ORDER BY sequence LIMIT \(limit)", logger: logger)
        }
        var out: [AuditRecord] = []
        for try await (sequence, doc) in rows.decode((Int64, String).self) {
            var record = try Self.value(AuditRecord.self, doc)
            record.sequence = sequence
            out.append(record)
        }
        return out
    }

    // MARK: Writes

    public func commit(_ batch: StoreBatch) async throws {
        guard !batch.isEmpty else { return }
        let fence = fencing.withLock { $0 }
        do {
            try await client.withTransaction(logger: logger) { c in
                if let fence { try await checkFence(fence, on: c) }
                var nextPosition: Int64?
                for write in batch.writes {
                    try await apply(write, on: c, epoch: fence?.epoch, nextPosition: &nextPosition)
                }
            }
        } catch let error as PostgresTransactionError {
            // The store's own refusals (a fenced commit) read as themselves.
            if let refusal = error.closureError as? StoreError { throw refusal }
            throw error
        }
    }

    /// `epoch`: the leader epoch this commit checked (nil without a lease), written with its events.
    private func apply(_ write: StoreWrite, on c: PostgresConnection, epoch: Int64?, nextPosition: inout Int64?) async throws {
        let l = logger
        switch write {
        case .saveProject(let r):
            try await c.query("""
                INSERT INTO project (id, name, doc) VALUES (\(Int64(r.id.rawValue)), \(r.name), \(try Self.json(r)))
                ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, doc = EXCLUDED.doc
                """, logger: l)
        case .saveMember(let r):
            try await c.query("""
                INSERT INTO member (project_id, subject, doc) VALUES (\(Int64(r.projectID.rawValue)), \(r.subject), \(try Self.json(r)))
                ON CONFLICT (project_id, subject) DO UPDATE SET doc = EXCLUDED.doc
                """, logger: l)
        case .removeMember(let project, let subject):
            try await c.query("DELETE FROM member WHERE project_id = \(Int64(project.rawValue)) AND subject = \(subject)", logger: l)
        case .saveToken(let r):
            try await c.query("""
                INSERT INTO token (id, secret_hash, doc) VALUES (\(Int64(r.id)), \(r.secretHash), \(try Self.json(r)))
                ON CONFLICT (id) DO UPDATE SET secret_hash = EXCLUDED.secret_hash, doc = EXCLUDED.doc
                """, logger: l)
        case .saveNode(let r, let gpus):
            try await c.query("""
                INSERT INTO node (id, name, doc) VALUES (\(Int64(r.id.rawValue)), \(r.name), \(try Self.json(r)))
                ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, doc = EXCLUDED.doc
                """, logger: l)
            for gpu in gpus {
                try await c.query("""
                    INSERT INTO gpu (node_id, idx, doc) VALUES (\(Int64(gpu.nodeID.rawValue)), \(gpu.index), \(try Self.json(gpu)))
                    ON CONFLICT (node_id, idx) DO UPDATE SET doc = EXCLUDED.doc
                    """, logger: l)
            }
        case .submitJob(let r, let idempotency):
            try await c.query("INSERT INTO job (id, project_id, doc) VALUES (\(Int64(r.id.rawValue)), \(Int64(r.projectID.rawValue)), \(try Self.json(r)))", logger: l)
            if let k = idempotency {
                try await c.query("""
                    INSERT INTO idempotency_key (subject, key, created_at, doc) VALUES (\(k.subject), \(k.key), \(k.createdAt.millisecondsSinceEpoch), \(try Self.json(k)))
                    ON CONFLICT (subject, key) DO UPDATE SET created_at = EXCLUDED.created_at, doc = EXCLUDED.doc
                    """, logger: l)
            }
        case .saveJob(let r):
            try await c.query("""
                INSERT INTO job (id, project_id, doc) VALUES (\(Int64(r.id.rawValue)), \(Int64(r.projectID.rawValue)), \(try Self.json(r)))
                ON CONFLICT (id) DO UPDATE SET project_id = EXCLUDED.project_id, doc = EXCLUDED.doc
                """, logger: l)
        case .saveAllocation(let r):
            try await c.query("""
                INSERT INTO allocation (id, job_id, live, doc) VALUES (\(Int64(r.id.rawValue)), \(Int64(r.jobID.rawValue)), \(r.live), \(try Self.json(r)))
                ON CONFLICT (id) DO UPDATE SET job_id = EXCLUDED.job_id, live = EXCLUDED.live, doc = EXCLUDED.doc
                """, logger: l)
        case .appendEvent(let r):
            try await c.query("""
                INSERT INTO event (time, kind, job_id, node_id, allocation_id, actor, payload, epoch)
                VALUES (\(r.time.millisecondsSinceEpoch), \(r.kind), \(r.jobID.map { Int64($0.rawValue) }), \(r.nodeID.map { Int64($0.rawValue) }),
                        \(r.allocationID.map { Int64($0.rawValue) }), \(r.actor), \(try Self.json(r.event)), \(epoch))
                """, logger: l)
        case .appendLog(let r):
            // Positions only grow: batches commit one at a time under this transaction's lock.
            if nextPosition == nil {
                try await c.query("LOCK TABLE log_chunk IN EXCLUSIVE MODE", logger: l)
                var largest: Int64 = 0
                for try await value in try await c.query("SELECT COALESCE(MAX(position), 0) FROM log_chunk", logger: l).decode(Int64.self) { largest = value }
                nextPosition = largest + 1
            }
            let position = nextPosition!
            var inserted = false
            for try await _ in try await c.query("""
                INSERT INTO log_chunk (allocation_id, sequence, job_id, position, doc)
                VALUES (\(Int64(r.allocationID.rawValue)), \(r.sequence), \(Int64(r.jobID.rawValue)), \(position), \(try Self.json(r)))
                ON CONFLICT (allocation_id, sequence) DO NOTHING RETURNING position
                """, logger: l).decode(Int64.self) { inserted = true }
            if inserted { nextPosition = position + 1 }
        case .appendAudit(let r):
            try await c.query("INSERT INTO audit (subject, doc) VALUES (\(r.subject), \(try Self.json(r)))", logger: l)
        case .saveSecret(let r):
            try await c.query("""
                INSERT INTO secret (project_id, name, doc) VALUES (\(Int64(r.projectID.rawValue)), \(r.name), \(try Self.json(r)))
                ON CONFLICT (project_id, name) DO UPDATE SET doc = EXCLUDED.doc
                """, logger: l)
        case .removeSecret(let project, let name):
            try await c.query("DELETE FROM secret WHERE project_id = \(Int64(project.rawValue)) AND name = \(name)", logger: l)
        case .saveStorageBackend(let r):
            try await c.query("INSERT INTO storage_backend (name, doc) VALUES (\(r.name), \(try Self.json(r))) ON CONFLICT (name) DO UPDATE SET doc = EXCLUDED.doc", logger: l)
        case .removeStorageBackend(let name):
            try await c.query("DELETE FROM storage_backend WHERE name = \(name)", logger: l)
        case .saveService(let r):
            try await c.query("""
                INSERT INTO service (name, project_id, doc) VALUES (\(r.name), \(Int64(r.project.rawValue)), \(try Self.json(r)))
                ON CONFLICT (name) DO UPDATE SET project_id = EXCLUDED.project_id, doc = EXCLUDED.doc
                """, logger: l)
        case .removeService(let name):
            try await c.query("DELETE FROM service WHERE name = \(name)", logger: l)
        case .expireIdempotencyKeys(let before):
            try await c.query("DELETE FROM idempotency_key WHERE created_at < \(before.millisecondsSinceEpoch)", logger: l)
        case .appendCharges, .savePriceVersion, .saveBudget, .savePackage, .saveCredit, .finaliseInvoice:
            try await commitBilling(write, on: c)
        case .setMeta(let meta):
            try await c.query("INSERT INTO meta (id, doc) VALUES (1, \(try Self.json(meta))) ON CONFLICT (id) DO UPDATE SET doc = EXCLUDED.doc", logger: l)
        }
    }
}
