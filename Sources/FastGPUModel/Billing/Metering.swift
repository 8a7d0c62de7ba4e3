/// What metering needs to know of an allocation that ran.
public struct MeteredAllocation: Hashable, Sendable {
    public var allocation: AllocationID
    public var job: JobID
    public var project: ProjectID
    public var tier: BillingTier
    /// The model of its GPUs; nil for a CPU-only task.
    public var gpuModel: String?
    public var milliGPUs: Int
    public var cpuMillis: Int
    public var memoryMiB: Int
    /// When its agent reported the workload running: the charge starts there, not at placement.
    public var runningSince: Timestamp

    public init(allocation: AllocationID, job: JobID, project: ProjectID, tier: BillingTier, gpuModel: String?, milliGPUs: Int,
                cpuMillis: Int, memoryMiB: Int, runningSince: Timestamp) {
        self.allocation = allocation
        self.job = job
        self.project = project
        self.tier = tier
        self.gpuModel = gpuModel
        self.milliGPUs = milliGPUs
        self.cpuMillis = cpuMillis
        self.memoryMiB = memoryMiB
        self.runningSince = runningSince
    }

    /// Nil for an allocation that never ran (it is not charged).
    public init?(_ allocation: Allocation, gpuModel: String?) {
        guard let since = allocation.runningSince else { return nil }
        self.init(allocation: allocation.id, job: allocation.task.job, project: allocation.project, tier: allocation.spot ? .spot : .onDemand,
                  gpuModel: allocation.milliGPUs > 0 ? gpuModel : nil, milliGPUs: allocation.milliGPUs,
                  cpuMillis: allocation.cpuMillis, memoryMiB: allocation.memoryMiB, runningSince: since)
    }

    /// What it holds of each SKU, in sub-units (milli-GPUs, milli-cores, MiB).
    public var quantities: [(SKU, Int64)] {
        var result: [(SKU, Int64)] = []
        if milliGPUs > 0 { result.append((.gpu(model: gpuModel ?? "unknown"), Int64(milliGPUs))) }
        if cpuMillis > 0 { result.append((.cpu, Int64(cpuMillis))) }
        if memoryMiB > 0 { result.append((.memory, Int64(memoryMiB))) }
        return result
    }
}

/// One entry of the append-only ledger: the use of one SKU by one allocation over one piece of
/// a metering segment, priced by one price version.
///
/// Invariants: `sourceID` is a function of (allocation, segment, SKU, piece start) only, so
/// metering the same facts twice makes the same ids and a ledger keeps one of each; `usage` is
/// `quantity × (end − start)` in sub-unit-milliseconds, negative only in a reversing entry;
/// a charge is never changed, only reversed by another entry.
public struct Charge: Hashable, Sendable {
    public var sourceID: String
    public var project: ProjectID
    public var job: JobID
    public var allocation: AllocationID
    public var segment: Int
    public var sku: SKU
    public var tier: BillingTier
    public var priceVersion: Int
    public var unitPriceMicrosPerHour: Int64
    public var quantity: Int64
    public var start: Timestamp
    public var end: Timestamp
    public var usage: Int64
    /// The invoice month it is billed in: its start's month, or the first month still open when
    /// that one's invoice was already final (a late charge is billed late, never lost or hidden).
    public var month: BillingMonth
    /// For a reversing entry: the source id of the charge it cancels.
    public var reverses: String?

    public init(sourceID: String, project: ProjectID, job: JobID, allocation: AllocationID, segment: Int, sku: SKU, tier: BillingTier,
                priceVersion: Int, unitPriceMicrosPerHour: Int64, quantity: Int64, start: Timestamp, end: Timestamp, usage: Int64,
                month: BillingMonth, reverses: String? = nil) {
        self.sourceID = sourceID
        self.project = project
        self.job = job
        self.allocation = allocation
        self.segment = segment
        self.sku = sku
        self.tier = tier
        self.priceVersion = priceVersion
        self.unitPriceMicrosPerHour = unitPriceMicrosPerHour
        self.quantity = quantity
        self.start = start
        self.end = end
        self.usage = usage
        self.month = month
        self.reverses = reverses
    }

    public var line: LineKey { LineKey(sku: sku, tier: tier, priceVersion: priceVersion, unitPriceMicrosPerHour: unitPriceMicrosPerHour) }

    /// The entry that cancels this one (a correction): same line, opposite usage.
    public func reversal(month: BillingMonth) -> Charge {
        var entry = self
        entry.sourceID = "reversal:" + sourceID
        entry.usage = -usage
        entry.month = month
        entry.reverses = sourceID
        return entry
    }
}

/// What an invoice line groups: one SKU in one tier at one price.
public struct LineKey: Hashable, Comparable, Sendable {
    public var sku: SKU
    public var tier: BillingTier
    public var priceVersion: Int
    public var unitPriceMicrosPerHour: Int64

    public init(sku: SKU, tier: BillingTier, priceVersion: Int, unitPriceMicrosPerHour: Int64) {
        self.sku = sku
        self.tier = tier
        self.priceVersion = priceVersion
        self.unitPriceMicrosPerHour = unitPriceMicrosPerHour
    }

    public static func < (lhs: LineKey, rhs: LineKey) -> Bool {
        (lhs.sku.description, lhs.tier.rawValue, lhs.priceVersion, lhs.unitPriceMicrosPerHour) < (rhs.sku.description, rhs.tier.rawValue, rhs.priceVersion, rhs.unitPriceMicrosPerHour)
    }

    /// The money of `usage` sub-unit-milliseconds on this line, in micro-units, rounded toward zero once.
    public func amountMicros(usage: Int64) -> Int64 {
        Money.amountMicros(usage: usage, microsPerHour: unitPriceMicrosPerHour, divisor: sku.usageDivisor)
    }
}

/// Exact arithmetic on money: products in 128 bits, one rounding at the end.
public enum Money {
    /// `usage × price / divisor`, rounded toward zero (so a reversal is the exact negative).
    public static func amountMicros(usage: Int64, microsPerHour: Int64, divisor: Int64) -> Int64 {
        Int64(clamping: Int128(usage) * Int128(microsPerHour) / Int128(divisor))
    }

    /// `usage × price / divisor`, rounded up: what a reservation must hold.
    public static func ceilingMicros(usage: Int128, microsPerHour: Int64, divisor: Int64) -> Int64 {
        let product = usage * Int128(microsPerHour)
        return Int64(clamping: (product + Int128(divisor) - 1) / Int128(divisor))
    }

    /// `a + b`, held at the largest amount instead of trapping (a reservation that large refuses anyway).
    public static func sum(_ a: Int64, _ b: Int64) -> Int64 {
        let (value, overflow) = a.addingReportingOverflow(b)
        return overflow ? (b > 0 ? .max : .min) : value
    }

    /// `12.345678` for 12,345,678 micro-units.
    public static func text(_ micros: Int64) -> String {
        let sign = micros < 0 ? "-" : ""
        let magnitude = micros.magnitude
        let fraction = String(magnitude % 1_000_000)
        return "\(sign)\(magnitude / 1_000_000).\(String(repeating: "0", count: 6 - fraction.count))\(fraction)"
    }

    /// `12.34` or `0.000005` as micro-units; nil unless a plain non-negative decimal with at most six places.
    public static func micros(_ text: String) -> Int64? {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard (1...2).contains(parts.count), !parts[0].isEmpty, parts[0].count <= 12, parts[0].utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }),
              let whole = Int64(parts[0]) else { return nil }
        var fraction: Int64 = 0
        if parts.count == 2 {
            guard (1...6).contains(parts[1].count), parts[1].utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }), let digits = Int64(parts[1]) else { return nil }
            fraction = digits * [1, 100_000, 10_000, 1_000, 100, 10, 1][parts[1].count]
        }
        return whole * 1_000_000 + fraction
    }
}

/// Turns the time allocations ran into charges.
///
/// An allocation's run is cut into segments of `segmentMilliseconds` from its start; a segment
/// is charged once it is over (or the allocation ended inside it), so the ledger is never more
/// than one segment behind a running job and a crash loses at most the open segment's facts —
/// which the next metering after a restart charges again under the same ids. A segment is cut
/// further where a price version takes effect or a month begins, so every charge has one price
/// and one month.
public enum Metering {
    public static let segmentMilliseconds: Int64 = 60_000

    /// The charges of segments `first…` closed at `time` (every segment that is over, plus, when
    /// the allocation `ended` at `time`, the part of the one it ended in), and the next segment.
    public static func charges(of allocation: MeteredAllocation, fromSegment first: Int, until time: Timestamp, ended: Bool,
                               prices: PriceBook) -> (charges: [Charge], nextSegment: Int) {
        var charges: [Charge] = []
        var segment = first
        let since = allocation.runningSince.millisecondsSinceEpoch
        while true {
            let segmentStart = since + Int64(segment) * segmentMilliseconds
            let fullEnd = segmentStart + segmentMilliseconds
            guard segmentStart < time.millisecondsSinceEpoch else { break }
            if !ended && fullEnd > time.millisecondsSinceEpoch { break }
            let segmentEnd = min(fullEnd, time.millisecondsSinceEpoch)
            var cuts = prices.changes(after: Timestamp(millisecondsSinceEpoch: segmentStart), before: Timestamp(millisecondsSinceEpoch: segmentEnd))
            let monthEnd = BillingMonth(containing: Timestamp(millisecondsSinceEpoch: segmentStart)).end.millisecondsSinceEpoch
            if monthEnd < segmentEnd { cuts.append(Timestamp(millisecondsSinceEpoch: monthEnd)) }
            let bounds = [segmentStart] + cuts.map(\.millisecondsSinceEpoch).sorted() + [segmentEnd]
            for (from, to) in zip(bounds, bounds.dropFirst()) where to > from {
                let start = Timestamp(millisecondsSinceEpoch: from)
                let version = prices.version(at: start)
                for (sku, quantity) in allocation.quantities {
                    let price = version.price(of: sku, tier: allocation.tier)
                    // GPU use is metered even when free (usage reports count it); unpriced CPU
                    // and memory would only add rows.
                    if price == 0, case .gpu = sku {} else if price == 0 { continue }
                    charges.append(Charge(
                        sourceID: "a\(allocation.allocation.rawValue)/s\(segment)/\(sku)/@\(from)", project: allocation.project,
                        job: allocation.job, allocation: allocation.allocation, segment: segment, sku: sku, tier: allocation.tier,
                        priceVersion: version.version, unitPriceMicrosPerHour: price, quantity: quantity, start: start,
                        end: Timestamp(millisecondsSinceEpoch: to), usage: quantity * (to - from), month: BillingMonth(containing: start)))
                }
            }
            segment += 1
        }
        return (charges, segment)
    }

    /// The money an allocation of this shape commits to per `milliseconds` of run at the prices
    /// of `version`, rounded up: what admission reserves against a budget.
    public static func reservationMicros(_ quantities: [(SKU, Int64)], tier: BillingTier, milliseconds: Int64, version: PriceVersion) -> Int64 {
        var total: Int64 = 0
        for (sku, quantity) in quantities {
            let usage = Int128(quantity) * Int128(milliseconds)
            total = Money.sum(total, Money.ceilingMicros(usage: usage, microsPerHour: version.price(of: sku, tier: tier), divisor: sku.usageDivisor))
        }
        return total
    }
}
