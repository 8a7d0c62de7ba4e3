public import FastGPUModel
public import FastGPUStore
import Foundation
public import GRDB

// The money tables of the embedded store: price versions, budgets, packages, credits, final
// invoices and the append-only ledger of charges (tables in migrations v9–v11).

extension SQLiteClusterStore {
    /// The money writes of a batch (inside its transaction): the ledger only ever grows.
    static func commitBilling(_ write: StoreWrite, _ db: Database, encoder: JSONEncoder) throws {
        switch write {
        case .appendCharges(let charges):
            for charge in charges {
                try db.execute(sql: """
                    INSERT OR IGNORE INTO charge (sourceID, projectID, jobID, allocationID, segment, sku, tier, priceVersion,
                        unitPriceMicrosPerHour, quantity, start, "end", usage, month, reverses) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """, arguments: [charge.sourceID, charge.project.rawValue, charge.job.rawValue, charge.allocation.rawValue, charge.segment,
                                      charge.sku.description, charge.tier.rawValue, charge.priceVersion, charge.unitPriceMicrosPerHour, charge.quantity,
                                      charge.start.millisecondsSinceEpoch, charge.end.millisecondsSinceEpoch, charge.usage, charge.month.description,
                                      charge.reverses])
            }
        case .savePriceVersion(let record):
            try db.execute(sql: "INSERT INTO priceVersion (version, effectiveAt, prices, spotPercent, createdAt, createdBy) VALUES (?, ?, ?, ?, ?, ?)",
                           arguments: [record.version.version, record.version.effectiveAt.millisecondsSinceEpoch,
                                       String(decoding: try encoder.encode(record.version.onDemandMicrosPerHour), as: UTF8.self),
                                       record.version.spotPercent, record.createdAt.millisecondsSinceEpoch, record.createdBy])
        case .saveBudget(let project, let budget):
            if let budget {
                try db.execute(sql: "INSERT OR REPLACE INTO budget (projectID, limitMicros, softPercent, stopSpot, defaultMaxRuntimeSeconds) VALUES (?, ?, ?, ?, ?)",
                               arguments: [project.rawValue, budget.limitMicros, budget.softPercent, budget.stopSpot, budget.defaultMaxRuntimeSeconds])
            } else {
                try db.execute(sql: "DELETE FROM budget WHERE projectID = ?", arguments: [project.rawValue])
            }
        case .savePackage(let project, let package):
            if let package {
                try db.execute(sql: "INSERT OR REPLACE INTO package (projectID, monthlyFeeMicros, allowanceGPUHours, since) VALUES (?, ?, ?, ?)",
                               arguments: [project.rawValue, package.monthlyFeeMicros, package.allowanceGPUHours, package.since.millisecondsSinceEpoch])
            } else {
                try db.execute(sql: "DELETE FROM package WHERE projectID = ?", arguments: [project.rawValue])
            }
        case .saveCredit(let record):
            try db.execute(sql: "INSERT INTO credit (id, projectID, kind, amountMicros, paidMicros, grantedAt, expiresAt, grantedBy) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                           arguments: [record.id, record.project.rawValue, record.kind.rawValue, record.amountMicros, record.paidMicros,
                                       record.grantedAt.millisecondsSinceEpoch, record.expiresAt?.millisecondsSinceEpoch, record.grantedBy])
        case .finaliseInvoice(let record):
            try db.execute(sql: "INSERT INTO invoice (projectID, month, body, issuedAt) VALUES (?, ?, ?, ?)",
                           arguments: [record.invoice.project.rawValue, record.invoice.month.description,
                                       String(decoding: try encoder.encode(StoredInvoice(record.invoice)), as: UTF8.self),
                                       record.issuedAt.millisecondsSinceEpoch])
        default:
            preconditionFailure("commitBilling called with \(write)")  // the caller passes money writes only
        }
    }

    public func usage(project: ProjectID, from: Timestamp, to: Timestamp) async throws -> [LineUsage] {
        try await pool.read { db in
            try Row.fetchAll(db, sql: """
                SELECT projectID, month, jobID, sku, tier, priceVersion, unitPriceMicrosPerHour, SUM(usage) AS usage FROM charge
                WHERE projectID = ? AND start >= ? AND start < ?
                GROUP BY month, jobID, sku, tier, priceVersion, unitPriceMicrosPerHour ORDER BY jobID
                """, arguments: [project.rawValue, from.millisecondsSinceEpoch, to.millisecondsSinceEpoch]).compactMap(Self.lineUsage)
        }
    }

    public func charges(of job: JobID, limit: Int) async throws -> [Charge] {
        try await pool.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM charge WHERE jobID = ? ORDER BY sequence LIMIT ?", arguments: [job.rawValue, limit]).compactMap { row in
                guard let sku = SKU(row["sku"]), let tier = BillingTier(rawValue: row["tier"]), let month = BillingMonth(row["month"] as String) else { return nil }
                return Charge(sourceID: row["sourceID"], project: ProjectID(row["projectID"]), job: JobID(row["jobID"]), allocation: AllocationID(row["allocationID"]),
                              segment: row["segment"], sku: sku, tier: tier, priceVersion: row["priceVersion"], unitPriceMicrosPerHour: row["unitPriceMicrosPerHour"],
                              quantity: row["quantity"], start: Timestamp(millisecondsSinceEpoch: row["start"]), end: Timestamp(millisecondsSinceEpoch: row["end"]),
                              usage: row["usage"], month: month, reverses: row["reverses"])
            }
        }
    }

    static func lineUsage(_ row: Row) -> LineUsage? {
        guard let sku = SKU(row["sku"]), let tier = BillingTier(rawValue: row["tier"]), let month = BillingMonth(row["month"] as String) else { return nil }
        return LineUsage(project: ProjectID(row["projectID"]), month: month, job: JobID(row["jobID"]),
                         line: LineKey(sku: sku, tier: tier, priceVersion: row["priceVersion"], unitPriceMicrosPerHour: row["unitPriceMicrosPerHour"]),
                         usage: row["usage"])
    }

    static func loadBilling(_ db: Database) throws -> StoredBilling {
        var billing = StoredBilling()
        let decoder = JSONDecoder()
        billing.priceVersions = try Row.fetchAll(db, sql: "SELECT * FROM priceVersion ORDER BY version").map { row in
            PriceVersionRecord(version: PriceVersion(version: row["version"], effectiveAt: Timestamp(millisecondsSinceEpoch: row["effectiveAt"]),
                                                     onDemandMicrosPerHour: try decoder.decode([String: Int64].self, from: Data((row["prices"] as String).utf8)),
                                                     spotPercent: row["spotPercent"]),
                               createdAt: Timestamp(millisecondsSinceEpoch: row["createdAt"]), createdBy: row["createdBy"])
        }
        for row in try Row.fetchAll(db, sql: "SELECT * FROM budget") {
            billing.budgets[ProjectID(row["projectID"])] = Budget(limitMicros: row["limitMicros"], softPercent: row["softPercent"], stopSpot: row["stopSpot"],
                                                                  defaultMaxRuntimeSeconds: row["defaultMaxRuntimeSeconds"])
        }
        for row in try Row.fetchAll(db, sql: "SELECT * FROM package") {
            billing.packages[ProjectID(row["projectID"])] = BillingPackage(monthlyFeeMicros: row["monthlyFeeMicros"], allowanceGPUHours: row["allowanceGPUHours"],
                                                                           since: Timestamp(millisecondsSinceEpoch: row["since"]))
        }
        billing.credits = try Row.fetchAll(db, sql: "SELECT * FROM credit ORDER BY id").compactMap { row in
            guard let kind = CreditKind(rawValue: row["kind"]) else { return nil }
            return CreditRecord(id: row["id"], project: ProjectID(row["projectID"]), kind: kind, amountMicros: row["amountMicros"], paidMicros: row["paidMicros"],
                                grantedAt: Timestamp(millisecondsSinceEpoch: row["grantedAt"]),
                                expiresAt: (row["expiresAt"] as Int64?).map { Timestamp(millisecondsSinceEpoch: $0) }, grantedBy: row["grantedBy"])
        }
        billing.invoices = try Row.fetchAll(db, sql: "SELECT * FROM invoice ORDER BY month, projectID").map { row in
            InvoiceRecord(invoice: try decoder.decode(StoredInvoice.self, from: Data((row["body"] as String).utf8)).invoice,
                          issuedAt: Timestamp(millisecondsSinceEpoch: row["issuedAt"]))
        }
        billing.usage = try Row.fetchAll(db, sql: """
            SELECT projectID, month, jobID, sku, tier, priceVersion, unitPriceMicrosPerHour, SUM(usage) AS usage FROM charge
            GROUP BY projectID, month, jobID, sku, tier, priceVersion, unitPriceMicrosPerHour
            """).compactMap(lineUsage)
        for row in try Row.fetchAll(db, sql: """
            SELECT c.allocationID AS allocationID, MAX(c.segment) AS segment FROM charge c JOIN allocation a ON a.id = c.allocationID
            WHERE a.live = 1 GROUP BY c.allocationID
            """) {
            billing.meterCursors[AllocationID(row["allocationID"])] = (row["segment"] as Int) + 1
        }
        return billing
    }
}
