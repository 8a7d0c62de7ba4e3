import Synchronization

/// The gateway's routing state behind one lock: routes, requests in flight per replica, requests
/// held per service while no replica can take them. Picks are power of two choices on in-flight
/// counts (Mitzenmacher): two random ready replicas under their cap, the less busy one wins.
final class GatewayTable: Sendable {
    struct Held {
        var id: UInt64
        var continuation: CheckedContinuation<GatewayService.Replica?, Never>
        /// False for a request sent again after a replica refused it: counted once, when it arrived.
        var counting = true
    }

    struct State {
        var version: UInt64 = 0
        var services: [String: GatewayService] = [:]
        var inFlight: [UInt64: Int] = [:]
        /// The service each allocation with requests in flight belongs to: a draining replica
        /// leaves the routes but its requests are still reported until they finish.
        var owner: [UInt64: String] = [:]
        var held: [String: [Held]] = [:]
        var arrivals: [String: Int] = [:]
        var nextHeld: UInt64 = 1
        var random = SplitMix64(seed: 0x5eed)
        /// Per service: requests answered, cold starts (requests that were held), refused with 503.
        var counters: [String: Counters] = [:]
        var lastRefresh: ContinuousClock.Instant?
        /// Replicas that refused a connection, passed over until then (a passive health check,
        /// as nginx's `max_fails`): the agent reports a dead replica within a second or so, and
        /// meanwhile no request is sent to fail on it.
        var unreachable: [UInt64: ContinuousClock.Instant] = [:]
    }

    static let unreachablePause = Duration.seconds(3)

    /// A replica refused a connection: no request goes to it for `unreachablePause`.
    func markUnreachable(_ replica: GatewayService.Replica) {
        state.withLock { $0.unreachable[replica.allocation] = .now + Self.unreachablePause }
    }

    struct Counters: Sendable {
        var requests = 0
        var held = 0
        var refused = 0
        /// Answers by latency (seconds, upper bounds of `GatewayTable.buckets`), their sum and count.
        var latencyBuckets = [Int](repeating: 0, count: GatewayTable.buckets.count)
        var latencySum = 0.0
        var answered = 0
    }

    static let buckets: [Double] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300]

    /// One answer passed on whole: its time from arrival at the gateway (holding included).
    func observe(_ service: String, seconds: Double) {
        let index = Self.buckets.firstIndex { seconds <= $0 }
        state.withLock { s in
            // In place: a copy of the counters would copy their bucket array on every answer.
            if let index { s.counters[service, default: Counters()].latencyBuckets[index] += 1 }
            s.counters[service, default: Counters()].latencySum += seconds
            s.counters[service, default: Counters()].answered += 1
        }
    }

    /// The gateway's metrics in Prometheus' text format.
    func prometheusText(gateway: String) -> String {
        state.withLock { s in
            var out = ""
            out += "# TYPE fastgpu_service_requests_total counter\n"
            for (name, c) in s.counters.sorted(by: { $0.key < $1.key }) {
                out += "fastgpu_service_requests_total{service=\"\(name)\",gateway=\"\(gateway)\"} \(c.requests)\n"
            }
            out += "# TYPE fastgpu_service_cold_start_requests_total counter\n"
            for (name, c) in s.counters.sorted(by: { $0.key < $1.key }) {
                out += "fastgpu_service_cold_start_requests_total{service=\"\(name)\",gateway=\"\(gateway)\"} \(c.held)\n"
            }
            out += "# TYPE fastgpu_service_refused_total counter\n"
            for (name, c) in s.counters.sorted(by: { $0.key < $1.key }) {
                out += "fastgpu_service_refused_total{service=\"\(name)\",gateway=\"\(gateway)\"} \(c.refused)\n"
            }
            // Each family's samples follow its own TYPE line, as the text format requires.
            let names = s.services.keys.sorted()
            out += "# TYPE fastgpu_service_in_flight gauge\n"
            for name in names {
                let inFlight = s.inFlight.reduce(0) { $0 + (s.owner[$1.key] == name ? $1.value : 0) }
                out += "fastgpu_service_in_flight{service=\"\(name)\",gateway=\"\(gateway)\"} \(inFlight)\n"
            }
            out += "# TYPE fastgpu_service_held gauge\n"
            for name in names {
                out += "fastgpu_service_held{service=\"\(name)\",gateway=\"\(gateway)\"} \(s.held[name]?.count ?? 0)\n"
            }
            out += "# TYPE fastgpu_service_request_seconds histogram\n"
            for (name, c) in s.counters.sorted(by: { $0.key < $1.key }) {
                var cumulative = 0
                for (index, bound) in Self.buckets.enumerated() {
                    cumulative += c.latencyBuckets[index]
                    out += "fastgpu_service_request_seconds_bucket{service=\"\(name)\",gateway=\"\(gateway)\",le=\"\(bound)\"} \(cumulative)\n"
                }
                out += "fastgpu_service_request_seconds_bucket{service=\"\(name)\",gateway=\"\(gateway)\",le=\"+Inf\"} \(c.answered)\n"
                out += "fastgpu_service_request_seconds_sum{service=\"\(name)\",gateway=\"\(gateway)\"} \(c.latencySum)\n"
                out += "fastgpu_service_request_seconds_count{service=\"\(name)\",gateway=\"\(gateway)\"} \(c.answered)\n"
            }
            return out
        }
    }

    let state = Mutex(State())
    let maxHeldPerService: Int

    init(maxHeldPerService: Int) { self.maxHeldPerService = maxHeldPerService }

    func service(_ name: String) -> GatewayService? { state.withLock { $0.services[name] } }

    /// A replica for the next request of `service`, its in-flight count taken; nil: none can take it now.
    func pick(_ service: String, counting: Bool = true) -> GatewayService.Replica? {
        state.withLock { s in
            if counting { s.arrivals[service, default: 0] += 1 }
            guard s.held[service]?.isEmpty ?? true else { return nil }
            return Self.take(service, in: &s, counting: counting)
        }
    }

    private static func take(_ service: String, in s: inout State, counting: Bool) -> GatewayService.Replica? {
        guard let route = s.services[service] else { return nil }
        if !s.unreachable.isEmpty {
            let now = ContinuousClock.now
            s.unreachable = s.unreachable.filter { $0.value > now }
        }
        let unreachable = s.unreachable
        let open = route.replicas.filter {
            (route.concurrencyLimit == 0 || s.inFlight[$0.allocation, default: 0] < route.concurrencyLimit) && unreachable[$0.allocation] == nil
        }
        guard !open.isEmpty else { return nil }
        var chosen = open[0]
        if open.count > 1 {
            let a = Int(s.random.next() % UInt64(open.count))
            var b = Int(s.random.next() % UInt64(open.count - 1))
            if b >= a { b += 1 }
            chosen = s.inFlight[open[a].allocation, default: 0] <= s.inFlight[open[b].allocation, default: 0] ? open[a] : open[b]
        }
        s.inFlight[chosen.allocation, default: 0] += 1
        s.owner[chosen.allocation] = service
        if counting { s.counters[service, default: Counters()].requests += 1 }
        return chosen
    }

    /// Holds a request until a replica can take it; nil when the queue is full. The returned id
    /// lets its timeout give up on it.
    func hold(_ service: String, _ continuation: CheckedContinuation<GatewayService.Replica?, Never>, id: UInt64, counting: Bool = true) -> Bool {
        let (accepted, immediate): (Bool, GatewayService.Replica?) = state.withLock { s in
            if (s.held[service]?.isEmpty ?? true), let replica = Self.take(service, in: &s, counting: counting) { return (true, replica) }
            guard s.held[service, default: []].count < maxHeldPerService else {
                s.counters[service, default: Counters()].refused += 1
                return (false, nil)
            }
            s.held[service, default: []].append(Held(id: id, continuation: continuation, counting: counting))
            if counting { s.counters[service, default: Counters()].held += 1 }
            return (true, nil)
        }
        if let immediate { continuation.resume(returning: immediate) }
        if !accepted { continuation.resume(returning: nil) }
        return accepted
    }

    func nextHeldID() -> UInt64 { state.withLock { s in defer { s.nextHeld += 1 }; return s.nextHeld } }

    /// A held request's timeout passed: it leaves the queue with nothing.
    func giveUp(_ service: String, id: UInt64) {
        let gone = state.withLock { s -> Held? in
            guard let index = s.held[service]?.firstIndex(where: { $0.id == id }) else { return nil }
            s.counters[service, default: Counters()].refused += 1
            return s.held[service]?.remove(at: index)
        }
        gone?.continuation.resume(returning: nil)
    }

    func release(_ service: String, _ replica: GatewayService.Replica) {
        let woken = state.withLock { s -> [(Held, GatewayService.Replica)] in
            if let count = s.inFlight[replica.allocation] {
                s.inFlight[replica.allocation] = count > 1 ? count - 1 : nil
                if count <= 1 { s.owner[replica.allocation] = nil }
            }
            return Self.dispatch(service, in: &s)
        }
        for (held, replica) in woken { held.continuation.resume(returning: replica) }
    }

    /// Held requests that replicas can take now, taken off the queue in order.
    private static func dispatch(_ service: String, in s: inout State) -> [(Held, GatewayService.Replica)] {
        var woken: [(Held, GatewayService.Replica)] = []
        while let first = s.held[service]?.first, let replica = take(service, in: &s, counting: first.counting) {
            s.held[service]?.removeFirst()
            woken.append((first, replica))
        }
        return woken
    }

    /// New routes: held requests go to replicas that became ready. A removed service's held
    /// requests end with nothing.
    func update(_ routes: GatewayRoutes) {
        let (woken, dropped) = state.withLock { s -> ([(Held, GatewayService.Replica)], [Held]) in
            s.version = routes.version
            s.services = Dictionary(routes.services.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
            var woken: [(Held, GatewayService.Replica)] = []
            var dropped: [Held] = []
            for name in s.held.keys {
                if s.services[name] == nil {
                    dropped += s.held[name] ?? []
                    s.held[name] = nil
                } else {
                    woken += Self.dispatch(name, in: &s)
                }
            }
            return (woken, dropped)
        }
        for (held, replica) in woken { held.continuation.resume(returning: replica) }
        for held in dropped { held.continuation.resume(returning: nil) }
    }

    var version: UInt64 { state.withLock { $0.version } }

    /// Whether an unknown name may trigger a read of the routes now (one per 200 ms at most).
    func mayRefresh() -> Bool {
        state.withLock { s in
            let now = ContinuousClock.now
            if let last = s.lastRefresh, now - last < .milliseconds(200) { return false }
            s.lastRefresh = now
            return true
        }
    }

    /// The load to report, and arrivals since the last report (reset).
    func load(gateway: String) -> GatewayLoadReport {
        state.withLock { s in
            var services: [GatewayLoadReport.Service] = []
            var inFlight: [String: [UInt64: Int]] = [:]
            for (allocation, count) in s.inFlight { if let name = s.owner[allocation] { inFlight[name, default: [:]][allocation] = count } }
            for name in Set(s.services.keys).union(inFlight.keys) {
                services.append(.init(name: name, inFlight: inFlight[name] ?? [:], held: s.held[name]?.count ?? 0, arrivals: s.arrivals[name] ?? 0))
            }
            s.arrivals = [:]
            return GatewayLoadReport(gateway: gateway, services: services.sorted { $0.name < $1.name })
        }
    }

    func heldCount(_ service: String) -> Int { state.withLock { $0.held[service]?.count ?? 0 } }
}

/// A small seeded generator for picks (no need for a cryptographic one on the hot path).
struct SplitMix64: Sendable {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
