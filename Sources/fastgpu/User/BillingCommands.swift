import ArgumentParser
import FastGPUModel
import FastGPUWire
import Foundation

// Money from the command line: prices, usage, invoices, budgets, credits and packages. Amounts
// are typed and shown in currency units with up to six decimals (the ledger's micro-units).

/// `2.49` → 2,490,000 micro-units, or a one-line error naming the flag.
func parseMoney(_ text: String, flag: String) throws -> Int64 {
    guard let micros = Money.micros(text) else { throw CommandFailure("\(flag) \(text): give an amount such as 2.49 (at most six decimals)") }
    return micros
}

struct PricesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prices", abstract: "The price book: on-demand prices per GPU-, core- and GiB-hour, spot as a percentage of them.",
        subcommands: [Show.self, Set.self], defaultSubcommand: Show.self)

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "ls", abstract: "The prices in effect now (and later versions).")
        @OptionGroup var connection: ClientOptions
        @OptionGroup var format: OutputOptions

        func run() async throws {
            let book = try await connection.client().prices()
            if format.json { return try Output.json(book) }
            for version in book.items where version.version >= book.current {
                let when = version.version == book.current ? "in effect" : "from \(version.effectiveAt)"
                Output.write("price version \(version.version) (\(when)); spot = \(version.spotPercent) % of on-demand\n")
                let rows = version.prices.sorted { $0.key < $1.key }.map { sku, price -> [String] in
                    let unit = sku.hasPrefix("gpu") ? "GPU" : (sku == "cpu" ? "core" : "GiB")
                    return [sku, "\(Money.text(price)) / \(unit)-hour", "\(Money.text(price * Int64(version.spotPercent) / 100))"]
                }
                Output.write(Output.table(["SKU", "ON-DEMAND", "SPOT"], rows))
            }
        }
    }

    struct Set: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "set", abstract: "A new price version (cluster admins): the current prices with these changed.",
            discussion: "fastgpu prices set gpu:H100=2.49 gpu:A100=1.29 cpu=0.02 memory=0.0025 --spot-percent 40 --effective 2027-02-01")
        @OptionGroup var connection: ClientOptions
        @Argument(help: "SKU=PRICE per unit-hour: gpu:MODEL, gpu (any other model), cpu (core), memory (GiB).") var prices: [String] = []
        @Option(help: "Spot work costs this percentage of on-demand.") var spotPercent: Int?
        @Option(help: "From when (RFC 3339 or YYYY-MM-DD); now when absent. Never in the past.") var effective: String?
        @Flag(help: "Replace the whole book with these prices instead of changing the current one.") var only = false

        func run() async throws {
            let client = try await connection.client()
            let book = try await client.prices()
            let current = book.items.first { $0.version == book.current }
            var table = only ? [:] : (current?.prices ?? [:])
            for item in prices {
                let parts = item.split(separator: "=", maxSplits: 1).map(String.init)
                guard parts.count == 2, !parts[0].isEmpty else { throw CommandFailure("\(item): give SKU=PRICE, such as gpu:H100=2.49") }
                table[parts[0]] = try parseMoney(parts[1], flag: parts[0])
            }
            guard !table.isEmpty else { throw CommandFailure("give at least one SKU=PRICE") }
            let version = try await client.setPrices(SetPricesBody(prices: table, spotPercent: spotPercent ?? current?.spotPercent, effectiveAt: effective))
            Output.write("price version \(version.version) takes effect \(version.effectiveAt)\n")
        }
    }
}

struct UsageCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "usage", abstract: "A project's metered GPU time and its cost, by SKU, job or member (this month unless --from/--to).")
    @OptionGroup var connection: ClientOptions
    @OptionGroup var format: OutputOptions
    @Option(help: "The project (default: the configured one).") var project: String?
    @Option(help: "sku, job or member.") var by: String = "sku"
    @Option(help: "From (RFC 3339 or YYYY-MM-DD); the month's start when absent.") var from: String?
    @Option(help: "To (RFC 3339 or YYYY-MM-DD); now when absent.") var to: String?

    func run() async throws {
        guard ["sku", "job", "member"].contains(by) else { throw CommandFailure("--by \(by): give sku, job or member") }
        let report = try await connection.client().usage(project: ClientOptions.project(project), from: from, to: to, by: by)
        if format.json { return try Output.json(report) }
        let rows = report.items.map { item in
            [item.key + (item.name.map { $0.isEmpty || $0 == item.key ? "" : " (\($0))" } ?? ""), Self.hours(item.milliGPUHours), Money.text(item.amountMicros)]
        }
        Output.write(Output.table([by.uppercased(), "GPU-HOURS", "COST"], rows + [["total", Self.hours(report.milliGPUHours), Money.text(report.amountMicros)]]))
    }

    static func hours(_ milli: Int64) -> String { "\(milli / 1000).\(String(format: "%03d", milli % 1000))" }
}

struct InvoicesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "invoices", abstract: "A project's monthly invoices: the open month as it stands, earlier months final.",
        subcommands: [List.self, Show.self], defaultSubcommand: List.self)

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "ls", abstract: "Every month with charges, newest first.")
        @OptionGroup var connection: ClientOptions
        @OptionGroup var format: OutputOptions
        @Option(help: "The project (default: the configured one).") var project: String?

        func run() async throws {
            let invoices = try await connection.client().invoices(project: ClientOptions.project(project))
            if format.json { return try Output.json(invoices) }
            Output.write(Output.table(["MONTH", "STATUS", "USAGE", "CREDITS", "TOTAL"], invoices.items.map { invoice in
                [invoice.month, invoice.status, Money.text(invoice.usageMicros),
                 Money.text(invoice.trialAppliedMicros + invoice.allowanceAppliedMicros + invoice.prepaidAppliedMicros), Money.text(invoice.totalMicros)]
            }))
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "show", abstract: "One month's invoice, line by line.")
        @OptionGroup var connection: ClientOptions
        @OptionGroup var format: OutputOptions
        @Option(help: "The project (default: the configured one).") var project: String?
        @Argument(help: "The month, YYYY-MM.") var month: String

        func run() async throws {
            guard BillingMonth(month) != nil else { throw CommandFailure("\(month): give a month as YYYY-MM") }
            let invoice = try await connection.client().invoice(project: ClientOptions.project(project), month: month)
            if format.json { return try Output.json(invoice) }
            Output.write("invoice \(invoice.month) of \(invoice.project) (\(invoice.status)\(invoice.issuedAt.map { ", issued \($0)" } ?? ""))\n")
            Output.write(Output.table(["SKU", "TIER", "QUANTITY", "PRICE", "AMOUNT"], invoice.lines.map { line in
                [line.sku, line.tier, "\(UsageCommand.hours(line.milliUnitHours)) \(line.unit)-h", "\(Money.text(line.unitPriceMicrosPerHour)) (v\(line.priceVersion))",
                 Money.text(line.amountMicros)]
            }))
            var summary = [["usage", Money.text(invoice.usageMicros)]]
            if invoice.packageFeeMicros > 0 { summary.append(["package fee", Money.text(invoice.packageFeeMicros)]) }
            if invoice.trialAppliedMicros > 0 { summary.append(["trial credit", "-" + Money.text(invoice.trialAppliedMicros)]) }
            if invoice.allowanceAppliedMicros > 0 {
                summary.append(["package allowance (\(UsageCommand.hours(invoice.allowanceUsedMilliGPUHours)) GPU-h)", "-" + Money.text(invoice.allowanceAppliedMicros)])
            }
            if invoice.prepaidAppliedMicros > 0 { summary.append(["prepaid credit", "-" + Money.text(invoice.prepaidAppliedMicros)]) }
            summary.append(["total", Money.text(invoice.totalMicros)])
            Output.write(Output.pairs(summary))
        }
    }
}

struct BudgetCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "budget", abstract: "A project's monthly budget: a warning at the soft threshold, new work refused at the limit.",
        subcommands: [Show.self, Set.self, Clear.self], defaultSubcommand: Show.self)

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "show", abstract: "The budget and the month against it.")
        @OptionGroup var connection: ClientOptions
        @OptionGroup var format: OutputOptions
        @Argument(help: "The project (default: the configured one).") var project: String?

        func run() async throws {
            let budget = try await connection.client().budget(project: ClientOptions.project(project))
            if format.json { return try Output.json(budget) }
            BudgetCommand.print(budget)
        }
    }

    struct Set: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "set", abstract: "Set the monthly limit (project admins).",
            discussion: "fastgpu budget set vision --limit 5000 --soft-percent 80 --default-max-runtime 24h --stop-spot")
        @OptionGroup var connection: ClientOptions
        @Argument(help: "The project (default: the configured one).") var project: String?
        @Option(help: "The monthly limit, in currency units.") var limit: String
        @Option(help: "Warn past this percentage of the limit.") var softPercent: Int?
        @Option(help: "Jobs without --max-runtime stop after this (30m, 24h, 7d); admission reserves for it.") var defaultMaxRuntime: String?
        @Flag(help: "At the limit, also stop the project's running spot work.") var stopSpot = false

        func run() async throws {
            let seconds = try defaultMaxRuntime.map { try JobSpec.parseSeconds($0, flag: "--default-max-runtime") }
            let budget = try await connection.client().setBudget(project: ClientOptions.project(project), SetBudgetBody(
                limitMicros: try parseMoney(limit, flag: "--limit"), softPercent: softPercent, stopSpot: stopSpot, defaultMaxRuntimeSeconds: seconds))
            BudgetCommand.print(budget)
        }
    }

    struct Clear: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "clear", abstract: "Remove the budget (project admins).")
        @OptionGroup var connection: ClientOptions
        @Argument(help: "The project (default: the configured one).") var project: String?

        func run() async throws {
            BudgetCommand.print(try await connection.client().removeBudget(project: ClientOptions.project(project)))
        }
    }

    static func print(_ budget: BudgetWire) {
        var rows = [["month", budget.month], ["spent", Money.text(budget.spentMicros)], ["reserved by jobs", Money.text(budget.reservedMicros)]]
        if let limit = budget.limitMicros {
            rows.insert(["limit", Money.text(limit)], at: 1)
            rows.append(["left", Money.text(limit - budget.spentMicros - budget.reservedMicros)])
            rows.append(["soft threshold", "\(budget.softPercent ?? 80) %"])
            rows.append(["default max runtime", WireTime.span(Double(budget.defaultMaxRuntimeSeconds ?? 0))])
            rows.append(["at the limit", (budget.stopSpot ?? false) ? "refuse new work, stop spot work" : "refuse new work"])
        } else {
            rows.insert(["limit", "none"], at: 1)
        }
        Output.write("budget of \(budget.project)\n" + Output.pairs(rows))
    }
}

struct CreditsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "credits", abstract: "A project's credits: trials and prepaid money, taken off its invoices (trial, then package, then prepaid).",
        subcommands: [List.self, Grant.self, Package.self], defaultSubcommand: List.self)

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "ls", abstract: "The credits given to a project.")
        @OptionGroup var connection: ClientOptions
        @OptionGroup var format: OutputOptions
        @Argument(help: "The project (default: the configured one).") var project: String?

        func run() async throws {
            let credits = try await connection.client().credits(project: ClientOptions.project(project))
            if format.json { return try Output.json(credits) }
            Output.write(Output.table(["ID", "KIND", "AMOUNT", "PAID", "GRANTED", "EXPIRES", "BY"], credits.items.map {
                [String($0.id), $0.kind, Money.text($0.amountMicros), Money.text($0.paidMicros), $0.grantedAt, $0.expiresAt ?? "-", $0.grantedBy]
            }))
        }
    }

    struct Grant: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "grant", abstract: "Give credit (cluster admins).",
            discussion: "fastgpu credits grant vision --trial 100 --expires 2027-03-01\nfastgpu credits grant vision --prepaid 10000 --paid 8000   # 20 % off for paying ahead")
        @OptionGroup var connection: ClientOptions
        @Argument(help: "The project.") var project: String
        @Option(help: "A free trial credit of this amount.") var trial: String?
        @Option(help: "Prepaid credit of this amount.") var prepaid: String?
        @Option(help: "What was paid for the prepaid credit (its amount when absent).") var paid: String?
        @Option(help: "When the credit expires (RFC 3339 or YYYY-MM-DD).") var expires: String?

        func run() async throws {
            guard (trial == nil) != (prepaid == nil) else { throw CommandFailure("give one of --trial AMOUNT or --prepaid AMOUNT") }
            let kind = trial != nil ? "trial" : "prepaid"
            let amount = try parseMoney(trial ?? prepaid!, flag: "--\(kind)")
            let credit = try await connection.client().grantCredit(project: project, GrantCreditBody(
                kind: kind, amountMicros: amount, paidMicros: try paid.map { try parseMoney($0, flag: "--paid") }, expiresAt: expires))
            Output.write("\(credit.kind) credit \(credit.id) of \(Money.text(credit.amountMicros)) given to \(project)\n")
        }
    }

    struct Package: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "package", abstract: "Put a project on a monthly package, or back on demand with --clear (cluster admins).",
            discussion: "fastgpu credits package vision --fee 1500 --gpu-hours 1000   # overage at on-demand prices")
        @OptionGroup var connection: ClientOptions
        @Argument(help: "The project.") var project: String
        @Option(help: "The monthly fee.") var fee: String?
        @Option(help: "GPU-hours included each month.") var gpuHours: Int64?
        @Flag(help: "Remove the package.") var clear = false

        func run() async throws {
            let client = try await connection.client()
            if clear {
                try await client.removePackage(project: project)
                return Output.write("\(project) is billed on demand\n")
            }
            guard let fee, let gpuHours else { throw CommandFailure("give --fee AMOUNT and --gpu-hours N, or --clear") }
            try await client.setPackage(project: project, PackageBody(monthlyFeeMicros: try parseMoney(fee, flag: "--fee"), allowanceGPUHours: gpuHours))
            Output.write("\(project): \(gpuHours) GPU-hours a month for \(Money.text(try parseMoney(fee, flag: "--fee")))\n")
        }
    }
}

struct QuotaCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quota", abstract: "A project's guaranteed GPUs and how many more it may borrow while others leave them idle.",
        discussion: """
            Work within the guarantee is the project's own; work beyond it runs borrowed and is preempted (with the stop \
            notice) when a project needs its guarantee back. Work beyond guarantee + borrowing limit waits (quotaExhausted). \
            Projects of a named cohort lend their idle guarantees only to each other (cohortFenced).
              fastgpu quota set vision --gpus 16 --model H100 --borrow 8
              fastgpu quota set speech --gpus H100=8 --gpus A100=16 --cohort lab
            """,
        subcommands: [Show.self, Set.self, Clear.self], defaultSubcommand: Show.self)

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "show", abstract: "The quota and what the project holds now.")
        @OptionGroup var connection: ClientOptions
        @OptionGroup var format: OutputOptions
        @Argument(help: "The project (default: the configured one).") var project: String?

        func run() async throws {
            let quota = try await connection.client().quota(project: ClientOptions.project(project))
            if format.json { return try Output.json(quota) }
            QuotaCommand.print(quota)
        }
    }

    struct Set: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "set", abstract: "Set the quota (cluster admins).")
        @OptionGroup var connection: ClientOptions
        @Argument(help: "The project.") var project: String
        @Option(help: "GPUs guaranteed (fractions allowed: 0.5); MODEL=N for one model's, repeated for several (--gpus H100=8 --gpus A100=16).")
        var gpus: [String]
        @Option(help: "Of this model only (H100), for a plain --gpus N; any model when absent.") var model: String?
        @Option(help: "At most this many GPUs more, borrowed; as many as are idle when absent.") var borrow: String?
        @Option(help: "Lend idle guarantees only to projects of this cohort (and borrow theirs); the whole cluster when absent.") var cohort: String?

        func run() async throws {
            func milli(_ text: String, _ flag: String) throws -> Int {
                guard let micros = Money.micros(text), micros % 1000 == 0 else { throw CommandFailure("\(flag) \(text): give GPUs such as 16 or 0.5") }
                return Int(micros / 1000)
            }
            guard !gpus.isEmpty, gpus.count <= 16 else { throw CommandFailure("give --gpus 1 to 16 times") }
            var guarantees: [SetQuotaBody.Guarantee] = []
            for text in gpus {
                if let equals = text.firstIndex(of: "=") {
                    guard model == nil else { throw CommandFailure("--gpus \(text) names its model; leave out --model") }
                    guarantees.append(.init(gpuModel: String(text[..<equals]), milliGPUs: try milli(String(text[text.index(after: equals)...]), "--gpus")))
                } else {
                    guarantees.append(.init(gpuModel: model, milliGPUs: try milli(text, "--gpus")))
                }
            }
            let quota = try await connection.client().setQuota(project: project, SetQuotaBody(
                guarantees: guarantees, borrowingLimitMilliGPUs: try borrow.map { try milli($0, "--borrow") }, cohort: cohort))
            QuotaCommand.print(quota)
        }
    }

    struct Clear: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "clear", abstract: "Remove the quota (cluster admins).")
        @OptionGroup var connection: ClientOptions
        @Argument(help: "The project.") var project: String

        func run() async throws {
            QuotaCommand.print(try await connection.client().removeQuota(project: project))
        }
    }

    static func gpus(_ milli: Int) -> String { milli % 1000 == 0 ? "\(milli / 1000)" : String(format: "%.3f", Double(milli) / 1000) }

    static func print(_ quota: QuotaWire) {
        var rows: [[String]] = []
        if quota.guarantees.isEmpty {
            rows.append(["guaranteed", "none (all its work is borrowed while any project has a quota)"])
        } else {
            for guarantee in quota.guarantees {
                rows.append(["guaranteed", "\(gpus(guarantee.milliGPUs)) \(guarantee.gpuModel ?? "any") GPUs (\(gpus(guarantee.inUseMilliGPUs)) in use)"])
            }
            rows.append(["may borrow", quota.borrowingLimitMilliGPUs.map { "\(gpus($0)) GPUs more" } ?? "what is idle"])
        }
        rows.append(["cohort", quota.cohort.map { "\($0) (lends idle guarantees only to its projects)" } ?? "the whole cluster"])
        rows.append(["in use", "\(gpus(quota.inUseMilliGPUs)) GPUs, \(gpus(quota.guaranteedInUseMilliGPUs)) of them within the guarantee"])
        Output.write("quota of \(quota.project)\n" + Output.pairs(rows))
    }
}
