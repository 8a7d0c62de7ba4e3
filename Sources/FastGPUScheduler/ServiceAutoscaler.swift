public import FastGPUModel

/// The load on a service at one moment, summed over every gateway that reported it.
public struct LoadSample: Hashable, Sendable {
    public var at: Timestamp
    /// Requests in flight at replicas plus requests the gateways hold (waiting for a replica).
    public var inFlight: Int
    /// Requests that arrived since the previous sample.
    public var arrivals: Int
    public init(at: Timestamp, inFlight: Int, arrivals: Int) {
        self.at = at
        self.inFlight = inFlight
        self.arrivals = arrivals
    }
}

/// Why the autoscaler asked for a replica count, and the figures it read (every decision is an event).
public struct ScalingDecision: Hashable, Sendable {
    public enum Reason: String, Hashable, Sendable, Codable {
        /// A request arrived at zero replicas.
        case wake
        /// The stable window's average asks for more.
        case scaleUp
        /// The panic window's load doubled what ready replicas serve.
        case panic
        /// Lower load held for the scale-down delay.
        case scaleDown
        /// No request for the idle period.
        case scaleToZero
        /// `replicas.min` or `replicas.max` moved the count.
        case bounds
    }

    public var desired: Int
    public var reason: Reason
    /// Load per window in thousandths (of requests in flight, or of requests per second).
    public var stableMilli: Int
    public var panicMilli: Int
    public var panicking: Bool
}

/// Knative's KPA on a virtual clock: desired = ceil(load ÷ target) averaged over a stable window
/// (60 s); a panic window (6 s) takes over when it asks for twice the ready replicas, and panic
/// mode never scales down until a stable window has passed without panic. A lower count must
/// hold for the scale-down delay; zero comes only after the idle period with nothing in flight.
///
/// Pure: samples and `now` come from the caller, so tests move time by hand.
public struct ServiceAutoscaler: Sendable {
    public private(set) var samples: [LoadSample] = []
    public private(set) var panicUntil: Timestamp?
    /// Since when the computed count has been below the current one.
    public private(set) var lowerSince: Timestamp?
    public private(set) var lastArrival: Timestamp?

    public init() {}

    public mutating func record(_ sample: LoadSample, spec: AutoscalingSpec) {
        samples.append(sample)
        if sample.arrivals > 0 || sample.inFlight > 0 { lastArrival = sample.at }
        let horizon = sample.at.millisecondsSinceEpoch - spec.stableWindow.wholeMilliseconds
        if let first = samples.firstIndex(where: { $0.at.millisecondsSinceEpoch >= horizon }), first > 0 { samples.removeFirst(first) }
    }

    /// The count to run now. `current` is the count asked for so far, `ready` how many serve.
    public mutating func decide(now: Timestamp, current: Int, ready: Int, range: ReplicaRange, spec: AutoscalingSpec) -> ScalingDecision {
        let stable = load(over: spec.stableWindow, now: now, metric: spec.metric)
        let panic = load(over: spec.panicWindow, now: now, metric: spec.metric)
        let target = Int64(max(1, spec.target)) * 1000
        let wantStable = Int((stable + target - 1) / target)
        let wantPanic = Int((panic + target - 1) / target)
        // Panic when the short window asks for twice what serves now.
        if wantPanic >= 2 * max(ready, 1) && wantPanic > current {
            panicUntil = now + spec.stableWindow
        } else if let until = panicUntil, now >= until {
            panicUntil = nil
        }
        let panicking = panicUntil != nil
        let inFlightNow = samples.last.map { $0.inFlight } ?? 0
        var desired: Int
        var reason: ScalingDecision.Reason
        if panicking {
            desired = max(current, wantPanic)
            reason = .panic
        } else {
            desired = wantStable
            reason = desired > current ? .scaleUp : .scaleDown
        }
        if current == 0 && inFlightNow > 0 {
            desired = max(desired, 1)
            reason = .wake
        }
        // Zero only after the idle period with nothing in flight; otherwise one replica stays.
        if desired == 0 {
            let idleMilliseconds = lastArrival.map { now.milliseconds(since: $0) } ?? Int64.max
            if range.min > 0 || inFlightNow > 0 || (current > 0 && idleMilliseconds < spec.scaleToZeroAfter.wholeMilliseconds) {
                desired = current > 0 ? 1 : 0
            } else if current > 0 {
                reason = .scaleToZero
            }
        }
        let bounded = Swift.min(Swift.max(desired, range.min), range.max)
        // A count the bounds moved is theirs; above a lowered max, it drops at once.
        if bounded > desired || (bounded < desired && current > range.max) { reason = .bounds }
        desired = bounded
        // Fewer replicas only once the lower count held for the delay (scale to zero has its own).
        if desired < current && reason != .scaleToZero && reason != .bounds {
            let since = lowerSince ?? now
            lowerSince = since
            if now.milliseconds(since: since) < spec.scaleDownDelay.wholeMilliseconds { desired = current }
        } else if desired >= current {
            lowerSince = nil
        }
        return ScalingDecision(desired: desired, reason: reason, stableMilli: Int(stable), panicMilli: Int(panic), panicking: panicking)
    }

    /// The window's load in thousandths: average in-flight, or arrivals per second.
    func load(over window: Duration, now: Timestamp, metric: ScalingMetric) -> Int64 {
        let start = now.millisecondsSinceEpoch - window.wholeMilliseconds
        let inWindow = samples.filter { $0.at.millisecondsSinceEpoch > start }
        guard !inWindow.isEmpty else { return 0 }
        switch metric {
        case .concurrency:
            return inWindow.reduce(Int64(0)) { $0 + Int64($1.inFlight) } * 1000 / Int64(inWindow.count)
        case .rps:
            let arrivals = inWindow.reduce(Int64(0)) { $0 + Int64($1.arrivals) }
            return arrivals * 1_000_000 / Swift.max(1, window.wholeMilliseconds)
        }
    }
}
