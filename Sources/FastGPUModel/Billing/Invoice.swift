/// A monthly package: a fixed fee for an allowance of GPU-hours; use beyond it is billed at
/// the on-demand price.
public struct BillingPackage: Hashable, Sendable, Codable {
    public var monthlyFeeMicros: Int64
    public var allowanceGPUHours: Int64
    /// When the project went on the package: months that ended before it pay no fee.
    public var since: Timestamp

    public init(monthlyFeeMicros: Int64, allowanceGPUHours: Int64, since: Timestamp = .zero) {
        self.monthlyFeeMicros = monthlyFeeMicros
        self.allowanceGPUHours = allowanceGPUHours
        self.since = since
    }

    /// Whether it covered any of `month`.
    public func covers(_ month: BillingMonth) -> Bool { since < month.end }

    /// The allowance in milli-GPU-milliseconds, the GPU lines' usage unit.
    public var allowanceUsage: Int64 { allowanceGPUHours.multipliedReportingOverflow(by: 3_600_000_000).overflow ? .max : allowanceGPUHours * 3_600_000_000 }
}

/// Money given to a project ahead of its use.
public enum CreditKind: String, Hashable, Sendable, Codable, CaseIterable {
    /// Free credit for a new project; gone when it expires.
    case trial
    /// Credit bought ahead, usually at a discount (pay 8,000 for 10,000).
    case prepaid
}

/// What is left of a project's credits as an invoice is computed.
public struct CreditBalances: Hashable, Sendable {
    public var trialMicros: Int64
    public var prepaidMicros: Int64

    public init(trialMicros: Int64 = 0, prepaidMicros: Int64 = 0) {
        self.trialMicros = trialMicros
        self.prepaidMicros = prepaidMicros
    }
}

/// One line of an invoice: a SKU in a tier at one price, its usage and its money.
public struct InvoiceLine: Hashable, Sendable {
    public var key: LineKey
    /// Sub-unit-milliseconds (milli-GPU-ms, milli-core-ms, MiB-ms).
    public var usage: Int64
    public var amountMicros: Int64

    public init(key: LineKey, usage: Int64) {
        self.key = key
        self.usage = usage
        amountMicros = key.amountMicros(usage: usage)
    }

    /// Unit-hours in thousandths (GPU-hours for a GPU line), rounded down: for people.
    public var milliUnitHours: Int64 { Int64(Int128(usage) * 1000 / Int128(key.sku.usageDivisor)) }
}

/// A project's bill for one month: its lines, the package fee, the credits applied in their
/// order (trial, then the package's allowance, then prepaid), and what is left to pay.
///
/// Invariants: `usageMicros` is the sum of the lines' amounts, each rounded once;
/// `totalMicros = packageFeeMicros + usageMicros − trial − allowance − prepaid ≥ packageFeeMicros`;
/// no credit is applied beyond what is left to cover.
public struct Invoice: Hashable, Sendable {
    public var project: ProjectID
    public var month: BillingMonth
    public var lines: [InvoiceLine]
    public var packageFeeMicros: Int64
    public var usageMicros: Int64
    public var trialAppliedMicros: Int64
    public var allowanceAppliedMicros: Int64
    /// How much of the package's allowance the month used, in milli-GPU-milliseconds.
    public var allowanceUsed: Int64
    public var prepaidAppliedMicros: Int64
    public var totalMicros: Int64

    /// Computes the invoice of `month` from its ledger lines, the project's package and its
    /// credits left. GPU on-demand lines take the allowance, dearest first (the customer's best).
    public init(project: ProjectID, month: BillingMonth, lines: [LineKey: Int64], package: BillingPackage?, credits: CreditBalances) {
        self.project = project
        self.month = month
        self.lines = lines.filter { $0.value != 0 }.sorted { $0.key < $1.key }.map { InvoiceLine(key: $0.key, usage: $0.value) }
        packageFeeMicros = package?.monthlyFeeMicros ?? 0
        usageMicros = self.lines.reduce(0) { Money.sum($0, $1.amountMicros) }
        var left = max(0, usageMicros)
        trialAppliedMicros = min(max(0, credits.trialMicros), left)
        left -= trialAppliedMicros
        var allowanceValue: Int64 = 0
        var allowanceLeft = package?.allowanceUsage ?? 0
        allowanceUsed = 0
        let gpuLines = self.lines.filter { if case .gpu = $0.key.sku, $0.key.tier == .onDemand, $0.usage > 0 { true } else { false } }
        for line in gpuLines.sorted(by: { $0.key.unitPriceMicrosPerHour > $1.key.unitPriceMicrosPerHour }) where allowanceLeft > 0 {
            let covered = min(allowanceLeft, line.usage)
            allowanceLeft -= covered
            allowanceUsed += covered
            allowanceValue = Money.sum(allowanceValue, line.key.amountMicros(usage: covered))
        }
        allowanceAppliedMicros = min(allowanceValue, left)
        left -= allowanceAppliedMicros
        prepaidAppliedMicros = min(max(0, credits.prepaidMicros), left)
        left -= prepaidAppliedMicros
        totalMicros = Money.sum(packageFeeMicros, left)
    }
}

/// A project's monthly budget: a soft threshold that warns, a hard limit that refuses new work.
public struct Budget: Hashable, Sendable, Codable {
    public var limitMicros: Int64
    /// Past this share of the limit (percent), a warning event and metric.
    public var softPercent: Int
    /// At the limit, also stop the project's running spot work.
    public var stopSpot: Bool
    /// Jobs without `--max-runtime` are limited to this: admission reserves for it.
    public var defaultMaxRuntimeSeconds: Int64

    public init(limitMicros: Int64, softPercent: Int = 80, stopSpot: Bool = false, defaultMaxRuntimeSeconds: Int64 = 24 * 3600) {
        self.limitMicros = limitMicros
        self.softPercent = softPercent
        self.stopSpot = stopSpot
        self.defaultMaxRuntimeSeconds = defaultMaxRuntimeSeconds
    }

    public static func validate(limitMicros: Int64, softPercent: Int, defaultMaxRuntimeSeconds: Int64) -> String? {
        guard (0...PriceVersion.maxMicrosPerHour * 1000).contains(limitMicros) else { return "the limit must be 0…1,000,000,000 in currency units" }
        guard (1...100).contains(softPercent) else { return "softPercent must be 1…100" }
        guard (60...(366 * 86_400)).contains(defaultMaxRuntimeSeconds) else { return "the default max runtime must be 60 s…366 days" }
        return nil
    }

    public var softLimitMicros: Int64 { Int64(Int128(limitMicros) * Int128(softPercent) / 100) }

    /// Whether a reservation of `requestMicros` fits beside what is spent and already reserved.
    /// Exact: two requests for the last money cannot both fit, because the caller adds the
    /// first one's reservation before it checks the second.
    public func admits(spentMicros: Int64, reservedMicros: Int64, requestMicros: Int64) -> Bool {
        Money.sum(Money.sum(spentMicros, reservedMicros), requestMicros) <= limitMicros
    }
}
