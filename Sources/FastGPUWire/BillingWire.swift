// Money (`/v1/prices`, a project's budget, package, credits, usage and invoices, `/v1/jobs/estimate`).
// Amounts are integers in micro-units of the cluster's currency (1 = 1,000,000), as the ledger
// keeps them: never floating point.

package struct PriceVersionWire: Codable, Sendable, Equatable {
    package var version: Int
    package var effectiveAt: String
    /// SKU (`gpu:H100`, `gpu`, `cpu`, `memory`) → on-demand micro-units per unit-hour.
    package var prices: [String: Int64]
    package var spotPercent: Int

    package init(version: Int, effectiveAt: String, prices: [String: Int64], spotPercent: Int) {
        self.version = version
        self.effectiveAt = effectiveAt
        self.prices = prices
        self.spotPercent = spotPercent
    }
}

package struct PriceBookWire: Codable, Sendable, Equatable {
    /// The version in effect now.
    package var current: Int
    package var items: [PriceVersionWire]

    package init(current: Int, items: [PriceVersionWire]) {
        self.current = current
        self.items = items
    }
}

package struct SetPricesBody: Codable, Sendable, Equatable {
    package var prices: [String: Int64]
    package var spotPercent: Int?
    /// RFC 3339; now when absent.
    package var effectiveAt: String?

    package enum CodingKeys: String, CodingKey, CaseIterable { case prices, spotPercent, effectiveAt }

    package init(from decoder: any Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        prices = try c.decode([String: Int64].self, forKey: .prices)
        spotPercent = try c.decodeIfPresent(Int.self, forKey: .spotPercent)
        effectiveAt = try c.decodeIfPresent(String.self, forKey: .effectiveAt)
    }

    package init(prices: [String: Int64], spotPercent: Int? = nil, effectiveAt: String? = nil) {
        self.prices = prices
        self.spotPercent = spotPercent
        self.effectiveAt = effectiveAt
    }
}

package struct BudgetWire: Codable, Sendable, Equatable {
    package var project: String
    package var month: String
    /// Nil when the project has no budget.
    package var limitMicros: Int64?
    package var softPercent: Int?
    package var stopSpot: Bool?
    package var defaultMaxRuntimeSeconds: Int64?
    package var spentMicros: Int64
    /// What running and waiting jobs still hold of their reservations.
    package var reservedMicros: Int64

    package init(project: String, month: String, limitMicros: Int64? = nil, softPercent: Int? = nil, stopSpot: Bool? = nil, defaultMaxRuntimeSeconds: Int64? = nil,
                 spentMicros: Int64, reservedMicros: Int64) {
        self.project = project
        self.month = month
        self.limitMicros = limitMicros
        self.softPercent = softPercent
        self.stopSpot = stopSpot
        self.defaultMaxRuntimeSeconds = defaultMaxRuntimeSeconds
        self.spentMicros = spentMicros
        self.reservedMicros = reservedMicros
    }
}

package struct SetBudgetBody: Codable, Sendable, Equatable {
    package var limitMicros: Int64
    package var softPercent: Int?
    package var stopSpot: Bool?
    package var defaultMaxRuntimeSeconds: Int64?

    package enum CodingKeys: String, CodingKey, CaseIterable { case limitMicros, softPercent, stopSpot, defaultMaxRuntimeSeconds }

    package init(from decoder: any Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        limitMicros = try c.decode(Int64.self, forKey: .limitMicros)
        softPercent = try c.decodeIfPresent(Int.self, forKey: .softPercent)
        stopSpot = try c.decodeIfPresent(Bool.self, forKey: .stopSpot)
        defaultMaxRuntimeSeconds = try c.decodeIfPresent(Int64.self, forKey: .defaultMaxRuntimeSeconds)
    }

    package init(limitMicros: Int64, softPercent: Int? = nil, stopSpot: Bool? = nil, defaultMaxRuntimeSeconds: Int64? = nil) {
        self.limitMicros = limitMicros
        self.softPercent = softPercent
        self.stopSpot = stopSpot
        self.defaultMaxRuntimeSeconds = defaultMaxRuntimeSeconds
    }
}

package struct PackageBody: Codable, Sendable, Equatable {
    package var monthlyFeeMicros: Int64
    package var allowanceGPUHours: Int64

    package enum CodingKeys: String, CodingKey, CaseIterable { case monthlyFeeMicros, allowanceGPUHours }

    package init(from decoder: any Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        monthlyFeeMicros = try c.decode(Int64.self, forKey: .monthlyFeeMicros)
        allowanceGPUHours = try c.decode(Int64.self, forKey: .allowanceGPUHours)
    }

    package init(monthlyFeeMicros: Int64, allowanceGPUHours: Int64) {
        self.monthlyFeeMicros = monthlyFeeMicros
        self.allowanceGPUHours = allowanceGPUHours
    }
}

package struct CreditWire: Codable, Sendable, Equatable {
    package var id: UInt64
    package var kind: String
    package var amountMicros: Int64
    package var paidMicros: Int64
    package var grantedAt: String
    package var expiresAt: String?
    package var grantedBy: String

    package init(id: UInt64, kind: String, amountMicros: Int64, paidMicros: Int64, grantedAt: String, expiresAt: String?, grantedBy: String) {
        self.id = id
        self.kind = kind
        self.amountMicros = amountMicros
        self.paidMicros = paidMicros
        self.grantedAt = grantedAt
        self.expiresAt = expiresAt
        self.grantedBy = grantedBy
    }
}

package struct CreditListWire: Codable, Sendable, Equatable {
    package var items: [CreditWire]
    package init(items: [CreditWire]) { self.items = items }
}

package struct GrantCreditBody: Codable, Sendable, Equatable {
    /// `trial` or `prepaid`.
    package var kind: String
    package var amountMicros: Int64
    /// What was paid for prepaid credit (less than its amount when bought at a discount).
    package var paidMicros: Int64?
    package var expiresAt: String?

    package enum CodingKeys: String, CodingKey, CaseIterable { case kind, amountMicros, paidMicros, expiresAt }

    package init(from decoder: any Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        kind = try c.decode(String.self, forKey: .kind)
        amountMicros = try c.decode(Int64.self, forKey: .amountMicros)
        paidMicros = try c.decodeIfPresent(Int64.self, forKey: .paidMicros)
        expiresAt = try c.decodeIfPresent(String.self, forKey: .expiresAt)
    }

    package init(kind: String, amountMicros: Int64, paidMicros: Int64? = nil, expiresAt: String? = nil) {
        self.kind = kind
        self.amountMicros = amountMicros
        self.paidMicros = paidMicros
        self.expiresAt = expiresAt
    }
}

package struct InvoiceLineWire: Codable, Sendable, Equatable {
    package var sku: String
    package var tier: String
    package var priceVersion: Int
    package var unitPriceMicrosPerHour: Int64
    /// `GPU`, `core` or `GiB`.
    package var unit: String
    /// Unit-hours in thousandths (GPU-hours × 1000 for a GPU line).
    package var milliUnitHours: Int64
    package var amountMicros: Int64

    package init(sku: String, tier: String, priceVersion: Int, unitPriceMicrosPerHour: Int64, unit: String, milliUnitHours: Int64, amountMicros: Int64) {
        self.sku = sku
        self.tier = tier
        self.priceVersion = priceVersion
        self.unitPriceMicrosPerHour = unitPriceMicrosPerHour
        self.unit = unit
        self.milliUnitHours = milliUnitHours
        self.amountMicros = amountMicros
    }
}

package struct InvoiceWire: Codable, Sendable, Equatable {
    package var project: String
    package var month: String
    /// `open` (the month as it stands) or `final` (issued; never changes).
    package var status: String
    package var issuedAt: String?
    package var lines: [InvoiceLineWire]
    package var usageMicros: Int64
    package var packageFeeMicros: Int64
    package var trialAppliedMicros: Int64
    package var allowanceAppliedMicros: Int64
    /// GPU-hours × 1000 of the package's allowance used.
    package var allowanceUsedMilliGPUHours: Int64
    package var prepaidAppliedMicros: Int64
    package var totalMicros: Int64

    package init(project: String, month: String, status: String, issuedAt: String?, lines: [InvoiceLineWire], usageMicros: Int64, packageFeeMicros: Int64,
                 trialAppliedMicros: Int64, allowanceAppliedMicros: Int64, allowanceUsedMilliGPUHours: Int64, prepaidAppliedMicros: Int64, totalMicros: Int64) {
        self.project = project
        self.month = month
        self.status = status
        self.issuedAt = issuedAt
        self.lines = lines
        self.usageMicros = usageMicros
        self.packageFeeMicros = packageFeeMicros
        self.trialAppliedMicros = trialAppliedMicros
        self.allowanceAppliedMicros = allowanceAppliedMicros
        self.allowanceUsedMilliGPUHours = allowanceUsedMilliGPUHours
        self.prepaidAppliedMicros = prepaidAppliedMicros
        self.totalMicros = totalMicros
    }
}

package struct InvoiceListWire: Codable, Sendable, Equatable {
    package var items: [InvoiceWire]
    package init(items: [InvoiceWire]) { self.items = items }
}

/// One group of a usage report: a SKU and tier, a job, or a member.
package struct UsageItemWire: Codable, Sendable, Equatable {
    package var key: String
    /// A job's name (by job).
    package var name: String?
    /// GPU-hours × 1000.
    package var milliGPUHours: Int64
    package var amountMicros: Int64

    package init(key: String, name: String? = nil, milliGPUHours: Int64, amountMicros: Int64) {
        self.key = key
        self.name = name
        self.milliGPUHours = milliGPUHours
        self.amountMicros = amountMicros
    }
}

package struct UsageReportWire: Codable, Sendable, Equatable {
    package var project: String
    package var from: String
    package var to: String
    /// `sku`, `job` or `member`.
    package var by: String
    package var items: [UsageItemWire]
    package var milliGPUHours: Int64
    package var amountMicros: Int64

    package init(project: String, from: String, to: String, by: String, items: [UsageItemWire], milliGPUHours: Int64, amountMicros: Int64) {
        self.project = project
        self.from = from
        self.to = to
        self.by = by
        self.items = items
        self.milliGPUHours = milliGPUHours
        self.amountMicros = amountMicros
    }
}

/// What `run --dry-run` prints: the cost and the estimated start of a job not submitted.
package struct JobEstimateWire: Codable, Sendable, Equatable {
    package var perHourMicros: Int64
    /// The run time the cost is for: its max runtime (the budget's default when it gave none), else its estimate.
    package var runtimeSeconds: Int64?
    package var forRuntimeMicros: Int64?
    /// Whether the project's budget would admit it now; absent without a budget.
    package var budgetAdmits: Bool?
    /// Now when it would be placed at once; absent when no estimate can be made.
    package var estimatedStart: String?
    /// Why it would wait, as `fastgpu jobs why` says it.
    package var reason: String?

    package init(perHourMicros: Int64, runtimeSeconds: Int64?, forRuntimeMicros: Int64?, budgetAdmits: Bool?, estimatedStart: String?, reason: String?) {
        self.perHourMicros = perHourMicros
        self.runtimeSeconds = runtimeSeconds
        self.forRuntimeMicros = forRuntimeMicros
        self.budgetAdmits = budgetAdmits
        self.estimatedStart = estimatedStart
        self.reason = reason
    }
}

/// A project's quota (`/v1/projects/{name}/quota`): guaranteed GPUs per model (or of any), how
/// many more it may borrow, the cohort it lends to, and what it holds now. GPUs in thousandths,
/// as shares count.
package struct QuotaWire: Codable, Sendable, Equatable {
    package struct Guarantee: Codable, Sendable, Equatable {
        /// Absent: GPUs of any model.
        package var gpuModel: String?
        package var milliGPUs: Int
        /// Work of the project this guarantee covers, as much of it as the guarantee holds.
        package var inUseMilliGPUs: Int

        package init(gpuModel: String?, milliGPUs: Int, inUseMilliGPUs: Int) {
            self.gpuModel = gpuModel
            self.milliGPUs = milliGPUs
            self.inUseMilliGPUs = inUseMilliGPUs
        }
    }

    package var project: String
    /// Empty: no quota.
    package var guarantees: [Guarantee]
    /// All guarantees together (absent: no quota).
    package var guaranteedMilliGPUs: Int?
    /// Absent: as much as is idle.
    package var borrowingLimitMilliGPUs: Int?
    /// Absent: the project lends to, and borrows from, the whole cluster.
    package var cohort: String?
    package var guaranteedInUseMilliGPUs: Int
    package var inUseMilliGPUs: Int

    package init(project: String, guarantees: [Guarantee], guaranteedMilliGPUs: Int?, borrowingLimitMilliGPUs: Int?, cohort: String?,
                 guaranteedInUseMilliGPUs: Int, inUseMilliGPUs: Int) {
        self.project = project
        self.guarantees = guarantees
        self.guaranteedMilliGPUs = guaranteedMilliGPUs
        self.borrowingLimitMilliGPUs = borrowingLimitMilliGPUs
        self.cohort = cohort
        self.guaranteedInUseMilliGPUs = guaranteedInUseMilliGPUs
        self.inUseMilliGPUs = inUseMilliGPUs
    }
}

/// `PUT /v1/projects/{name}/quota`: one guarantee (`gpuModel`, `guaranteedMilliGPUs`) or several
/// (`guarantees`, one per model), a borrowing limit and a cohort.
package struct SetQuotaBody: Codable, Sendable, Equatable {
    package struct Guarantee: Codable, Sendable, Equatable {
        package var gpuModel: String?
        package var milliGPUs: Int

        package enum CodingKeys: String, CodingKey, CaseIterable { case gpuModel, milliGPUs }

        package init(from decoder: any Decoder) throws {
            let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
            gpuModel = try c.decodeIfPresent(String.self, forKey: .gpuModel)
            milliGPUs = try c.decode(Int.self, forKey: .milliGPUs)
        }

        package init(gpuModel: String?, milliGPUs: Int) {
            self.gpuModel = gpuModel
            self.milliGPUs = milliGPUs
        }
    }

    package var gpuModel: String?
    package var guaranteedMilliGPUs: Int?
    package var guarantees: [Guarantee]?
    package var borrowingLimitMilliGPUs: Int?
    package var cohort: String?

    package enum CodingKeys: String, CodingKey, CaseIterable { case gpuModel, guaranteedMilliGPUs, guarantees, borrowingLimitMilliGPUs, cohort }

    package init(from decoder: any Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        gpuModel = try c.decodeIfPresent(String.self, forKey: .gpuModel)
        guaranteedMilliGPUs = try c.decodeIfPresent(Int.self, forKey: .guaranteedMilliGPUs)
        guarantees = try c.decodeIfPresent([Guarantee].self, forKey: .guarantees)
        borrowingLimitMilliGPUs = try c.decodeIfPresent(Int.self, forKey: .borrowingLimitMilliGPUs)
        cohort = try c.decodeIfPresent(String.self, forKey: .cohort)
    }

    package init(gpuModel: String? = nil, guaranteedMilliGPUs: Int, borrowingLimitMilliGPUs: Int? = nil, cohort: String? = nil) {
        self.gpuModel = gpuModel
        self.guaranteedMilliGPUs = guaranteedMilliGPUs
        self.borrowingLimitMilliGPUs = borrowingLimitMilliGPUs
        self.cohort = cohort
    }

    package init(guarantees: [Guarantee], borrowingLimitMilliGPUs: Int? = nil, cohort: String? = nil) {
        self.guarantees = guarantees
        self.borrowingLimitMilliGPUs = borrowingLimitMilliGPUs
        self.cohort = cohort
    }

    /// The guarantees the body gives, or why it gives none that can be read.
    package func guaranteeList() -> Result<[(gpuModel: String?, milliGPUs: Int)], SetQuotaBodyError> {
        switch (guarantees, guaranteedMilliGPUs) {
        case (let list?, nil) where gpuModel == nil: .success(list.map { ($0.gpuModel, $0.milliGPUs) })
        case (nil, let milli?): .success([(gpuModel, milli)])
        case (nil, nil): .failure(SetQuotaBodyError(message: "give guaranteedMilliGPUs (with gpuModel) or guarantees"))
        default: .failure(SetQuotaBodyError(message: "give guaranteedMilliGPUs (with gpuModel) or guarantees, not both"))
        }
    }
}

package struct SetQuotaBodyError: Error, Sendable { package var message: String }
