package import FastGPUWire
import NIOHTTP1

// Money and quotas: prices, budgets, packages, credits, invoices, usage, job estimates, quotas.
extension FastGPUClient {
    package func prices() async throws -> PriceBookWire { try await call(.GET, "/v1/prices") }

    package func setPrices(_ body: SetPricesBody) async throws -> PriceVersionWire { try await call(.POST, "/v1/prices", body: body) }

    package func budget(project: String) async throws -> BudgetWire { try await call(.GET, "/v1/projects/\(Self.escape(project))/budget") }

    package func setBudget(project: String, _ body: SetBudgetBody) async throws -> BudgetWire {
        try await call(.PUT, "/v1/projects/\(Self.escape(project))/budget", body: body)
    }

    package func removeBudget(project: String) async throws -> BudgetWire { try await call(.DELETE, "/v1/projects/\(Self.escape(project))/budget") }

    package func setPackage(project: String, _ body: PackageBody) async throws {
        let _: NoContent = try await call(.PUT, "/v1/projects/\(Self.escape(project))/package", body: body)
    }

    package func removePackage(project: String) async throws {
        let _: NoContent = try await call(.DELETE, "/v1/projects/\(Self.escape(project))/package")
    }

    package func quota(project: String) async throws -> QuotaWire { try await call(.GET, "/v1/projects/\(Self.escape(project))/quota") }

    package func setQuota(project: String, _ body: SetQuotaBody) async throws -> QuotaWire {
        try await call(.PUT, "/v1/projects/\(Self.escape(project))/quota", body: body)
    }

    package func removeQuota(project: String) async throws -> QuotaWire { try await call(.DELETE, "/v1/projects/\(Self.escape(project))/quota") }

    package func credits(project: String) async throws -> CreditListWire { try await call(.GET, "/v1/projects/\(Self.escape(project))/credits") }

    package func grantCredit(project: String, _ body: GrantCreditBody) async throws -> CreditWire {
        try await call(.POST, "/v1/projects/\(Self.escape(project))/credits", body: body)
    }

    package func invoices(project: String) async throws -> InvoiceListWire { try await call(.GET, "/v1/projects/\(Self.escape(project))/invoices") }

    package func invoice(project: String, month: String) async throws -> InvoiceWire {
        try await call(.GET, "/v1/projects/\(Self.escape(project))/invoices/\(Self.escape(month))")
    }

    package func usage(project: String, from: String?, to: String?, by: String) async throws -> UsageReportWire {
        var items = [("by", by)]
        if let from { items.append(("from", from)) }
        if let to { items.append(("to", to)) }
        return try await call(.GET, "/v1/projects/\(Self.escape(project))/usage" + Self.queryString(items))
    }

    package func estimate(_ body: JobSubmissionBody) async throws -> JobEstimateWire { try await call(.POST, "/v1/jobs/estimate", body: body) }
}
