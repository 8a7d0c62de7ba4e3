/// Typed identifiers. The store hands them out (integer row ids), so the pure core never mints one
/// except for allocations, which `ClusterState` numbers from its own counter to stay deterministic.
/// Integers keep the scheduler's hot loops free of string hashing; `description` gives the
/// prefixed form that the API and the CLI print (`job-42`, `node-7`).
public protocol TypedIdentifier: Hashable, Comparable, Sendable, CustomStringConvertible, Codable {
    static var prefix: String { get }
    var rawValue: UInt64 { get }
    init(_ rawValue: UInt64)
}

extension TypedIdentifier {
    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }
    public var description: String { "\(Self.prefix)-\(rawValue)" }

    /// Encoded as the bare number: ids are keys in a store, not objects.
    public init(from decoder: any Decoder) throws {
        self.init(try decoder.singleValueContainer().decode(UInt64.self))
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }

    /// Parses the prefixed form (`job-42`) or a bare number.
    public init?(parsing text: some StringProtocol) {
        var digits = Substring(text)
        if digits.hasPrefix(Self.prefix + "-") { digits = digits.dropFirst(Self.prefix.count + 1) }
        guard let value = UInt64(digits) else { return nil }
        self.init(value)
    }
}

public struct JobID: TypedIdentifier {
    public static let prefix = "job"
    public let rawValue: UInt64
    public init(_ rawValue: UInt64) { self.rawValue = rawValue }
}

public struct NodeID: TypedIdentifier {
    public static let prefix = "node"
    public let rawValue: UInt64
    public init(_ rawValue: UInt64) { self.rawValue = rawValue }
}

public struct ProjectID: TypedIdentifier {
    public static let prefix = "project"
    public let rawValue: UInt64
    public init(_ rawValue: UInt64) { self.rawValue = rawValue }
}

public struct AllocationID: TypedIdentifier {
    public static let prefix = "alloc"
    public let rawValue: UInt64
    public init(_ rawValue: UInt64) { self.rawValue = rawValue }
}

/// One task of one job: the unit that an allocation runs.
public struct TaskRef: Hashable, Comparable, Sendable, CustomStringConvertible, Codable {
    public var job: JobID
    /// Index into `Job.taskGroups`.
    public var group: Int
    /// Index of the task inside its group, `0..<count`.
    public var index: Int

    public init(job: JobID, group: Int, index: Int) {
        self.job = job
        self.group = group
        self.index = index
    }

    public static func < (lhs: TaskRef, rhs: TaskRef) -> Bool {
        (lhs.job, lhs.group, lhs.index) < (rhs.job, rhs.group, rhs.index)
    }

    public var description: String { "\(job)/\(group)/\(index)" }
}

/// A fencing token. Every allocation carries the epoch of the state change that created or last
/// changed it; an agent drops any command whose epoch is older than the one it holds.
public struct Epoch: Hashable, Comparable, Sendable, CustomStringConvertible, Codable {
    public let rawValue: UInt64
    public init(_ rawValue: UInt64) { self.rawValue = rawValue }
    public static func < (lhs: Epoch, rhs: Epoch) -> Bool { lhs.rawValue < rhs.rawValue }
    public var description: String { "epoch-\(rawValue)" }
}

extension Epoch {
    /// Encodes as a bare integer, like the typed identifiers.
    public init(from decoder: any Decoder) throws {
        rawValue = try decoder.singleValueContainer().decode(UInt64.self)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }
}
