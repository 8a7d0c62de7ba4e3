/// What a charge is for: one GPU model, CPU cores, or memory. GPU shares and MIG instances are
/// charged as their GPU model, pro rata to their slice (a share's milli-GPUs, a MIG instance's
/// compute slices out of seven), so one price per model covers every way of using it.
public enum SKU: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// A GPU model as nodes report it (`H100-80GB`); the price book's `gpu:H100` covers it.
    case gpu(model: String)
    case cpu
    case memory

    /// `gpu:H100-80GB`, `cpu`, `memory`: the SKU's name in the price book, the ledger and the API.
    public var description: String {
        switch self {
        case .gpu(let model): "gpu:\(model)"
        case .cpu: "cpu"
        case .memory: "memory"
        }
    }

    public init?(_ text: String) {
        switch text {
        case "cpu": self = .cpu
        case "memory": self = .memory
        default:
            guard text.hasPrefix("gpu:"), text.count > 4, text.count <= 68 else { return nil }
            let model = String(text.dropFirst(4))
            guard model.utf8.allSatisfy({ $0 > 32 && $0 < 127 && $0 != UInt8(ascii: "/") }) else { return nil }
            self = .gpu(model: model)
        }
    }

    public static func < (lhs: SKU, rhs: SKU) -> Bool { lhs.description < rhs.description }

    /// The unit a price is per hour of: one GPU, one core, one GiB.
    public var unit: String {
        switch self {
        case .gpu: "GPU"
        case .cpu: "core"
        case .memory: "GiB"
        }
    }

    /// Quantities are integers in a sub-unit: milli-GPUs, milli-cores, MiB.
    public var subUnitsPerUnit: Int64 {
        switch self {
        case .gpu, .cpu: 1000
        case .memory: 1024
        }
    }

    /// A price per unit-hour turns into money over `subUnitsPerUnit × 3,600,000` sub-unit-milliseconds.
    public var usageDivisor: Int64 { subUnitsPerUnit * 3_600_000 }
}

/// How the work was sold: at the on-demand price, or as preemptible spot work at a discount.
public enum BillingTier: String, Hashable, Comparable, Sendable, Codable, CaseIterable {
    case onDemand = "on-demand"
    case spot

    public static func < (lhs: BillingTier, rhs: BillingTier) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// One version of the price book: on-demand prices in integer micro-units of the currency per
/// unit-hour (`gpu:H100` 2,490,000 = 2.49 an H100-hour), and spot as a percentage of on-demand.
///
/// Prices are per hour because that is how every GPU cloud publishes them (a per-second price in
/// micro-units cannot say 2.49 an hour); usage is metered to the millisecond and priced exactly,
/// so nothing is lost to the unit. A `gpu` entry prices every GPU model without its own.
public struct PriceVersion: Hashable, Sendable, Codable {
    public var version: Int
    /// From when its prices apply; a version's prices apply until the next version's effective time.
    public var effectiveAt: Timestamp
    /// SKU name (`gpu:H100`, `gpu`, `cpu`, `memory`) → micro-units per unit-hour.
    public var onDemandMicrosPerHour: [String: Int64]
    /// Spot work costs this percentage of the on-demand price (40: a 60 % discount).
    public var spotPercent: Int

    public init(version: Int, effectiveAt: Timestamp, onDemandMicrosPerHour: [String: Int64], spotPercent: Int) {
        self.version = version
        self.effectiveAt = effectiveAt
        self.onDemandMicrosPerHour = onDemandMicrosPerHour
        self.spotPercent = spotPercent
    }

    /// The largest price one entry may have: 1,000,000.00 per unit-hour keeps every product in range.
    public static let maxMicrosPerHour: Int64 = 1_000_000_000_000

    /// Why the version is unacceptable, or nil.
    public static func validate(onDemandMicrosPerHour prices: [String: Int64], spotPercent: Int) -> String? {
        guard (0...100).contains(spotPercent) else { return "spotPercent must be 0…100" }
        guard prices.count <= 256 else { return "a price book holds at most 256 prices" }
        for (name, price) in prices {
            guard name == "gpu" || SKU(name) != nil else { return "unknown SKU \(name.prefix(70)): use gpu, gpu:MODEL, cpu or memory" }
            guard (0...maxMicrosPerHour).contains(price) else { return "the price of \(name) must be 0…\(maxMicrosPerHour) micro-units per hour" }
        }
        return nil
    }

    /// The on-demand price of a SKU: a GPU model's own (`gpu:H100` for `H100-80GB`, the longest
    /// matching name winning), else the `gpu` price; 0 for what the book does not price.
    public func onDemandPrice(of sku: SKU) -> Int64 {
        switch sku {
        case .cpu: return onDemandMicrosPerHour["cpu"] ?? 0
        case .memory: return onDemandMicrosPerHour["memory"] ?? 0
        case .gpu(let model):
            if let exact = onDemandMicrosPerHour["gpu:\(model)"] { return exact }
            var best: (length: Int, price: Int64)?
            for (name, price) in onDemandMicrosPerHour where name.hasPrefix("gpu:") {
                let requested = String(name.dropFirst(4))
                if GPUModelName.matches(requested: requested, offered: model), requested.count > (best?.length ?? -1) { best = (requested.count, price) }
            }
            return best?.price ?? onDemandMicrosPerHour["gpu"] ?? 0
        }
    }

    /// The price of a SKU in a tier, in micro-units per unit-hour (spot rounded down).
    public func price(of sku: SKU, tier: BillingTier) -> Int64 {
        let onDemand = onDemandPrice(of: sku)
        switch tier {
        case .onDemand: return onDemand
        case .spot: return onDemand * Int64(spotPercent) / 100
        }
    }
}

/// Every price version, in effective order. A change is a new version effective from a time on;
/// charges record the version that priced them, so an invoice can always say why.
public struct PriceBook: Hashable, Sendable {
    /// Sorted by `effectiveAt`, then `version`; never empty.
    public private(set) var versions: [PriceVersion]

    public init(versions: [PriceVersion]) {
        let sorted = versions.sorted { ($0.effectiveAt, $0.version) < ($1.effectiveAt, $1.version) }
        self.versions = sorted.isEmpty ? [PriceBook.standard] : sorted
    }

    /// The book a new cluster starts with: list prices of the common GPU clouds in 2026, CPU and
    /// memory beside them, spot at 40 % of on-demand. An operator replaces it (`fastgpu prices set`).
    public static let standard = PriceVersion(version: 1, effectiveAt: .zero, onDemandMicrosPerHour: [
        "gpu": 1_000_000,
        "gpu:H200": 3_490_000,
        "gpu:H100": 2_490_000,
        "gpu:A100-80GB": 1_790_000,
        "gpu:A100": 1_290_000,
        "gpu:L40S": 990_000,
        "gpu:L4": 490_000,
        "gpu:A10": 750_000,
        "gpu:T4": 350_000,
        "gpu:V100": 550_000,
        "cpu": 20_000,
        "memory": 2_500,
    ], spotPercent: 40)

    /// The version in effect at `time`.
    public func version(at time: Timestamp) -> PriceVersion {
        var current = versions[0]
        for version in versions.dropFirst() {
            if version.effectiveAt <= time { current = version } else { break }
        }
        return current
    }

    /// The times in `(from, to)` where another version takes effect: metering cuts a segment there.
    public func changes(after from: Timestamp, before to: Timestamp) -> [Timestamp] {
        versions.lazy.map(\.effectiveAt).filter { $0 > from && $0 < to }
    }

    /// Adds a version; its number follows the largest so far.
    public mutating func add(effectiveAt: Timestamp, onDemandMicrosPerHour: [String: Int64], spotPercent: Int) -> PriceVersion {
        let version = PriceVersion(version: (versions.map(\.version).max() ?? 0) + 1, effectiveAt: effectiveAt,
                                   onDemandMicrosPerHour: onDemandMicrosPerHour, spotPercent: spotPercent)
        self = PriceBook(versions: versions + [version])
        return version
    }
}
