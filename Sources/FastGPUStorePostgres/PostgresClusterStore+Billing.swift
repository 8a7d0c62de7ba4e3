public import FastGPUModel
public import FastGPUStore
import Foundation
import PostgresNIO

// The money tables: price versions, budgets, packages, credits, final invoices and the
// append-only ledger of charges, summed in SQL as the SQLite store does.

extension PostgresClusterStore {
    func commitBilling(_ write: StoreWrite, on c: PostgresConnection) async throws {
        let l = logger
        switch write {
        case .appendCharges(let charges):
            for ch in charges {
                try await c.query("""
                    INSERT INTO charge (source_id, project_id, job_id, allocation_id, segment, sku, tier, price_version, unit_price_micros_per_hour,
                        quantity, start, "end", usage, month, reverses)
                    VALUES (\(ch.sourceID), \(Int64(ch.project.rawValue)), \(Int64(ch.job.rawValue)), \(Int64(ch.allocation.rawValue)), \(ch.segment),
                        \(ch.sku.description), \(ch.tier.rawValue), \(ch.priceVersion), \(ch.unitPriceMicrosPerHour), \(ch.quantity),
                        \(ch.start.millisecondsSinceEpoch), \(ch.end.millisecondsSinceEpoch), \(ch.usage), \(ch.month.description), \(ch.reverses))
                    ON CONFLICT (source_id) DO NOTHING
                    """, logger: l)
            }
        case .savePriceVersion(let r):
            try await c.query("""
                INSERT INTO price_version (version, effective_at, prices, spot_percent, created_at, created_by)
                VALUES (\(r.version.version), \(r.version.effectiveAt.millisecondsSinceEpoch), \(try Self.json(r.version.onDemandMicrosPerHour)),
                        \(r.version.spotPercent), \(r.createdAt.millisecondsSinceEpoch), \(r.createdBy))
                """, logger: l)
        case .saveBudget(let project, let budget):
            if let budget {
                try await c.query("""
                    INSERT INTO budget (project_id, doc) VALUES (\(Int64(project.rawValue)), \(try Self.json(budget))) ON CONFLICT (project_id) DO UPDATE SET doc = EXCLUDED.doc
                    """, logger: l)
            } else {
                try await c.query("DELETE FROM budget WHERE project_id = \(Int64(project.rawValue))", logger: l)
            }
        case .savePackage(let project, let package):
            if let package {
                try await c.query("""
                    INSERT INTO package (project_id, doc) VALUES (\(Int64(project.rawValue)), \(try Self.json(package))) ON CONFLICT (project_id) DO UPDATE SET doc = EXCLUDED.doc
                    """, logger: l)
            } else {
                try await c.query("DELETE FROM package WHERE project_id = \(Int64(project.rawValue))", logger: l)
            }
        case .saveCredit(let r):
            try await c.query("""
                INSERT INTO credit (id, project_id, kind, amount_micros, paid_micros, granted_at, expires_at, granted_by)
                VALUES (\(Int64(r.id)), \(Int64(r.project.rawValue)), \(r.kind.rawValue), \(r.amountMicros), \(r.paidMicros),
                        \(r.grantedAt.millisecondsSinceEpoch), \(r.expiresAt?.millisecondsSinceEpoch), \(r.grantedBy))
                """, logger: l)
        case .finaliseInvoice(let r):
            try await c.query("""
                INSERT INTO invoice (project_id, month, body, issued_at)
                VALUES (\(Int64(r.invoice.project.rawValue)), \(r.invoice.month.description), \(try Self.json(StoredInvoice(r.invoice))), \(r.issuedAt.millisecondsSinceEpoch))
                """, logger: l)
        default:
            preconditionFailure("commitBilling called with \(write)")  // the caller passes money writes only
        }
    }

    static let lineColumns = "project_id, month, job_id, sku, tier, price_version, unit_price_micros_per_hour, SUM(usage)::bigint"

    func lineUsages(_ rows: PostgresRowSequence) async throws -> [LineUsage] {
        var out: [LineUsage] = []
        for try await (project, month, job, sku, tier, version, price, usage) in rows.decode((Int64, String, Int64, String, String, Int, Int64, Int64).self) {
            guard let sku = SKU(sku), let tier = BillingTier(rawValue: tier), let month = BillingMonth(month) else { continue }
            out.append(LineUsage(project: ProjectID(UInt64(project)), month: month, job: JobID(UInt64(job)),
                                 line: LineKey(sku: sku, tier: tier, priceVersion: version, unitPriceMicrosPerHour: price), usage: usage))
        }
        return out
    }

    public func usage(project: ProjectID, from: Timestamp, to: Timestamp) async throws -> [LineUsage] {
        guard Int64(exactly: project.rawValue) != nil else { return [] }
        return try await lineUsages(try await client.query("""
            SELECT project_id, month, job_id, sku, tier, price_version, unit_price_micros_per_hour, SUM(usage)::bigint FROM charge
            WHERE project_id = \(Int64(project.rawValue)) AND start >= \(from.millisecondsSinceEpoch) AND start < \(to.millisecondsSinceEpoch)
            GROUP BY project_id, month, job_id, sku, tier, price_version, unit_price_micros_per_hour ORDER BY job_id
            """, logger: logger))
    }

    public func charges(of job: JobID, limit: Int) async throws -> [Charge] {
        guard Int64(exactly: job.rawValue) != nil else { return [] }
        let rows = try await client.query("""
            SELECT source_id, project_id, job_id, allocation_id, segment, sku, tier, price_version, unit_price_micros_per_hour, quantity,
                   start, "end", usage, month, reverses
            FROM charge WHERE job_id = \(Int64(job.rawValue)) ORDER BY sequence LIMIT \(limit)
            """, logger: logger)
        var out: [Charge] = []
        for try await row in rows {
            let cells = row.makeRandomAccess()
            func cell<T: PostgresDecodable>(_ index: Int, _ type: T.Type) throws -> T { try cells[index].decode(T.self, context: .default) }
            let sourceID = try cell(0, String.self), project = try cell(1, Int64.self), job = try cell(2, Int64.self), allocation = try cell(3, Int64.self)
            let segment = try cell(4, Int.self), sku = try cell(5, String.self), tier = try cell(6, String.self), version = try cell(7, Int.self)
            let price = try cell(8, Int64.self), quantity = try cell(9, Int64.self), start = try cell(10, Int64.self), end = try cell(11, Int64.self)
            let usage = try cell(12, Int64.self), month = try cell(13, String.self), reverses = try cell(14, String?.self)
            guard let sku = SKU(sku), let tier = BillingTier(rawValue: tier), let month = BillingMonth(month) else { continue }
            out.append(Charge(sourceID: sourceID, project: ProjectID(UInt64(project)), job: JobID(UInt64(job)), allocation: AllocationID(UInt64(allocation)),
                              segment: segment, sku: sku, tier: tier, priceVersion: version, unitPriceMicrosPerHour: price, quantity: quantity,
                              start: Timestamp(millisecondsSinceEpoch: start), end: Timestamp(millisecondsSinceEpoch: end), usage: usage, month: month,
                              reverses: reverses))
        }
        return out
    }

    func loadBilling(_ c: PostgresConnection) async throws -> StoredBilling {
        var billing = StoredBilling()
        let l = logger
        for try await (version, effective, prices, spot, created, by) in try await c.query(
            "SELECT version, effective_at, prices, spot_percent, created_at, created_by FROM price_version ORDER BY version", logger: l)
            .decode((Int, Int64, String, Int, Int64, String).self) {
            billing.priceVersions.append(PriceVersionRecord(
                version: PriceVersion(version: version, effectiveAt: Timestamp(millisecondsSinceEpoch: effective),
                                      onDemandMicrosPerHour: try Self.value([String: Int64].self, prices), spotPercent: spot),
                createdAt: Timestamp(millisecondsSinceEpoch: created), createdBy: by))
        }
        for try await (project, doc) in try await c.query("SELECT project_id, doc FROM budget", logger: l).decode((Int64, String).self) {
            billing.budgets[ProjectID(UInt64(project))] = try Self.value(Budget.self, doc)
        }
        for try await (project, doc) in try await c.query("SELECT project_id, doc FROM package", logger: l).decode((Int64, String).self) {
            billing.packages[ProjectID(UInt64(project))] = try Self.value(BillingPackage.self, doc)
        }
        for try await (id, project, kind, amount, paid, granted, expires, by) in try await c.query(
            "SELECT id, project_id, kind, amount_micros, paid_micros, granted_at, expires_at, granted_by FROM credit ORDER BY id", logger: l)
            .decode((Int64, Int64, String, Int64, Int64, Int64, Int64?, String).self) {
            guard let kind = CreditKind(rawValue: kind) else { continue }
            billing.credits.append(CreditRecord(id: UInt64(id), project: ProjectID(UInt64(project)), kind: kind, amountMicros: amount, paidMicros: paid,
                                                grantedAt: Timestamp(millisecondsSinceEpoch: granted),
                                                expiresAt: expires.map { Timestamp(millisecondsSinceEpoch: $0) }, grantedBy: by))
        }
        for try await (body, issued) in try await c.query("SELECT body, issued_at FROM invoice ORDER BY month, project_id", logger: l).decode((String, Int64).self) {
            billing.invoices.append(InvoiceRecord(invoice: try Self.value(StoredInvoice.self, body).invoice, issuedAt: Timestamp(millisecondsSinceEpoch: issued)))
        }
        billing.usage = try await lineUsages(try await c.query("""
            SELECT project_id, month, job_id, sku, tier, price_version, unit_price_micros_per_hour, SUM(usage)::bigint FROM charge
            GROUP BY project_id, month, job_id, sku, tier, price_version, unit_price_micros_per_hour
            """, logger: l))
        for try await (allocation, segment) in try await c.query("""
            SELECT c.allocation_id, MAX(c.segment) FROM charge c JOIN allocation a ON a.id = c.allocation_id WHERE a.live GROUP BY c.allocation_id
            """, logger: l).decode((Int64, Int).self) {
            billing.meterCursors[AllocationID(UInt64(allocation))] = segment + 1
        }
        return billing
    }
}
