public import FastGPUModel

// The money tables: price versions, budgets, packages, credits, finalised invoices and the
// ledger of charges. The ledger is append-only: a charge's source id is unique, a repeated one
// is ignored, and nothing updates or deletes a charge (a correction is a reversing entry).

/// A price version as stored, with who made it.
public struct PriceVersionRecord: Hashable, Sendable {
    public var version: PriceVersion
    public var createdAt: Timestamp
    public var createdBy: String

    public init(version: PriceVersion, createdAt: Timestamp, createdBy: String) {
        self.version = version
        self.createdAt = createdAt
        self.createdBy = createdBy
    }
}

/// Credit given to a project: a trial (free, expiring) or prepaid (bought, `paidMicros` for
/// `amountMicros` of credit).
public struct CreditRecord: Hashable, Sendable {
    public var id: UInt64
    public var project: ProjectID
    public var kind: CreditKind
    public var amountMicros: Int64
    public var paidMicros: Int64
    public var grantedAt: Timestamp
    public var expiresAt: Timestamp?
    public var grantedBy: String

    public init(id: UInt64, project: ProjectID, kind: CreditKind, amountMicros: Int64, paidMicros: Int64, grantedAt: Timestamp, expiresAt: Timestamp?, grantedBy: String) {
        self.id = id
        self.project = project
        self.kind = kind
        self.amountMicros = amountMicros
        self.paidMicros = paidMicros
        self.grantedAt = grantedAt
        self.expiresAt = expiresAt
        self.grantedBy = grantedBy
    }
}

/// A finalised invoice: written once, never changed.
public struct InvoiceRecord: Hashable, Sendable {
    public var invoice: Invoice
    public var issuedAt: Timestamp

    public init(invoice: Invoice, issuedAt: Timestamp) {
        self.invoice = invoice
        self.issuedAt = issuedAt
    }
}

/// Summed usage of one invoice line, as a store's `GROUP BY` returns it.
public struct LineUsage: Hashable, Sendable {
    public var project: ProjectID
    public var month: BillingMonth
    public var job: JobID
    public var line: LineKey
    public var usage: Int64

    public init(project: ProjectID, month: BillingMonth, job: JobID, line: LineKey, usage: Int64) {
        self.project = project
        self.month = month
        self.job = job
        self.line = line
        self.usage = usage
    }
}

/// Everything about money a control plane needs to start.
public struct StoredBilling: Hashable, Sendable {
    public var priceVersions: [PriceVersionRecord] = []
    public var budgets: [ProjectID: Budget] = [:]
    public var packages: [ProjectID: BillingPackage] = [:]
    public var credits: [CreditRecord] = []
    public var invoices: [InvoiceRecord] = []
    /// The ledger summed per project, month, job and line.
    public var usage: [LineUsage] = []
    /// For each live allocation that was charged: the next segment to meter.
    public var meterCursors: [AllocationID: Int] = [:]

    public init() {}
}

/// An invoice as the JSON body of its row (every store keeps it so).
public struct StoredInvoice: Codable, Sendable {
    public struct Line: Codable, Sendable {
        var sku: String
        var tier: String
        var priceVersion: Int
        var unitPriceMicrosPerHour: Int64
        var usage: Int64
    }
    var project: UInt64
    var month: String
    var lines: [Line]
    var packageFeeMicros: Int64
    var usageMicros: Int64
    var trialAppliedMicros: Int64
    var allowanceAppliedMicros: Int64
    var allowanceUsed: Int64
    var prepaidAppliedMicros: Int64
    var totalMicros: Int64

    public init(_ invoice: Invoice) {
        project = invoice.project.rawValue
        month = invoice.month.description
        lines = invoice.lines.map { Line(sku: $0.key.sku.description, tier: $0.key.tier.rawValue, priceVersion: $0.key.priceVersion,
                                         unitPriceMicrosPerHour: $0.key.unitPriceMicrosPerHour, usage: $0.usage) }
        packageFeeMicros = invoice.packageFeeMicros
        usageMicros = invoice.usageMicros
        trialAppliedMicros = invoice.trialAppliedMicros
        allowanceAppliedMicros = invoice.allowanceAppliedMicros
        allowanceUsed = invoice.allowanceUsed
        prepaidAppliedMicros = invoice.prepaidAppliedMicros
        totalMicros = invoice.totalMicros
    }

    /// The invoice as it was issued: its figures as stored, not recomputed.
    public var invoice: Invoice {
        get throws {
            guard let month = BillingMonth(month) else { throw StoreError("a stored invoice has no month") }
            let keys = try lines.map { line -> (LineKey, Int64) in
                guard let sku = SKU(line.sku), let tier = BillingTier(rawValue: line.tier) else { throw StoreError("a stored invoice line is unreadable") }
                return (LineKey(sku: sku, tier: tier, priceVersion: line.priceVersion, unitPriceMicrosPerHour: line.unitPriceMicrosPerHour), line.usage)
            }
            var invoice = Invoice(project: ProjectID(project), month: month, lines: Dictionary(keys, uniquingKeysWith: +), package: nil, credits: CreditBalances())
            invoice.packageFeeMicros = packageFeeMicros
            invoice.usageMicros = usageMicros
            invoice.trialAppliedMicros = trialAppliedMicros
            invoice.allowanceAppliedMicros = allowanceAppliedMicros
            invoice.allowanceUsed = allowanceUsed
            invoice.prepaidAppliedMicros = prepaidAppliedMicros
            invoice.totalMicros = totalMicros
            return invoice
        }
    }
}
