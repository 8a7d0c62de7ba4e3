import FastGPUModel
import FastGPUWorkloads
import Testing

@Suite struct BillingMonthTests {
    @Test func everyTimeFallsInsideItsMonth() {
        var random = SeededGenerator(seed: 7)
        for _ in 0..<5_000 {
            let time = Timestamp(millisecondsSinceEpoch: Int64.random(in: 0...4_102_444_800_000, using: &random))
            let month = BillingMonth(containing: time)
            #expect(month.start <= time && time < month.end, "\(time) in \(month)")
            #expect(BillingMonth(containing: month.start) == month)
            #expect(BillingMonth(month.description) == month)
        }
    }

    @Test func leapFebruaryHas29Days() {
        let february = BillingMonth(year: 2028, month: 2)
        #expect(february.end.millisecondsSinceEpoch - february.start.millisecondsSinceEpoch == 29 * 86_400_000)
        #expect(BillingMonth(year: 2026, month: 12).next == BillingMonth(year: 2027, month: 1))
        #expect(BillingMonth("2026-13") == nil && BillingMonth("26-01") == nil)
    }
}

@Suite struct PriceBookTests {
    @Test func aModelTakesItsLongestMatchingPriceElseTheGPUPrice() {
        let version = PriceVersion(version: 1, effectiveAt: .zero, onDemandMicrosPerHour: ["gpu": 1_000_000, "gpu:A100": 1_290_000, "gpu:A100-80GB": 1_790_000],
                                   spotPercent: 40)
        #expect(version.onDemandPrice(of: .gpu(model: "A100-80GB")) == 1_790_000)
        #expect(version.onDemandPrice(of: .gpu(model: "A100-40GB")) == 1_290_000)
        #expect(version.onDemandPrice(of: .gpu(model: "H100-80GB")) == 1_000_000)
        // Spot: 40 % of 1.29 = 0.516.
        #expect(version.price(of: .gpu(model: "A100-40GB"), tier: .spot) == 516_000)
        #expect(version.onDemandPrice(of: .cpu) == 0)
    }

    @Test func badPricesAreRefused() {
        #expect(PriceVersion.validate(onDemandMicrosPerHour: ["gpu:H100": -1], spotPercent: 40) != nil)
        #expect(PriceVersion.validate(onDemandMicrosPerHour: ["disk": 1], spotPercent: 40) != nil)
        #expect(PriceVersion.validate(onDemandMicrosPerHour: ["gpu:H100": 1], spotPercent: 101) != nil)
        #expect(PriceVersion.validate(onDemandMicrosPerHour: ["gpu:H100": 1, "cpu": 2, "memory": 3, "gpu": 4], spotPercent: 0) == nil)
    }
}

/// Random allocations over random price versions, metered at random times.
struct BillingScenario {
    var book: PriceBook
    var allocations: [(MeteredAllocation, end: Timestamp)]
    var ticks: [Timestamp]

    init(seed: UInt64) {
        var random = SeededGenerator(seed: seed)
        // Around a month boundary, so months cut segments too.
        let origin = BillingMonth(year: 2026, month: 11).end.millisecondsSinceEpoch - 3_600_000
        var book = PriceBook(versions: [PriceVersion(version: 1, effectiveAt: .zero, onDemandMicrosPerHour: ["gpu": 1_000_000, "gpu:H100": 2_490_000, "cpu": 20_000, "memory": 2_500], spotPercent: 40)])
        for _ in 0..<Int.random(in: 0...4, using: &random) {
            _ = book.add(effectiveAt: Timestamp(millisecondsSinceEpoch: origin + Int64.random(in: 0...7_200_000, using: &random)),
                         onDemandMicrosPerHour: ["gpu": Int64.random(in: 1...3_000_000, using: &random), "gpu:H100": Int64.random(in: 1...5_000_000, using: &random),
                                                 "cpu": Int64.random(in: 1...50_000, using: &random), "memory": Int64.random(in: 1...5_000, using: &random)],
                         spotPercent: Int.random(in: 1...100, using: &random))
        }
        self.book = book
        let models = ["H100-80GB", "A100-40GB", "L4"]
        allocations = (0..<Int.random(in: 1...40, using: &random)).map { index in
            let start = origin + Int64.random(in: 0...6_000_000, using: &random)
            let gpus = [0, 142, 500, 1000, 2000, 8000].randomElement(using: &random)!
            let allocation = MeteredAllocation(
                allocation: AllocationID(UInt64(index + 1)), job: JobID(UInt64(index / 3 + 1)), project: ProjectID(UInt64(index % 3 + 1)),
                tier: Bool.random(using: &random) ? .spot : .onDemand, gpuModel: gpus > 0 ? models.randomElement(using: &random)! : nil, milliGPUs: gpus,
                cpuMillis: Int.random(in: 0...64_000, using: &random), memoryMiB: Int.random(in: 0...512_000, using: &random),
                runningSince: Timestamp(millisecondsSinceEpoch: start))
            return (allocation, Timestamp(millisecondsSinceEpoch: start + Int64.random(in: 0...1_800_000, using: &random)))
        }
        ticks = (0..<Int.random(in: 0...30, using: &random)).map { _ in Timestamp(millisecondsSinceEpoch: origin + Int64.random(in: 0...8_000_000, using: &random)) }.sorted()
    }

    /// Meters every allocation at each tick while it runs, then at its end: what the control plane does.
    func meter(into ledger: inout Ledger, replayingFromZero: Bool = false) {
        for (allocation, end) in allocations {
            var next = 0
            for tick in ticks where tick < end {
                let (charges, after) = Metering.charges(of: allocation, fromSegment: replayingFromZero ? 0 : next, until: tick, ended: false, prices: book)
                for charge in charges { ledger.append(charge) }
                next = after
            }
            let (charges, _) = Metering.charges(of: allocation, fromSegment: replayingFromZero ? 0 : next, until: end, ended: true, prices: book)
            for charge in charges { ledger.append(charge) }
        }
    }
}

@Suite struct MeteringPropertyTests {
    @Test(arguments: 0..<40) func replayingEveryEventTwiceLeavesTheLedgerUnchanged(seed: UInt64) {
        let scenario = BillingScenario(seed: seed)
        var ledger = Ledger()
        scenario.meter(into: &ledger)
        let once = ledger
        scenario.meter(into: &ledger)
        scenario.meter(into: &ledger, replayingFromZero: true)
        #expect(ledger == once)
        // When metering ran does not change what it charged: one pass at the end gives the same ledger.
        var atTheEnd = Ledger()
        var noTicks = scenario
        noTicks.ticks = []
        noTicks.meter(into: &atTheEnd)
        #expect(Set(atTheEnd.charges.map(\.sourceID)) == Set(once.charges.map(\.sourceID)))
        #expect(atTheEnd.totals == once.totals)
    }

    @Test(arguments: 0..<40) func chargesCoverTheRunExactlyInSegmentsOfAtMostAMinute(seed: UInt64) {
        let scenario = BillingScenario(seed: seed)
        var ledger = Ledger()
        scenario.meter(into: &ledger)
        for (allocation, end) in scenario.allocations {
            let charges = ledger.charges.filter { $0.allocation == allocation.allocation }
            for (sku, quantity) in allocation.quantities {
                let pieces = charges.filter { $0.sku == sku }.sorted { $0.start < $1.start }
                                #expect(pieces.first?.start == allocation.runningSince)
                #expect(pieces.last?.end == end)
                for (a, b) in zip(pieces, pieces.dropFirst()) { #expect(a.end == b.start) }
                for piece in pieces {
                    #expect(piece.end.millisecondsSinceEpoch - piece.start.millisecondsSinceEpoch <= Metering.segmentMilliseconds)
                    #expect(piece.month == BillingMonth(containing: piece.start) && piece.end <= piece.month.end)
                    #expect(piece.priceVersion == scenario.book.version(at: piece.start).version)
                }
                #expect(pieces.reduce(0) { $0 + $1.usage } == quantity * end.milliseconds(since: allocation.runningSince))
            }
        }
    }

    /// For every job: billed = metered time × price to the micro-unit, the expected figure computed
    /// here without segments, straight from the price versions' intervals.
    @Test(arguments: 0..<40) func everyJobIsBilledItsMeteredTimeTimesThePrice(seed: UInt64) {
        let scenario = BillingScenario(seed: seed)
        var ledger = Ledger()
        scenario.meter(into: &ledger)
        var expected: [JobID: [LineKey: Int64]] = [:]
        let versions = scenario.book.versions
        for (allocation, end) in scenario.allocations {
            for (index, version) in versions.enumerated() {
                let from = max(version.effectiveAt, allocation.runningSince)
                let to = min(index + 1 < versions.count ? versions[index + 1].effectiveAt : end, end)
                guard to > from else { continue }
                for (sku, quantity) in allocation.quantities {
                    let price = version.price(of: sku, tier: allocation.tier)
                    if price == 0, sku == .cpu || sku == .memory { continue }
                    expected[allocation.job, default: [:]][LineKey(sku: sku, tier: allocation.tier, priceVersion: version.version, unitPriceMicrosPerHour: price), default: 0]
                        += quantity * to.milliseconds(since: from)
                }
            }
        }
        for (job, lines) in expected {
            let exactMicros = lines.reduce(Int64(0)) { $0 + Int64(Int128($1.value) * Int128($1.key.unitPriceMicrosPerHour) / Int128($1.key.sku.usageDivisor)) }
            #expect(ledger.totals.costMicros(job: job) == exactMicros, "job \(job)")
            #expect((ledger.totals.byJob[job] ?? [:]).filter { $0.value != 0 } == lines.filter { $0.value != 0 })
        }
    }

    @Test(arguments: 0..<20) func invoiceLinesAddUpToTheLedger(seed: UInt64) {
        let scenario = BillingScenario(seed: seed)
        var ledger = Ledger()
        scenario.meter(into: &ledger)
        for (key, lines) in ledger.totals.byProjectMonth {
            let invoice = Invoice(project: key.project, month: key.month, lines: lines, package: nil, credits: CreditBalances())
            let charges = ledger.charges.filter { $0.project == key.project && $0.month == key.month }
            #expect(invoice.lines.reduce(0) { $0 + $1.usage } == charges.reduce(0) { $0 + $1.usage })
            #expect(invoice.usageMicros == invoice.lines.reduce(0) { $0 + $1.amountMicros })
            #expect(invoice.totalMicros == invoice.usageMicros)
        }
    }

    @Test func aReversalCancelsItsChargeExactlyAndOnlyOnce() {
        let scenario = BillingScenario(seed: 3)
        var ledger = Ledger()
        scenario.meter(into: &ledger)
        let charge = ledger.charges[0]
        let before = ledger.totals.costMicros(job: charge.job)
        let reversal = ledger.reverse(charge.sourceID, billedIn: charge.month)
        #expect(reversal?.usage == -charge.usage)
        #expect(ledger.reverse(charge.sourceID, billedIn: charge.month) == nil)
        let withoutIt = (ledger.totals.byJob[charge.job] ?? [:])
        #expect(LedgerTotals.amountMicros(withoutIt) <= before)
    }
}

@Suite struct InvoiceTests {
    let h100 = LineKey(sku: .gpu(model: "H100-80GB"), tier: .onDemand, priceVersion: 1, unitPriceMicrosPerHour: 2_490_000)
    let l4 = LineKey(sku: .gpu(model: "L4"), tier: .onDemand, priceVersion: 1, unitPriceMicrosPerHour: 490_000)
    let month = BillingMonth(year: 2026, month: 12)
    let gpuHour: Int64 = 3_600_000_000

    @Test func creditsApplyTrialThenAllowanceThenPrepaid() {
        // 10 H100-hours (24.90) and 10 L4-hours (4.90) = 29.80.
        let lines = [h100: 10 * gpuHour, l4: 10 * gpuHour]
        let invoice = Invoice(project: ProjectID(1), month: month, lines: lines,
                              package: BillingPackage(monthlyFeeMicros: 5_000_000, allowanceGPUHours: 4),
                              credits: CreditBalances(trialMicros: 3_000_000, prepaidMicros: 100_000_000))
        #expect(invoice.usageMicros == 29_800_000)
        #expect(invoice.trialAppliedMicros == 3_000_000)
        // The allowance covers the dearest GPU-hours first: 4 H100-hours = 9.96.
        #expect(invoice.allowanceAppliedMicros == 9_960_000 && invoice.allowanceUsed == 4 * gpuHour)
        #expect(invoice.prepaidAppliedMicros == 29_800_000 - 3_000_000 - 9_960_000)
        // Left to pay: only the package's fee.
        #expect(invoice.totalMicros == 5_000_000)
    }

    @Test func noCreditCoversMoreThanIsLeft() {
        let invoice = Invoice(project: ProjectID(1), month: month, lines: [l4: gpuHour], package: BillingPackage(monthlyFeeMicros: 0, allowanceGPUHours: 100),
                              credits: CreditBalances(trialMicros: 200_000, prepaidMicros: 1_000_000))
        #expect(invoice.trialAppliedMicros == 200_000)
        #expect(invoice.allowanceAppliedMicros == 290_000)
        #expect(invoice.prepaidAppliedMicros == 0 && invoice.totalMicros == 0)
    }

    @Test func budgetsAdmitOnlyWhatFitsBesideSpentAndReserved() {
        let budget = Budget(limitMicros: 10_000_000)
        #expect(budget.admits(spentMicros: 4_000_000, reservedMicros: 5_000_000, requestMicros: 1_000_000))
        #expect(!budget.admits(spentMicros: 4_000_000, reservedMicros: 5_000_000, requestMicros: 1_000_001))
        #expect(budget.softLimitMicros == 8_000_000)
        // An H100-hour reserved: 2.49 exactly; a 1g MIG slice of it (142 milli) for 10 minutes rounds up.
        let version = PriceBook.standard
        #expect(Metering.reservationMicros([(.gpu(model: "H100-80GB"), 1000)], tier: .onDemand, milliseconds: 3_600_000, version: version) == 2_490_000)
        #expect(Metering.reservationMicros([(.gpu(model: "H100-80GB"), 142)], tier: .onDemand, milliseconds: 600_000, version: version) == 58_930)
        #expect(Money.text(2_490_000) == "2.490000" && Money.text(-5) == "-0.000005")
    }
}
