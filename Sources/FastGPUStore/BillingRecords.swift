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
