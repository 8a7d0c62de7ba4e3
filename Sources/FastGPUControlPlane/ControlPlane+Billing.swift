public import FastGPUModel
public import FastGPUScheduler
public import FastGPUStore

// Money: metering allocations into the ledger, budgets at admission, prices, usage and invoices.
extension ControlPlane {
    /// Invoices of a month are issued this long after it ends: every segment of the month is
    /// charged within a minute of its end, so nothing of the month can come after.
    static let invoiceGrace: Int64 = 600_000

    // MARK: - Metering

    /// What metering sees of an allocation: its GPUs' model is its node's.
    func metered(_ allocation: Allocation) -> MeteredAllocation? {
        let model = allocation.devices.first.flatMap { device in state.node(allocation.node)?.gpus.first { $0.index == device.gpuIndex }?.model }
        return MeteredAllocation(allocation, gpuModel: model)
    }

    /// Charges an allocation that just ended, to the time it ended (a lost or preempted one at
    /// the loss), in the same transaction as its end.
    func meterEnded(_ allocation: Allocation, at time: Timestamp) {
        guard let metered = metered(allocation) else { billing.cursors[allocation.id] = nil; return }
        appendCharges(billing.meter(metered, until: time, ended: true))
    }

    func appendCharges(_ charges: [Charge]) {
        guard !charges.isEmpty else { return }
        pending.charges.append(contentsOf: charges)
        for charge in charges { pending.jobsCosted.insert(charge.job) }
    }

    /// A job whose allocation was lost or preempted waits to run again: another attempt is
    /// reserved on top of what it was charged, if the budget holds it. False when it does not:
    /// the caller cancels the job, so no attempt runs beyond the budget.
    func reserveRetry(_ job: JobID) -> Bool {
        guard var reservation = billing.reservations[job], state.jobs[job]?.state == .pending,
              let budget = billing.budgets[reservation.project] else { return true }
        let charged = billing.totals.costMicros(job: job)
        let needed = Money.sum(charged, reservation.attemptMicros)
        guard needed > reservation.micros else { return true }
        let others = billing.outstandingMicros(reservation.project) - max(0, reservation.micros - charged)
        let month = BillingMonth(containing: clock.now())
        guard budget.admits(spentMicros: billing.spentMicros(reservation.project, in: month), reservedMicros: others, requestMicros: reservation.attemptMicros) else {
            return false
        }
        reservation.micros = needed
        billing.reservations[job] = reservation
        return true
    }

    /// A job that left pending and running releases what admission reserved for it.
    func releaseReservation(ifFinished job: JobID) {
        guard billing.reservations[job] != nil, let state = state.jobs[job]?.state, state != .pending && state != .running else { return }
        billing.reservations[job] = nil
    }

    /// One metering pass (each liveness tick): charges every segment that is over, issues the
    /// invoices of months past, and applies budgets' thresholds and limits.
    public func meterRunning() async throws {
        try checkWritable()
        let now = clock.now()
        for allocation in state.allocations.values where billing.isDue(allocation, at: now) {
            guard let metered = metered(allocation) else { continue }
            appendCharges(billing.meter(metered, until: now, ended: false))
        }
        issueInvoices(now: now)
        try enforceBudgets(now: now)
        if !pending.charges.isEmpty || !pending.direct.isEmpty || !pending.events.isEmpty { try await awaitDurable() }
    }

    func issueInvoices(now: Timestamp) {
        let current = BillingMonth(containing: now)
        var due = Set(billing.totals.byProjectMonth.keys.filter { $0.month < current })
        for (project, package) in billing.packages where package.covers(current.previous) {
            due.insert(LedgerTotals.ProjectMonth(project: project, month: current.previous))
        }
        for key in due.sorted(by: { ($0.month, $0.project) < ($1.month, $1.project) })
        where billing.invoices[key] == nil && now.millisecondsSinceEpoch >= key.month.end.millisecondsSinceEpoch + Self.invoiceGrace && projects[key.project] != nil {
            let issued = InvoiceRecord(invoice: billing.invoice(key.project, month: key.month).invoice, issuedAt: now)
            billing.invoices[key] = issued
            pending.direct.append(.finaliseInvoice(issued))
            record(.invoiceIssued(key.project, month: key.month.description, totalMicros: issued.invoice.totalMicros), at: now)
        }
    }

    /// Soft threshold: one warning event a month. Hard limit with `stopSpot`: the project's running
    /// spot work is cancelled (new work is refused at admission).
    func enforceBudgets(now: Timestamp) throws {
        let month = BillingMonth(containing: now)
        for (project, budget) in billing.budgets.sorted(by: { $0.key < $1.key }) {
            let key = LedgerTotals.ProjectMonth(project: project, month: month)
            let spent = billing.spentMicros(project, in: month)
            if spent >= budget.softLimitMicros, !billing.warned.contains(key) {
                billing.warned.insert(key)
                record(.budgetThreshold(project, spentMicros: spent, limitMicros: budget.limitMicros, exhausted: spent >= budget.limitMicros), at: now)
            }
            if budget.stopSpot, spent >= budget.limitMicros, !billing.spotStopped.contains(key) {
                billing.spotStopped.insert(key)
                for job in state.jobs.values.sorted(by: { $0.id < $1.id }) where job.project == project && job.spot && (job.state == .running || job.state == .pending) {
                    try? apply(.cancel(job.id, at: now), now: now, by: "budget")
                }
                wake()
            }
        }
    }

    // MARK: - Admission

    /// The GPU price a task of the group would pay at most: its model's if it named one, else
    /// the dearest model the cluster has (the book's dearest before any node registered).
    func reservationQuantities(_ group: TaskGroup, version: PriceVersion) -> [(SKU, Int64)] {
        var quantities: [(SKU, Int64)] = []
        let milli = group.resources.gpu.milliGPUs
        if milli > 0 {
            var models = Set(state.nodes.flatMap { $0.gpus.map(\.model) })
            if let wanted = group.resources.gpuModel { models = models.filter { GPUModelName.matches(requested: wanted, offered: $0) } }
            if models.isEmpty { models = Set(version.onDemandMicrosPerHour.keys.filter { $0.hasPrefix("gpu:") }.map { String($0.dropFirst(4)) } + [group.resources.gpuModel ?? "any"]) }
            let dearest = models.max { version.onDemandPrice(of: .gpu(model: $0)) < version.onDemandPrice(of: .gpu(model: $1)) } ?? "any"
            quantities.append((.gpu(model: dearest), Int64(milli)))
        }
        if group.resources.cpuMillis > 0 { quantities.append((.cpu, Int64(group.resources.cpuMillis))) }
        if group.resources.memoryMiB > 0 { quantities.append((.memory, Int64(group.resources.memoryMiB))) }
        return quantities
    }

    /// What a job commits to per hour, and for `runtime` (rounded up), at today's prices.
    func costEstimate(of job: Job, runtime: Duration?, now: Timestamp) -> (perHourMicros: Int64, forRuntimeMicros: Int64?) {
        let version = billing.prices.version(at: now)
        let tier: BillingTier = job.spot ? .spot : .onDemand
        var perHour: Int64 = 0, total: Int64 = 0
        for group in job.taskGroups {
            let quantities = reservationQuantities(group, version: version)
            perHour = Money.sum(perHour, Int64(clamping: Int128(Metering.reservationMicros(quantities, tier: tier, milliseconds: 3_600_000, version: version)) * Int128(group.count)))
            if let runtime {
                total = Money.sum(total, Int64(clamping: Int128(Metering.reservationMicros(quantities, tier: tier, milliseconds: runtime.wholeMilliseconds, version: version)) * Int128(group.count)))
            }
        }
        return (perHour, runtime.map { _ in total })
    }

    /// Under a budget: limits the job's run time to the project's default when it gave none
    /// (the agent stops it there), reserves its price × resources × run time, and refuses it
    /// when that does not fit beside what the month spent and what other jobs hold.
    func admit(_ job: inout Job, now: Timestamp) throws(ControlPlaneError) {
        guard let budget = billing.budgets[job.project] else { return }
        if job.runtimeLimit == nil { job.runtimeLimit = .seconds(budget.defaultMaxRuntimeSeconds) }
        let month = BillingMonth(containing: now)
        let reservation = costEstimate(of: job, runtime: job.runtimeLimit, now: now).forRuntimeMicros ?? 0
        let spent = billing.spentMicros(job.project, in: month)
        let held = billing.outstandingMicros(job.project)
        guard budget.admits(spentMicros: spent, reservedMicros: held, requestMicros: reservation) else {
            throw .budgetExhausted("budgetExhausted: this job reserves \(Money.text(reservation)) for its \(job.runtimeLimit!.wholeMilliseconds / 1000) s limit; project \(projects[job.project]?.name ?? "\(job.project)") has spent \(Money.text(spent)) of its \(Money.text(budget.limitMicros)) budget for \(month) and running jobs hold \(Money.text(held)); shorten --max-runtime, ask for less, or raise the budget (`fastgpu budget set`)")
        }
        billing.reservations[job.id] = BillingTable.Reservation(project: job.project, micros: reservation, attemptMicros: reservation)
    }

    // MARK: - Reads and settings for the API

    public func priceBook(by principal: Principal) throws -> [PriceVersion] {
        try requireUser(principal)
        return billing.prices.versions
    }

    /// A new price version (cluster admins), effective from `effectiveAt` (now when absent; never in the past,
    /// so nothing already charged changes price).
    public func setPrices(_ prices: [String: Int64], spotPercent: Int, effectiveAt: Timestamp?, by principal: Principal) async throws -> PriceVersion {
        try checkWritable()
        try requireClusterAdmin(principal)
        if let why = PriceVersion.validate(onDemandMicrosPerHour: prices, spotPercent: spotPercent) { throw ControlPlaneError.invalid(why) }
        let now = clock.now()
        let effective = effectiveAt ?? now
        guard effective >= now else { throw ControlPlaneError.invalid("a price change takes effect now or later, never in the past: what was charged keeps its price") }
        guard effective.millisecondsSinceEpoch <= now.millisecondsSinceEpoch + 366 * 86_400_000 else { throw ControlPlaneError.invalid("effectiveAt must be within a year") }
        let version = billing.prices.add(effectiveAt: effective, onDemandMicrosPerHour: prices, spotPercent: spotPercent)
        pending.direct.append(.savePriceVersion(PriceVersionRecord(version: version, createdAt: now, createdBy: principal.subject)))
        try await awaitDurable()
        return version
    }

    public func budget(project name: String, by principal: Principal) throws -> BudgetView {
        let project = try visibleProject(name, by: principal)
        return budgetView(project)
    }

    func budgetView(_ project: ProjectID) -> BudgetView {
        let month = BillingMonth(containing: clock.now())
        return BudgetView(project: projects[project]?.name ?? "\(project)", month: month, budget: billing.budgets[project],
                          spentMicros: billing.spentMicros(project, in: month), reservedMicros: billing.outstandingMicros(project))
    }

    /// Sets or clears a project's budget: its admins (a budget only ever limits spending).
    public func setBudget(project name: String, _ budget: Budget?, by principal: Principal) async throws -> BudgetView {
        try checkWritable()
        let project = try visibleProject(name, by: principal)
        guard principal.clusterAdmin || role(of: principal, in: project) == .admin else {
            throw ControlPlaneError.forbidden("only an admin of project \(name) sets its budget")
        }
        if let budget, let why = Budget.validate(limitMicros: budget.limitMicros, softPercent: budget.softPercent, defaultMaxRuntimeSeconds: budget.defaultMaxRuntimeSeconds) {
            throw ControlPlaneError.invalid(why)
        }
        billing.budgets[project] = budget
        let key = LedgerTotals.ProjectMonth(project: project, month: BillingMonth(containing: clock.now()))
        billing.warned.remove(key)
        billing.spotStopped.remove(key)
        pending.direct.append(.saveBudget(project, budget))
        try await awaitDurable()
        return budgetView(project)
    }

    /// Sets or clears a project's monthly package (cluster admins: it is a price agreement).
    public func setPackage(project name: String, _ package: BillingPackage?, by principal: Principal) async throws {
        try checkWritable()
        try requireClusterAdmin(principal)
        let project = try visibleProject(name, by: principal)
        if let package {
            guard (0...PriceVersion.maxMicrosPerHour).contains(package.monthlyFeeMicros), (0...10_000_000).contains(package.allowanceGPUHours) else {
                throw ControlPlaneError.invalid("a package's fee must be 0…1,000,000 and its allowance 0…10,000,000 GPU-hours")
            }
        }
        var package = package
        package?.since = billing.packages[project]?.since ?? clock.now()
        billing.packages[project] = package
        pending.direct.append(.savePackage(project, package))
        try await awaitDurable()
    }

    /// Gives a project credit (cluster admins): a trial, or prepaid credit bought for `paidMicros`.
    public func grantCredit(project name: String, kind: CreditKind, amountMicros: Int64, paidMicros: Int64, expiresAt: Timestamp?, by principal: Principal) async throws -> CreditRecord {
        try checkWritable()
        try requireClusterAdmin(principal)
        let project = try visibleProject(name, by: principal)
        guard (1...PriceVersion.maxMicrosPerHour).contains(amountMicros), (0...amountMicros).contains(paidMicros) else {
            throw ControlPlaneError.invalid("a credit's amount must be 0.000001…1,000,000 and what was paid for it 0…its amount")
        }
        let now = clock.now()
        if let expiresAt, expiresAt <= now { throw ControlPlaneError.invalid("the credit would already have expired") }
        let record = CreditRecord(id: billing.nextCreditID, project: project, kind: kind, amountMicros: amountMicros, paidMicros: kind == .trial ? 0 : paidMicros,
                                  grantedAt: now, expiresAt: expiresAt, grantedBy: principal.subject)
        billing.nextCreditID += 1
        billing.credits.append(record)
        pending.direct.append(.saveCredit(record))
        try await awaitDurable()
        return record
    }

    public func credits(project name: String, by principal: Principal) throws -> [CreditRecord] {
        let project = try visibleProject(name, by: principal)
        return billing.credits.filter { $0.project == project }
    }

    /// A project's invoices, newest first: issued ones as issued, the open month as it stands.
    public func invoices(project name: String, by principal: Principal) throws -> [InvoiceView] {
        let project = try visibleProject(name, by: principal)
        let current = BillingMonth(containing: clock.now())
        return billing.months(of: project, current: current).map { month in
            let (invoice, issuedAt) = billing.invoice(project, month: month)
            return InvoiceView(projectName: name, invoice: invoice, issuedAt: issuedAt, package: billing.packages[project])
        }
    }

    public func invoice(project name: String, month: BillingMonth, by principal: Principal) throws -> InvoiceView {
        let project = try visibleProject(name, by: principal)
        let (invoice, issuedAt) = billing.invoice(project, month: month)
        return InvoiceView(projectName: name, invoice: invoice, issuedAt: issuedAt, package: billing.packages[project])
    }

    /// A project's usage between two times from the ledger, with each job's submitter.
    public func usage(project name: String, from: Timestamp, to: Timestamp, by principal: Principal) async throws -> [UsageRow] {
        let project = try visibleProject(name, by: principal)
        let rows = try await store.usage(project: project, from: from, to: to)
        return rows.map { UsageRow(job: $0.job, jobName: state.jobs[$0.job]?.name ?? "", member: state.jobs[$0.job]?.submitter ?? "", line: $0.line, usage: $0.usage) }
    }

    /// What a job would cost and when it would start, without submitting it (`run --dry-run`).
    public func estimate(_ submission: JobSubmission, by principal: Principal) throws -> JobEstimate {
        try requireUser(principal)
        let project = try visibleProject(submission.project, by: principal)
        let now = clock.now()
        var job = Job(id: JobID(nextJobID), name: submission.name, project: project, submitter: principal.subject, priority: submission.priority,
                      spot: submission.spot, taskGroups: submission.taskGroups, runtimeEstimate: submission.runtimeEstimate,
                      runtimeLimit: submission.runtimeLimit, submitTime: now)
        if let why = ClusterState.validate(job) { throw ControlPlaneError.invalid(why) }
        let budget = billing.budgets[project]
        if job.runtimeLimit == nil, let budget { job.runtimeLimit = .seconds(budget.defaultMaxRuntimeSeconds) }
        let cost = costEstimate(of: job, runtime: job.runtimeLimit ?? job.runtimeEstimate, now: now)
        let month = BillingMonth(containing: now)
        let fits = budget.map { $0.admits(spentMicros: billing.spentMicros(project, in: month), reservedMicros: billing.outstandingMicros(project),
                                          requestMicros: cost.forRuntimeMicros ?? 0) }
        // The start: the same scheduler on a copy of the state with the job added.
        var shadow = state
        var start: Timestamp?
        var reason: PendingReason?
        if (try? shadow.apply(.submit(job, launch: submission.launch))) != nil {
            learned.buildTables()
            let scheduling = learned.configuring(configuration.scheduler)
            let filled = learned.filling(shadow, now: now)
            let decideOn = configuration.decidesOnLearnedRuntimes ? filled.state : shadow
            let plan = Scheduler(configuration: scheduling).process(decideOn, now: now)
            if plan.placements.contains(where: { $0.task.job == job.id }) {
                start = now
            } else {
                reason = plan.pending.first { $0.job == job.id }?.reason
                start = StartEstimator(configuration: scheduling).estimatedStarts(state: filled.state, plan: plan, now: now)[job.id]
            }
        }
        return JobEstimate(perHourMicros: cost.perHourMicros, runtime: job.runtimeLimit ?? job.runtimeEstimate, forRuntimeMicros: cost.forRuntimeMicros,
                           budgetAdmits: fits, estimatedStart: start, reason: reason)
    }

    /// Spend per project this month, for `/metrics`.
    public func spendStats() -> [ProjectSpend] {
        let month = BillingMonth(containing: clock.now())
        return projects.values.sorted { $0.id < $1.id }.map { record in
            ProjectSpend(project: record.name, spentMicros: billing.spentMicros(record.id, in: month), limitMicros: billing.budgets[record.id]?.limitMicros,
                         softLimitMicros: billing.budgets[record.id]?.softLimitMicros,
                         reservedMicros: billing.outstandingMicros(record.id))
        }
    }

    /// A job's cost so far (live while it runs).
    func costMicros(of job: JobID) -> Int64 { billing.totals.costMicros(job: job) }
}

/// A project's budget and where the month stands against it.
public struct BudgetView: Hashable, Sendable {
    public var project: String
    public var month: BillingMonth
    public var budget: Budget?
    public var spentMicros: Int64
    public var reservedMicros: Int64
}

public struct InvoiceView: Hashable, Sendable {
    public var projectName: String
    public var invoice: Invoice
    /// Nil while the month is open.
    public var issuedAt: Timestamp?
    public var package: BillingPackage?
}

/// One job's use of one invoice line over a period.
public struct UsageRow: Hashable, Sendable {
    public var job: JobID
    public var jobName: String
    public var member: String
    public var line: LineKey
    public var usage: Int64
}

public struct JobEstimate: Hashable, Sendable {
    public var perHourMicros: Int64
    public var runtime: Duration?
    public var forRuntimeMicros: Int64?
    /// Nil without a budget.
    public var budgetAdmits: Bool?
    public var estimatedStart: Timestamp?
    public var reason: PendingReason?
}

public struct ProjectSpend: Hashable, Sendable {
    public var project: String
    public var spentMicros: Int64
    public var limitMicros: Int64?
    /// Where the budget's soft threshold warns.
    public var softLimitMicros: Int64? = nil
    public var reservedMicros: Int64
}
