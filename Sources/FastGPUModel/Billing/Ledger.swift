/// The sums a ledger's charges add up to: usage per invoice line per project and month, and per
/// job. Money is derived from these sums with one rounding per line, never summed from rounded
/// pieces, so `billed = metered usage × price` holds to the micro-unit at every level.
public struct LedgerTotals: Hashable, Sendable {
    public struct ProjectMonth: Hashable, Sendable {
        public var project: ProjectID
        public var month: BillingMonth
        public init(project: ProjectID, month: BillingMonth) {
            self.project = project
            self.month = month
        }
    }

    /// Sub-unit-milliseconds per line.
    public private(set) var byProjectMonth: [ProjectMonth: [LineKey: Int64]] = [:]
    public private(set) var byJob: [JobID: [LineKey: Int64]] = [:]

    public init() {}

    public mutating func add(_ charge: Charge) {
        byProjectMonth[ProjectMonth(project: charge.project, month: charge.month), default: [:]][charge.line, default: 0] += charge.usage
        byJob[charge.job, default: [:]][charge.line, default: 0] += charge.usage
    }

    /// A line's usage already summed elsewhere (a store's `GROUP BY`), for a restart.
    public mutating func add(project: ProjectID, month: BillingMonth, line: LineKey, usage: Int64) {
        byProjectMonth[ProjectMonth(project: project, month: month), default: [:]][line, default: 0] += usage
    }

    public mutating func add(job: JobID, line: LineKey, usage: Int64) {
        byJob[job, default: [:]][line, default: 0] += usage
    }

    public func spentMicros(project: ProjectID, month: BillingMonth) -> Int64 {
        Self.amountMicros(byProjectMonth[ProjectMonth(project: project, month: month)] ?? [:])
    }

    public func costMicros(job: JobID) -> Int64 { Self.amountMicros(byJob[job] ?? [:]) }

    public static func amountMicros(_ lines: [LineKey: Int64]) -> Int64 {
        lines.reduce(0) { Money.sum($0, $1.key.amountMicros(usage: $1.value)) }
    }
}

/// The append-only ledger as a value: every charge once by its source id, in the order it came.
/// The control plane keeps the same invariant in its store (a unique source id) and only the
/// totals in memory; this whole form serves the simulator and the property tests.
public struct Ledger: Hashable, Sendable {
    public private(set) var charges: [Charge] = []
    private var sourceIDs: Set<String> = []
    public private(set) var totals = LedgerTotals()

    public init() {}

    /// Appends the charge unless one with its source id is already there; true when appended.
    @discardableResult
    public mutating func append(_ charge: Charge) -> Bool {
        guard sourceIDs.insert(charge.sourceID).inserted else { return false }
        charges.append(charge)
        totals.add(charge)
        return true
    }

    /// Cancels a charge with a reversing entry (a correction); nil when there is no such charge
    /// or it is reversed already.
    @discardableResult
    public mutating func reverse(_ sourceID: String, billedIn month: BillingMonth) -> Charge? {
        guard let original = charges.first(where: { $0.sourceID == sourceID }), original.reverses == nil else { return nil }
        let entry = original.reversal(month: month)
        return append(entry) ? entry : nil
    }

}
