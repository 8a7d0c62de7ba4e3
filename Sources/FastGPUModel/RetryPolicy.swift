/// How a task lost with its node (or its agent) is retried: after a backoff that doubles with
/// each attempt, up to a cap. A job's `JobLaunch.maxAttempts` says how many attempts it gets.
public struct RetryPolicy: Hashable, Sendable, Codable {
    public var base: Duration
    public var cap: Duration

    public init(base: Duration = .seconds(10), cap: Duration = .seconds(300)) {
        self.base = base
        self.cap = cap
    }

    /// No wait: the task may be placed again in the next pass.
    public static let immediate = RetryPolicy(base: .zero, cap: .zero)

    /// `base × 2^(attempt − 1)`, at most `cap`.
    public func backoff(attempt: Int) -> Duration {
        var delay = base
        for _ in 1..<max(1, attempt) where delay < cap { delay = delay * 2 }
        return min(delay, cap)
    }
}

/// One allocation of a job that has ended: the job's attempt history, as the reducer wrote it.
public struct Attempt: Hashable, Sendable, Codable {
    public var allocation: Allocation
    public var outcome: AllocationOutcome
    public var cause: EndCause
    public var endedAt: Timestamp

    public init(allocation: Allocation, outcome: AllocationOutcome, cause: EndCause, endedAt: Timestamp) {
        self.allocation = allocation
        self.outcome = outcome
        self.cause = cause
        self.endedAt = endedAt
    }
}
