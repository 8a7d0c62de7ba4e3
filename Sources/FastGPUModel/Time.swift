/// A point in time, in whole milliseconds since the Unix epoch.
///
/// The pure core never reads a clock: the caller passes `now` (the control plane from its
/// injected clock, the simulator from its virtual one), so the same input gives the same plan.
public struct Timestamp: Hashable, Comparable, Sendable, CustomStringConvertible, Codable {
    public var millisecondsSinceEpoch: Int64

    public init(millisecondsSinceEpoch: Int64) {
        self.millisecondsSinceEpoch = millisecondsSinceEpoch
    }

    public static func seconds(_ seconds: Int64) -> Timestamp {
        Timestamp(millisecondsSinceEpoch: seconds * 1000)
    }

    public static let zero = Timestamp(millisecondsSinceEpoch: 0)
    /// Stands for "never" (an allocation without an estimate never ends as far as backfill knows).
    public static let distantFuture = Timestamp(millisecondsSinceEpoch: .max / 4)

    public static func < (lhs: Timestamp, rhs: Timestamp) -> Bool {
        lhs.millisecondsSinceEpoch < rhs.millisecondsSinceEpoch
    }

    public static func + (lhs: Timestamp, rhs: Duration) -> Timestamp {
        Timestamp(millisecondsSinceEpoch: lhs.millisecondsSinceEpoch &+ rhs.wholeMilliseconds)
    }

    /// The time from `earlier` to `self`, never negative.
    public func milliseconds(since earlier: Timestamp) -> Int64 {
        max(0, millisecondsSinceEpoch - earlier.millisecondsSinceEpoch)
    }

    public var description: String { "t+\(millisecondsSinceEpoch)ms" }
}

extension Duration {
    /// Whole milliseconds, rounded toward zero; saturates instead of trapping on huge values.
    public var wholeMilliseconds: Int64 {
        let (seconds, attoseconds) = components
        let (scaled, overflow) = seconds.multipliedReportingOverflow(by: 1000)
        if overflow { return seconds < 0 ? .min / 4 : .max / 4 }
        return scaled + attoseconds / 1_000_000_000_000_000
    }
}

extension Timestamp {
    /// Encodes as a bare integer of milliseconds: a column of its own in a store, a number on the wire.
    public init(from decoder: any Decoder) throws {
        millisecondsSinceEpoch = try decoder.singleValueContainer().decode(Int64.self)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(millisecondsSinceEpoch)
    }
}
