import FastGPUControlPlane
import FastGPUModel
import FastGPUStore
import FastGPUWire
import Foundation
import Hummingbird
import HTTPTypes

extension APIServer {
    /// Money: the price book, a project's budget, package, credits, usage and invoices, and the
    /// cost and start of a job before it is submitted.
    func billingRoutes(_ route: RouteBuilder) {
        let cp = controlPlane
        let clock = self.clock

        route(.get, "/v1/prices") { _, context in
            let versions = try await cp.priceBook(by: try context.requirePrincipal())
            let now = clock.now()
            let current = PriceBook(versions: versions).version(at: now).version
            return try json(PriceBookWire(current: current, items: versions.map(Wire.priceVersion)))
        }
        route(.post, "/v1/prices") { request, context in
            let principal = try context.requirePrincipal()
            var request = request
            let body = try decode(SetPricesBody.self, from: try await body(of: &request))
            let effective = try body.effectiveAt.map { try parseTime($0, field: "effectiveAt") }
            let version = try await cp.setPrices(body.prices, spotPercent: body.spotPercent ?? PriceBook.standard.spotPercent, effectiveAt: effective, by: principal)
            return try json(Wire.priceVersion(version), status: .created)
        }
        route(.get, "/v1/projects/{name}/budget") { _, context in
            let principal = try context.requirePrincipal()
            return try json(Wire.budget(try await cp.budget(project: try pathParameter(context, "name"), by: principal)))
        }
        route(.put, "/v1/projects/{name}/budget") { request, context in
            let principal = try context.requirePrincipal()
            var request = request
            let body = try decode(SetBudgetBody.self, from: try await body(of: &request))
            let defaults = Budget(limitMicros: 0)
            let budget = Budget(limitMicros: body.limitMicros, softPercent: body.softPercent ?? defaults.softPercent, stopSpot: body.stopSpot ?? false,
                                defaultMaxRuntimeSeconds: body.defaultMaxRuntimeSeconds ?? defaults.defaultMaxRuntimeSeconds)
            return try json(Wire.budget(try await cp.setBudget(project: try pathParameter(context, "name"), budget, by: principal)))
        }
        route(.delete, "/v1/projects/{name}/budget") { _, context in
            let principal = try context.requirePrincipal()
            return try json(Wire.budget(try await cp.setBudget(project: try pathParameter(context, "name"), nil, by: principal)))
        }
        route(.put, "/v1/projects/{name}/package") { request, context in
            let principal = try context.requirePrincipal()
            var request = request
            let body = try decode(PackageBody.self, from: try await body(of: &request))
            try await cp.setPackage(project: try pathParameter(context, "name"),
                                    BillingPackage(monthlyFeeMicros: body.monthlyFeeMicros, allowanceGPUHours: body.allowanceGPUHours), by: principal)
            return Response(status: .noContent)
        }
        route(.delete, "/v1/projects/{name}/package") { _, context in
            let principal = try context.requirePrincipal()
            try await cp.setPackage(project: try pathParameter(context, "name"), nil, by: principal)
            return Response(status: .noContent)
        }
        route(.get, "/v1/projects/{name}/quota") { _, context in
            let principal = try context.requirePrincipal()
            return try json(Wire.quota(try await cp.quota(project: try pathParameter(context, "name"), by: principal)))
        }
        route(.put, "/v1/projects/{name}/quota") { request, context in
            let principal = try context.requirePrincipal()
            var request = request
            let body = try decode(SetQuotaBody.self, from: try await body(of: &request))
            let guarantees: [Quota.Guarantee]
            switch body.guaranteeList() {
            case .success(let list): guarantees = list.map { Quota.Guarantee(gpuModel: $0.gpuModel, milliGPUs: $0.milliGPUs) }
            case .failure(let error): throw APIProblem(status: .badRequest, title: "Bad request", detail: error.message, field: "guarantees")
            }
            let quota = Quota(guarantees: guarantees, borrowingLimitMilliGPUs: body.borrowingLimitMilliGPUs, cohort: body.cohort)
            return try json(Wire.quota(try await cp.setQuota(project: try pathParameter(context, "name"), quota, by: principal)))
        }
        route(.delete, "/v1/projects/{name}/quota") { _, context in
            let principal = try context.requirePrincipal()
            return try json(Wire.quota(try await cp.setQuota(project: try pathParameter(context, "name"), nil, by: principal)))
        }
        route(.get, "/v1/projects/{name}/credits") { _, context in
            let principal = try context.requirePrincipal()
            return try json(CreditListWire(items: try await cp.credits(project: try pathParameter(context, "name"), by: principal).map(Wire.credit)))
        }
        route(.post, "/v1/projects/{name}/credits") { request, context in
            let principal = try context.requirePrincipal()
            var request = request
            let body = try decode(GrantCreditBody.self, from: try await body(of: &request))
            guard let kind = CreditKind(rawValue: body.kind) else {
                throw APIProblem(status: .badRequest, title: "Bad request", detail: "kind must be trial or prepaid", field: "kind")
            }
            let expires = try body.expiresAt.map { try parseTime($0, field: "expiresAt") }
            let record = try await cp.grantCredit(project: try pathParameter(context, "name"), kind: kind, amountMicros: body.amountMicros,
                                                  paidMicros: body.paidMicros ?? body.amountMicros, expiresAt: expires, by: principal)
            return try json(Wire.credit(record), status: .created)
        }
        route(.get, "/v1/projects/{name}/invoices") { _, context in
            let principal = try context.requirePrincipal()
            return try json(InvoiceListWire(items: try await cp.invoices(project: try pathParameter(context, "name"), by: principal).map(Wire.invoice)))
        }
        route(.get, "/v1/projects/{name}/invoices/{month}") { _, context in
            let principal = try context.requirePrincipal()
            let text = try pathParameter(context, "month")
            guard let month = BillingMonth(text) else {
                throw APIProblem(status: .badRequest, title: "Bad request", detail: "a month is YYYY-MM", field: "month")
            }
            return try json(Wire.invoice(try await cp.invoice(project: try pathParameter(context, "name"), month: month, by: principal)))
        }
        route(.get, "/v1/projects/{name}/usage") { request, context in
            let principal = try context.requirePrincipal()
            let query = request.uri.queryParameters
            let now = clock.now()
            let from = try query["from"].map { try parseTime(String($0), field: "from") } ?? BillingMonth(containing: now).start
            let to = try query["to"].map { try parseTime(String($0), field: "to") } ?? Timestamp(millisecondsSinceEpoch: now.millisecondsSinceEpoch + 1)
            guard from < to else { throw APIProblem(status: .badRequest, title: "Bad request", detail: "from must be before to", field: "from") }
            guard to.millisecondsSinceEpoch - from.millisecondsSinceEpoch <= 400 * 86_400_000 else {
                throw APIProblem(status: .badRequest, title: "Bad request", detail: "a usage report spans at most 400 days", field: "to")
            }
            let by = query["by"].map(String.init) ?? "sku"
            guard ["sku", "job", "member"].contains(by) else {
                throw APIProblem(status: .badRequest, title: "Bad request", detail: "by must be sku, job or member", field: "by")
            }
            let name = try pathParameter(context, "name")
            let rows = try await cp.usage(project: name, from: from, to: to, by: principal)
            return try json(Wire.usageReport(project: name, from: from, to: to, by: by, rows: rows))
        }
        route(.post, "/v1/jobs/estimate") { request, context in
            let principal = try context.requirePrincipal()
            var request = request
            let body = try decode(JobSubmissionBody.self, from: try await body(of: &request))
            let estimate = try await cp.estimate(try body.submission(), by: principal)
            return try json(Wire.estimate(estimate, now: clock.now()))
        }
    }
}

/// An RFC 3339 time (`2026-12-01T00:00:00Z`, fractions allowed) or a date (`2026-12-01`, its midnight UTC).
func parseTime(_ text: String, field: String) throws -> Timestamp {
    guard text.count <= 40 else { throw APIProblem(status: .badRequest, title: "Bad request", detail: "\(field) is too long", field: field) }
    let withFraction = ISO8601DateFormatter()
    withFraction.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
    let plain = ISO8601DateFormatter()
    let day = ISO8601DateFormatter()
    day.formatOptions = [.withFullDate]
    guard let date = withFraction.date(from: text) ?? plain.date(from: text) ?? day.date(from: text) else {
        throw APIProblem(status: .badRequest, title: "Bad request", detail: "\(field) must be an RFC 3339 time (2026-12-01T00:00:00Z) or a date (2026-12-01)", field: field)
    }
    return Timestamp(millisecondsSinceEpoch: Int64((date.timeIntervalSince1970 * 1000).rounded()))
}

extension Wire {
    static func priceVersion(_ version: PriceVersion) -> PriceVersionWire {
        PriceVersionWire(version: version.version, effectiveAt: time(version.effectiveAt), prices: version.onDemandMicrosPerHour, spotPercent: version.spotPercent)
    }

    static func quota(_ view: ControlPlane.QuotaView) -> QuotaWire {
        QuotaWire(project: view.project,
                  guarantees: zip(view.quota?.guarantees ?? [], view.guaranteedInUse).map { QuotaWire.Guarantee(gpuModel: $0.gpuModel, milliGPUs: $0.milliGPUs, inUseMilliGPUs: $1) },
                  guaranteedMilliGPUs: view.quota?.guaranteedMilliGPUs, borrowingLimitMilliGPUs: view.quota?.borrowingLimitMilliGPUs, cohort: view.quota?.cohort,
                  guaranteedInUseMilliGPUs: view.guaranteedInUseMilliGPUs, inUseMilliGPUs: view.inUseMilliGPUs)
    }

    static func budget(_ view: BudgetView) -> BudgetWire {
        BudgetWire(project: view.project, month: view.month.description, limitMicros: view.budget?.limitMicros, softPercent: view.budget?.softPercent,
                   stopSpot: view.budget?.stopSpot, defaultMaxRuntimeSeconds: view.budget?.defaultMaxRuntimeSeconds,
                   spentMicros: view.spentMicros, reservedMicros: view.reservedMicros)
    }

    static func credit(_ record: CreditRecord) -> CreditWire {
        CreditWire(id: record.id, kind: record.kind.rawValue, amountMicros: record.amountMicros, paidMicros: record.paidMicros,
                   grantedAt: time(record.grantedAt), expiresAt: record.expiresAt.map(time), grantedBy: record.grantedBy)
    }

    static func invoice(_ view: InvoiceView) -> InvoiceWire {
        let invoice = view.invoice
        return InvoiceWire(
            project: view.projectName, month: invoice.month.description, status: view.issuedAt == nil ? "open" : "final", issuedAt: view.issuedAt.map(time),
            lines: invoice.lines.map { line in
                InvoiceLineWire(sku: line.key.sku.description, tier: line.key.tier.rawValue, priceVersion: line.key.priceVersion,
                                unitPriceMicrosPerHour: line.key.unitPriceMicrosPerHour, unit: line.key.sku.unit, milliUnitHours: line.milliUnitHours,
                                amountMicros: line.amountMicros)
            },
            usageMicros: invoice.usageMicros, packageFeeMicros: invoice.packageFeeMicros, trialAppliedMicros: invoice.trialAppliedMicros,
            allowanceAppliedMicros: invoice.allowanceAppliedMicros, allowanceUsedMilliGPUHours: invoice.allowanceUsed / 3_600_000,
            prepaidAppliedMicros: invoice.prepaidAppliedMicros, totalMicros: invoice.totalMicros)
    }

    /// Groups a project's usage by SKU and tier, job or member. Money is rounded once per group's
    /// line, as on the invoice.
    static func usageReport(project: String, from: Timestamp, to: Timestamp, by: String, rows: [UsageRow]) -> UsageReportWire {
        var groups: [String: (name: String?, lines: [LineKey: Int64])] = [:]
        for row in rows {
            let key: String
            var name: String?
            switch by {
            case "job": key = "\(row.job)"; name = row.jobName
            case "member": key = row.member
            default: key = "\(row.line.sku) \(row.line.tier.rawValue)"
            }
            groups[key, default: (name, [:])].lines[row.line, default: 0] += row.usage
        }
        let gpuHours = { (lines: [LineKey: Int64]) -> Int64 in
            lines.reduce(0) { total, entry in if case .gpu = entry.key.sku { total + entry.value / 3_600_000 } else { total } }
        }
        let items = groups.map { key, group in
            UsageItemWire(key: key, name: group.name, milliGPUHours: gpuHours(group.lines), amountMicros: LedgerTotals.amountMicros(group.lines))
        }.sorted { ($0.amountMicros, $1.key) > ($1.amountMicros, $0.key) }
        var all: [LineKey: Int64] = [:]
        for row in rows { all[row.line, default: 0] += row.usage }
        return UsageReportWire(project: project, from: time(from), to: time(to), by: by, items: items, milliGPUHours: gpuHours(all), amountMicros: LedgerTotals.amountMicros(all))
    }

    static func estimate(_ estimate: JobEstimate, now: Timestamp) -> JobEstimateWire {
        JobEstimateWire(perHourMicros: estimate.perHourMicros, runtimeSeconds: estimate.runtime.map { $0.wholeMilliseconds / 1000 },
                        forRuntimeMicros: estimate.forRuntimeMicros, budgetAdmits: estimate.budgetAdmits, estimatedStart: estimate.estimatedStart.map(time),
                        reason: estimate.reason.map { $0.explanation(now: now) })
    }
}
