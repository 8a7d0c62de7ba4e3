public import FastGPUModel
public import FastGPUStore
import Foundation
public import GRDB

/// The embedded default store: one SQLite file in WAL mode with `synchronous=FULL`, so a
/// transaction that returned is on disk. Readers never block the one writer.
public final class SQLiteClusterStore: ClusterStore {
    public let path: String
    let pool: DatabasePool

    /// Opens (creating when missing) the database at `path` and runs the migrations it lacks.
    public init(path: String) throws {
        self.path = path
        var configuration = Configuration()
        configuration.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = FULL")
            try db.execute(sql: "PRAGMA foreign_keys = ON")
        }
        configuration.busyMode = .timeout(5)
        // The database holds token hashes, jobs' environments and everyone's work: its owner
        // alone reads it. SQLite gives the -wal and -shm files the main file's mode.
        let files = FileManager.default
        if !files.fileExists(atPath: path) { files.createFile(atPath: path, contents: nil, attributes: [.posixPermissions: 0o600]) }
        for file in [path, path + "-wal", path + "-shm"] where files.fileExists(atPath: file) {
            try? files.setAttributes([.posixPermissions: 0o600], ofItemAtPath: file)
        }
        do {
            pool = try DatabasePool(path: path, configuration: configuration)
            try Self.migrator.migrate(pool)
        } catch {
            throw StoreError("cannot open the database at \(path): \(error)")
        }
    }

    /// Migrations are frozen once released: a later schema change is a new migration, never an
    /// edit of an old one.
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.create(table: "meta") { t in
                t.primaryKey("id", .integer)
                t.column("stateIndex", .integer).notNull()
                t.column("nextAllocationID", .integer).notNull()
            }
            try db.create(table: "project") { t in
                t.primaryKey("id", .integer)
                t.column("name", .text).notNull().unique()
                t.column("weight", .integer).notNull()
                t.column("usage", .text).notNull()
                t.column("createdAt", .integer).notNull()
            }
            try db.create(table: "member") { t in
                t.column("projectID", .integer).notNull().references("project", onDelete: .cascade)
                t.column("subject", .text).notNull()
                t.column("role", .text).notNull()
                t.primaryKey(["projectID", "subject"])
            }
            try db.create(table: "token") { t in
                t.primaryKey("id", .integer)
                t.column("name", .text).notNull()
                t.column("secretHash", .text).notNull().unique()
                t.column("displayPrefix", .text).notNull()
                t.column("kind", .text).notNull()
                t.column("subject", .text).notNull()
                t.column("clusterAdmin", .boolean).notNull()
                t.column("nodeID", .integer)
                t.column("createdAt", .integer).notNull()
                t.column("expiresAt", .integer)
                t.column("revokedAt", .integer)
            }
            try db.create(table: "node") { t in
                t.primaryKey("id", .integer)
                t.column("name", .text).notNull().unique()
                t.column("state", .text).notNull()
                t.column("cpuMillis", .integer).notNull()
                t.column("memoryMiB", .integer).notNull()
                t.column("labels", .text).notNull()
                t.column("allowsCrossProjectSharing", .boolean).notNull()
                t.column("registeredAt", .integer).notNull()
                t.column("lastHeartbeatAt", .integer)
            }
            try db.create(table: "gpu") { t in
                t.column("nodeID", .integer).notNull().references("node", onDelete: .cascade)
                t.column("index", .integer).notNull()
                t.column("uuid", .text).notNull()
                t.column("model", .text).notNull()
                t.column("memoryMiB", .integer).notNull()
                t.column("island", .integer).notNull()
                t.column("health", .text).notNull()
                t.column("migEnabled", .boolean).notNull()
                t.primaryKey(["nodeID", "index"])
            }
            try db.create(table: "job") { t in
                t.primaryKey("id", .integer)
                t.column("projectID", .integer).notNull().references("project")
                t.column("name", .text).notNull()
                t.column("submitter", .text).notNull()
                t.column("state", .text).notNull()
                t.column("submitTime", .integer).notNull()
                t.column("finishedAt", .integer)
                t.column("spec", .text).notNull()
                t.column("launch", .text).notNull()
            }
            try db.create(index: "job_by_project", on: "job", columns: ["projectID", "id"])
            try db.create(table: "allocation") { t in
                t.primaryKey("id", .integer)
                t.column("jobID", .integer).notNull().references("job")
                t.column("nodeID", .integer).notNull()
                t.column("epoch", .integer).notNull()
                t.column("live", .boolean).notNull()
                t.column("report", .text).notNull()
                t.column("outcome", .text)
                t.column("startedAt", .integer).notNull()
                t.column("endedAt", .integer)
                t.column("allocation", .text).notNull()
            }
            try db.create(index: "allocation_by_job", on: "allocation", columns: ["jobID", "id"])
            try db.create(index: "allocation_live", on: "allocation", columns: ["live", "nodeID"])
            try db.create(table: "event") { t in
                t.autoIncrementedPrimaryKey("sequence")
                t.column("time", .integer).notNull()
                t.column("kind", .text).notNull()
                t.column("jobID", .integer)
                t.column("nodeID", .integer)
                t.column("allocationID", .integer)
                t.column("message", .text).notNull()
            }
            try db.create(index: "event_by_job", on: "event", columns: ["jobID", "sequence"])
            try db.create(table: "idempotencyKey") { t in
                t.column("subject", .text).notNull()
                t.column("key", .text).notNull()
                t.column("requestHash", .text).notNull()
                t.column("jobID", .integer).notNull()
                t.column("createdAt", .integer).notNull()
                t.primaryKey(["subject", "key"])
            }
            try db.create(table: "logChunk") { t in
                t.column("allocationID", .integer).notNull()
                t.column("sequence", .integer).notNull()
                t.column("jobID", .integer).notNull()
                t.column("stream", .text).notNull()
                t.column("time", .integer).notNull()
                t.column("text", .text).notNull()
                t.primaryKey(["allocationID", "sequence"])
            }
            try db.create(index: "log_by_job", on: "logChunk", columns: ["jobID", "allocationID", "sequence"])
        }
        migrator.registerMigration("v2: project priority policy") { db in
            // Existing projects get the safe default: no preempting other projects' work.
            try db.alter(table: "project") { t in t.add(column: "maxPriority", .text).notNull().defaults(to: "normal") }
        }
        migrator.registerMigration("v3: audit log") { db in
            try db.create(table: "audit") { t in
                t.autoIncrementedPrimaryKey("sequence")
                t.column("time", .integer).notNull()
                t.column("subject", .text).notNull()
                t.column("tokenID", .integer)
                t.column("action", .text).notNull()
                t.column("target", .text).notNull()
                t.column("remoteAddress", .text).notNull()
                t.column("status", .integer).notNull()
                t.column("failure", .text)
                t.column("requestID", .text).notNull()
            }
            try db.create(index: "audit_by_subject", on: "audit", columns: ["subject", "sequence"])
        }
        migrator.registerMigration("v4: project secrets") { db in
            try db.create(table: "secret") { t in
                t.column("projectID", .integer).notNull().references("project", onDelete: .cascade)
                t.column("name", .text).notNull()
                t.column("sealed", .text).notNull()
                t.column("updatedAt", .integer).notNull()
                t.column("updatedBy", .text).notNull()
                t.primaryKey(["projectID", "name"])
            }
        }
        migrator.registerMigration("v5: typed events") { db in
            // Events are stored as typed JSON (`payload`) with who caused them; rows written
            // before keep their sentence in `message` and read back as `.recorded`.
            try db.alter(table: "event") { t in
                t.add(column: "payload", .text)
                t.add(column: "actor", .text)
            }
        }
        migrator.registerMigration("v6: log positions of the store's own") { db in
            // A log line's position was its SQLite rowid; it is now a column the store assigns,
            // so that another store (and a VACUUM) keeps the cursors clients hold. Existing
            // lines keep the positions they were read at.
            try db.alter(table: "logChunk") { t in t.add(column: "position", .integer) }
            try db.execute(sql: "UPDATE logChunk SET position = rowid")
            try db.create(index: "log_by_position", on: "logChunk", columns: ["jobID", "position"])
            try db.create(index: "log_position", on: "logChunk", columns: ["position"])
        }
        migrator.registerMigration("v7: services") { db in
            // One row per service: its record as JSON (spec, replicas, recent events), queried
            // by name only; few rows, rewritten as a whole when the service changes.
            try db.create(table: "service") { t in
                t.column("name", .text).primaryKey()
                t.column("projectID", .integer).notNull().references("project", onDelete: .cascade)
                t.column("body", .text).notNull()
            }
        }
        migrator.registerMigration("v8: storage backends") { db in
            try db.create(table: "storageBackend") { t in
                t.column("name", .text).primaryKey()
                t.column("kind", .text).notNull()
                t.column("endpoint", .text).notNull()
                t.column("region", .text).notNull()
                t.column("bucket", .text).notNull()
                t.column("addressing", .text).notNull()
                t.column("sealedCredentials", .text).notNull()
                t.column("isDefault", .boolean).notNull()
                t.column("createdAt", .integer).notNull()
                t.column("createdBy", .text).notNull()
            }
        }
        migrator.registerMigration("v9: price book, ledger, budgets, credits, invoices") { db in
            try db.create(table: "priceVersion") { t in
                t.column("version", .integer).primaryKey()
                t.column("effectiveAt", .integer).notNull()
                t.column("prices", .text).notNull()
                t.column("spotPercent", .integer).notNull()
                t.column("createdAt", .integer).notNull()
                t.column("createdBy", .text).notNull()
            }
            // The ledger: append-only, one row per source id. `usage` is in the SKU's
            // sub-unit-milliseconds; money is derived per line, so no rounded amount is stored.
            try db.create(table: "charge") { t in
                t.column("sequence", .integer).primaryKey(autoincrement: true)
                t.column("sourceID", .text).notNull().unique()
                t.column("projectID", .integer).notNull()
                t.column("jobID", .integer).notNull()
                t.column("allocationID", .integer).notNull()
                t.column("segment", .integer).notNull()
                t.column("sku", .text).notNull()
                t.column("tier", .text).notNull()
                t.column("priceVersion", .integer).notNull()
                t.column("unitPriceMicrosPerHour", .integer).notNull()
                t.column("quantity", .integer).notNull()
                t.column("start", .integer).notNull()
                t.column("end", .integer).notNull()
                t.column("usage", .integer).notNull()
                t.column("month", .text).notNull()
                t.column("reverses", .text)
            }
            try db.create(index: "charge_project_start", on: "charge", columns: ["projectID", "start"])
            try db.create(index: "charge_job", on: "charge", columns: ["jobID"])
            try db.create(index: "charge_allocation", on: "charge", columns: ["allocationID", "segment"])
            // No UPDATE or DELETE ever reaches the ledger: the database refuses them too.
            try db.execute(sql: "CREATE TRIGGER charge_append_only_update BEFORE UPDATE ON charge BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END")
            try db.execute(sql: "CREATE TRIGGER charge_append_only_delete BEFORE DELETE ON charge BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END")
            try db.create(table: "budget") { t in
                t.column("projectID", .integer).primaryKey().references("project", onDelete: .cascade)
                t.column("limitMicros", .integer).notNull()
                t.column("softPercent", .integer).notNull()
                t.column("stopSpot", .boolean).notNull()
                t.column("defaultMaxRuntimeSeconds", .integer).notNull()
            }
            try db.create(table: "package") { t in
                t.column("projectID", .integer).primaryKey().references("project", onDelete: .cascade)
                t.column("monthlyFeeMicros", .integer).notNull()
                t.column("allowanceGPUHours", .integer).notNull()
            }
            try db.create(table: "credit") { t in
                t.column("id", .integer).primaryKey()
                t.column("projectID", .integer).notNull().references("project", onDelete: .cascade)
                t.column("kind", .text).notNull()
                t.column("amountMicros", .integer).notNull()
                t.column("paidMicros", .integer).notNull()
                t.column("grantedAt", .integer).notNull()
                t.column("expiresAt", .integer)
                t.column("grantedBy", .text).notNull()
            }
            try db.create(table: "invoice") { t in
                t.column("projectID", .integer).notNull()
                t.column("month", .text).notNull()
                t.column("body", .text).notNull()
                t.column("issuedAt", .integer).notNull()
                t.primaryKey(["projectID", "month"])
            }
            try db.execute(sql: "CREATE TRIGGER invoice_final BEFORE UPDATE ON invoice BEGIN SELECT RAISE(ABORT, 'a final invoice never changes'); END")
        }
        migrator.registerMigration("v10: project quotas") { db in
            try db.alter(table: "project") { t in t.add(column: "quota", .text) }
        }
        migrator.registerMigration("v11: when a package began") { db in
            try db.alter(table: "package") { t in t.add(column: "since", .integer).notNull().defaults(to: 0) }
        }
        return migrator
    }

    public func load() async throws -> StoredState {
        try await pool.read { db in
            let meta = try MetaRow.fetchOne(db, key: 1)
            var stored = StoredState(
                meta: meta.map { StoreMeta(stateIndex: $0.stateIndex, nextAllocationID: $0.nextAllocationID) },
                projects: try ProjectRecord.order(Column("id")).fetchAll(db),
                members: try MemberRecord.order(Column("projectID"), Column("subject")).fetchAll(db),
                tokens: try TokenRecord.order(Column("id")).fetchAll(db),
                nodes: try NodeRecord.order(Column("id")).fetchAll(db),
                gpus: try GPURecord.order(Column("nodeID"), Column("index")).fetchAll(db),
                jobs: try JobRecord.order(Column("id")).fetchAll(db),
                liveAllocations: try AllocationRecord.filter(Column("live") == true).order(Column("id")).fetchAll(db),
                idempotencyKeys: try IdempotencyRecord.fetchAll(db),
                secrets: try SecretRecord.order(Column("projectID"), Column("name")).fetchAll(db))
            stored.storageBackends = try StorageBackendRecord.order(Column("name")).fetchAll(db)
            stored.billing = try Self.loadBilling(db)
            stored.services = try ServiceRow.order(Column("name")).fetchAll(db).map { try JSONDecoder().decode(ServiceRecord.self, from: Data($0.body.utf8)) }
            return stored
        }
    }

    public func commit(_ batch: StoreBatch) async throws {
        guard !batch.isEmpty else { return }
        try await pool.write { db in
            var nextPosition: Int64?
            let encoder = JSONEncoder()
            for write in batch.writes {
                switch write {
                case .saveProject(let record): try record.upsert(db)
                case .saveMember(let record): try record.upsert(db)
                case .removeMember(let project, let subject):
                    _ = try MemberRecord.filter(Column("projectID") == project.rawValue && Column("subject") == subject).deleteAll(db)
                case .saveToken(let record): try record.upsert(db)
                case .saveNode(let record, let gpus):
                    try record.upsert(db)
                    for gpu in gpus { try gpu.upsert(db) }
                case .submitJob(let record, let idempotency):
                    try record.insert(db)
                    try idempotency?.upsert(db)
                case .saveJob(let record): try record.upsert(db)
                case .saveAllocation(let record): try record.upsert(db)
                case .appendEvent(let record): try EventRow(record, encoder: encoder).insert(db)
                case .appendLog(let record):
                    // Positions only grow: one writer, and the next is one past the largest.
                    if nextPosition == nil { nextPosition = try Int64.fetchOne(db, sql: "SELECT COALESCE(MAX(position), 0) + 1 FROM logChunk") ?? 1 }
                    try db.execute(sql: """
                        INSERT OR IGNORE INTO logChunk (allocationID, sequence, jobID, stream, time, text, position) VALUES (?, ?, ?, ?, ?, ?, ?)
                        """, arguments: [record.allocationID.rawValue, record.sequence, record.jobID.rawValue, record.stream.rawValue,
                                        record.time.millisecondsSinceEpoch, record.text, nextPosition])
                    if db.changesCount > 0 { nextPosition! += 1 }
                case .appendAudit(let record): try record.insert(db)
                case .saveSecret(let record): try record.upsert(db)
                case .removeSecret(let project, let name):
                    _ = try SecretRecord.filter(Column("projectID") == project.rawValue && Column("name") == name).deleteAll(db)
                case .saveStorageBackend(let record): try record.upsert(db)
                case .removeStorageBackend(let name): _ = try StorageBackendRecord.deleteOne(db, key: name)
                case .saveService(let record):
                    try ServiceRow(name: record.name, projectID: record.project.rawValue,
                                   body: String(decoding: try encoder.encode(record), as: UTF8.self)).upsert(db)
                case .removeService(let name):
                    _ = try ServiceRow.deleteOne(db, key: name)
                case .expireIdempotencyKeys(let before):
                    _ = try IdempotencyRecord.filter(Column("createdAt") < before.millisecondsSinceEpoch).deleteAll(db)
                case .appendCharges, .savePriceVersion, .saveBudget, .savePackage, .saveCredit, .finaliseInvoice:
                    try Self.commitBilling(write, db, encoder: encoder)
                case .setMeta(let meta):
                    try MetaRow(id: 1, stateIndex: meta.stateIndex, nextAllocationID: meta.nextAllocationID).upsert(db)
                }
            }
        }
    }

    public func events(job: JobID, after sequence: Int64, limit: Int) async throws -> [EventRecord] {
        try await pool.read { db in
            try EventRow.filter(Column("jobID") == job.rawValue && Column("sequence") > sequence)
                .order(Column("sequence")).limit(limit).fetchAll(db).map { try $0.record() }
        }
    }

    public func logs(job: JobID, after position: Int64, limit: Int) async throws -> [StoredLogChunk] {
        // Positions are assigned at commit, increasing: a later commit gets larger ones, and a
        // repeated chunk (INSERT OR IGNORE) none.
        try await pool.read { db in
            let rows = try Row.fetchAll(db, sql: "SELECT * FROM logChunk WHERE jobID = ? AND position > ? ORDER BY position LIMIT ?",
                                        arguments: [job.rawValue, position, limit])
            return try rows.map { row in StoredLogChunk(position: row["position"], chunk: try LogChunkRecord(row: row)) }
        }
    }

    public func allocations(job: JobID) async throws -> [AllocationRecord] {
        try await pool.read { db in
            try AllocationRecord.filter(Column("jobID") == job.rawValue).order(Column("id")).fetchAll(db)
        }
    }
}

extension SQLiteClusterStore {
    public func allocation(_ id: AllocationID) async throws -> AllocationRecord? {
        try await pool.read { db in try AllocationRecord.fetchOne(db, key: id.rawValue) }
    }

    public func audit(after sequence: Int64, limit: Int, subject: String?) async throws -> [AuditRecord] {
        try await pool.read { db in
            var request = AuditRecord.filter(Column("sequence") > sequence)
            if let subject { request = request.filter(Column("subject") == subject) }
            return try request.order(Column("sequence")).limit(limit).fetchAll(db)
        }
    }
}

extension SQLiteClusterStore {
    /// The value of a PRAGMA as a connection sees it, for checks and diagnostics.
    public func pragma(_ name: String) async throws -> String? {
        guard name.allSatisfy({ $0.isLetter || $0 == "_" }) else { return nil }
        return try await pool.read { db in try String.fetchOne(db, sql: "PRAGMA \(name)") }
    }
}

struct MetaRow: Codable, FetchableRecord, PersistableRecord {
    static let databaseTableName = "meta"
    var id: Int64
    var stateIndex: UInt64
    var nextAllocationID: UInt64
}

extension ProjectRecord: FetchableRecord, PersistableRecord {
    public static let databaseTableName = "project"
}

extension MemberRecord: FetchableRecord, PersistableRecord {
    public static let databaseTableName = "member"
}

extension TokenRecord: FetchableRecord, PersistableRecord {
    public static let databaseTableName = "token"
}

extension NodeRecord: FetchableRecord, PersistableRecord {
    public static let databaseTableName = "node"
}

extension GPURecord: FetchableRecord, PersistableRecord {
    public static let databaseTableName = "gpu"
}

extension JobRecord: FetchableRecord, PersistableRecord {
    public static let databaseTableName = "job"
}

extension AllocationRecord: FetchableRecord, PersistableRecord {
    public static let databaseTableName = "allocation"
}

/// An event's row: the ids it is queried by in their own columns, the event itself as JSON.
struct EventRow: Codable, FetchableRecord, PersistableRecord {
    static let databaseTableName = "event"
    var sequence: Int64?
    var time: Timestamp
    var kind: String
    var jobID: JobID?
    var nodeID: NodeID?
    var allocationID: AllocationID?
    /// The sentence of an event written before v5; empty since.
    var message: String
    var payload: String?
    var actor: String?

    init(_ record: EventRecord, encoder: JSONEncoder) throws {
        sequence = record.sequence
        time = record.time
        kind = record.kind
        jobID = record.jobID
        nodeID = record.nodeID
        allocationID = record.allocationID
        message = ""
        payload = String(decoding: try encoder.encode(record.event), as: UTF8.self)
        actor = record.actor
    }

    func record() throws -> EventRecord {
        let event: ClusterEvent
        if let payload {
            event = try JSONDecoder().decode(ClusterEvent.self, from: Data(payload.utf8))
        } else {
            event = .recorded(kind: kind, message: message)
        }
        return EventRecord(sequence: sequence, time: time, event: event, actor: actor)
    }
}

extension IdempotencyRecord: FetchableRecord, PersistableRecord {
    public static let databaseTableName = "idempotencyKey"
}

extension LogChunkRecord: FetchableRecord, PersistableRecord {
    public static let databaseTableName = "logChunk"
}

/// A service's row: its record as JSON under its name.
struct ServiceRow: Codable, FetchableRecord, PersistableRecord {
    static let databaseTableName = "service"
    var name: String
    var projectID: UInt64
    var body: String
}

extension StorageBackendRecord: FetchableRecord, PersistableRecord {
    public static let databaseTableName = "storageBackend"
}

extension SecretRecord: FetchableRecord, PersistableRecord {
    public static let databaseTableName = "secret"
}

extension AuditRecord: FetchableRecord, PersistableRecord {
    public static let databaseTableName = "audit"
}
