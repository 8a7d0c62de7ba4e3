public import FastGPUModel
public import FastGPUStore

/// The control plane's money: the price book, budgets, packages, credits, final invoices, the
/// ledger's totals, what admission reserved and where metering is in each running allocation.
///
/// Invariants: `totals` is the sum of every charge in the store's ledger (restored by its
/// `GROUP BY`, then added to as charges are appended in the same batch); `cursors` holds, for each
/// live allocation that ran, the first segment not yet charged, so a segment is charged once;
/// a charge is never billed in a month whose invoice is final.
struct BillingTable {
    /// What admission holds for a job: `micros` in all, of which `attemptMicros` for one attempt
    /// (price × resources × max runtime). A retried attempt raises `micros` by another attempt.
    struct Reservation: Hashable {
        var project: ProjectID
        var micros: Int64
        var attemptMicros: Int64
    }

    var prices: PriceBook
    var budgets: [ProjectID: Budget]
    var packages: [ProjectID: BillingPackage]
    var credits: [CreditRecord]
    var invoices: [LedgerTotals.ProjectMonth: InvoiceRecord] = [:]
    var totals = LedgerTotals()
    var cursors: [AllocationID: Int]
    /// What admission holds for each unfinished job of a project with a budget.
    var reservations: [JobID: Reservation] = [:]
    /// Projects warned of their soft threshold this month (memory: a restart warns again, once).
    var warned: Set<LedgerTotals.ProjectMonth> = []
    /// Projects whose spot work was stopped at the limit this month.
    var spotStopped: Set<LedgerTotals.ProjectMonth> = []
    var nextCreditID: UInt64

    init(stored: StoredBilling) {
        prices = PriceBook(versions: stored.priceVersions.map(\.version))
        budgets = stored.budgets
        packages = stored.packages
        credits = stored.credits
        for record in stored.invoices { invoices[LedgerTotals.ProjectMonth(project: record.invoice.project, month: record.invoice.month)] = record }
        for row in stored.usage {
            totals.add(project: row.project, month: row.month, line: row.line, usage: row.usage)
            totals.add(job: row.job, line: row.line, usage: row.usage)
        }
        cursors = stored.meterCursors
        nextCreditID = (stored.credits.map(\.id).max() ?? 0) + 1
    }

    /// The first month at or after `month` whose invoice for `project` is not final.
    func openMonth(_ project: ProjectID, from month: BillingMonth) -> BillingMonth {
        var month = month
        while invoices[LedgerTotals.ProjectMonth(project: project, month: month)] != nil { month = month.next }
        return month
    }

    /// Charges what the allocation ran up to `time` that is not charged yet; with `ended`, also
    /// the last part segment, and the allocation is forgotten. Adds them to the totals.
    mutating func meter(_ allocation: MeteredAllocation, until time: Timestamp, ended: Bool) -> [Charge] {
        let first = cursors[allocation.allocation] ?? 0
        var (charges, next) = Metering.charges(of: allocation, fromSegment: first, until: time, ended: ended, prices: prices)
        for index in charges.indices {
            charges[index].month = openMonth(allocation.project, from: charges[index].month)
            totals.add(charges[index])
        }
        if ended { cursors[allocation.allocation] = nil } else if next != first { cursors[allocation.allocation] = next }
        return charges
    }

    /// Whether the allocation has a segment to charge at `time` (cheap: most ticks have none).
    func isDue(_ allocation: Allocation, at time: Timestamp) -> Bool {
        guard let since = allocation.runningSince else { return false }
        let next = Int64(cursors[allocation.id] ?? 0) + 1
        return since.millisecondsSinceEpoch + next * Metering.segmentMilliseconds <= time.millisecondsSinceEpoch
    }

    func spentMicros(_ project: ProjectID, in month: BillingMonth) -> Int64 { totals.spentMicros(project: project, month: month) }

    /// What admission still holds for the project: each unfinished job's reservation less what it was charged.
    func outstandingMicros(_ project: ProjectID) -> Int64 {
        reservations.lazy
            .filter { $0.value.project == project }
            .reduce(Int64(0)) { Money.sum($0, max(0, $1.value.micros - totals.costMicros(job: $1.key))) }
    }

    /// Credits left for `month`'s invoice. Each final invoice before it drew its trial and
    /// prepaid amounts from the credits valid in its month, the soonest to expire first; what an
    /// expired credit had left is gone, never taken from a newer one.
    func balances(_ project: ProjectID, for month: BillingMonth) -> CreditBalances {
        let mine = credits.filter { $0.project == project }
        var left = Dictionary(mine.map { ($0.id, $0.amountMicros) }, uniquingKeysWith: { a, _ in a })
        func valid(_ credit: CreditRecord, in month: BillingMonth) -> Bool {
            credit.grantedAt < month.end && (credit.expiresAt.map { $0 > month.start } ?? true)
        }
        func draw(_ amount: Int64, kind: CreditKind, in month: BillingMonth) {
            var owed = amount
            let usable = mine.filter { $0.kind == kind && valid($0, in: month) }
                .sorted { ($0.expiresAt?.millisecondsSinceEpoch ?? .max, $0.id) < ($1.expiresAt?.millisecondsSinceEpoch ?? .max, $1.id) }
            for credit in usable where owed > 0 {
                let taken = min(owed, left[credit.id] ?? 0)
                left[credit.id, default: 0] -= taken
                owed -= taken
            }
        }
        for (key, record) in invoices.sorted(by: { $0.key.month < $1.key.month }) where key.project == project && key.month < month {
            draw(record.invoice.trialAppliedMicros, kind: .trial, in: key.month)
            draw(record.invoice.prepaidAppliedMicros, kind: .prepaid, in: key.month)
        }
        var trial: Int64 = 0, prepaid: Int64 = 0
        for credit in mine where valid(credit, in: month) {
            switch credit.kind {
            case .trial: trial = Money.sum(trial, left[credit.id] ?? 0)
            case .prepaid: prepaid = Money.sum(prepaid, left[credit.id] ?? 0)
            }
        }
        return CreditBalances(trialMicros: trial, prepaidMicros: prepaid)
    }

    /// The month's invoice: final when issued, else as it stands now.
    func invoice(_ project: ProjectID, month: BillingMonth) -> (invoice: Invoice, issuedAt: Timestamp?) {
        let key = LedgerTotals.ProjectMonth(project: project, month: month)
        if let record = invoices[key] { return (record.invoice, record.issuedAt) }
        return (Invoice(project: project, month: month, lines: totals.byProjectMonth[key] ?? [:], package: packages[project].flatMap { $0.covers(month) ? $0 : nil },
                        credits: balances(project, for: month)), nil)
    }

    /// Months of the project with charges or a package, newest first.
    func months(of project: ProjectID, current: BillingMonth) -> [BillingMonth] {
        var months = Set(totals.byProjectMonth.keys.filter { $0.project == project }.map(\.month))
        months.formUnion(invoices.keys.filter { $0.project == project }.map(\.month))
        if packages[project] != nil { months.insert(current) }
        return months.sorted(by: >)
    }
}
