import FastGPUAPI
import FastGPUControlPlane
import FastGPUModel
import FastGPUStore
import FastGPUStoreSQLite
import Foundation
import Testing

@Suite("API: metering, budgets, invoices")
struct BillingAPITests {
    /// Starts the job's allocations as their agent would; returns (allocation id, epoch) pairs.
    static func run(_ api: API, job: UInt64, node: (id: UInt64, token: String)) async throws {
        let view = try await api.get("/v1/jobs/\(job)", token: api.fixture.admin).json
        for allocation in view["allocations"]?.array ?? [] where allocation["live"]?.bool ?? true {
            let id = allocation["id"]?.int ?? 0, epoch = allocation["epoch"]?.int ?? 0
            let reply = try await api.post("/v1/nodes/\(node.id)/allocations/\(id)/status", token: node.token, body: #"{"epoch":\#(epoch),"state":"running"}"#)
            #expect(reply.status == .noContent, "\(reply.detail)")
        }
    }

    /// Prices GPUs only (H100 2.49 an hour, any other 1.00), from now: the figures below are GPU time alone.
    static func gpuOnlyPrices(_ api: API) async throws {
        let reply = try await api.post("/v1/prices", token: api.fixture.admin, body: #"{"prices":{"gpu:H100":2490000,"gpu":1000000}}"#)
        #expect(reply.status == .created, "\(reply.detail)")
    }

    static func exit(_ api: API, job: UInt64, node: (id: UInt64, token: String)) async throws {
        let view = try await api.get("/v1/jobs/\(job)", token: api.fixture.admin).json
        for allocation in view["allocations"]?.array ?? [] {
            let id = allocation["id"]?.int ?? 0, epoch = allocation["epoch"]?.int ?? 0
            _ = try await api.post("/v1/nodes/\(node.id)/allocations/\(id)/status", token: node.token, body: #"{"epoch":\#(epoch),"state":"exited","exitCode":0}"#)
        }
    }

    @Test func aJobIsChargedItsRunTimeTimesThePriceToTheMicroUnitAndARestartChangesNothing() async throws {
        let fixture = try await Fixture.make()
        try await fixture.test { api in
            let node = try await api.register("n1", gpus: 8)
            try await Self.gpuOnlyPrices(api)
            let job = try await api.submit(fixture.admin, gpus: 2)
            try await fixture.schedule()
            try await Self.run(api, job: job, node: node)
            // 150 s: two whole segments are charged, the third is open.
            fixture.clock.advance(by: .milliseconds(150_000))
            _ = try await api.post("/v1/nodes/\(node.id)/heartbeat", token: node.token)
            try await fixture.controlPlane.meterRunning()
            let running = try await api.get("/v1/jobs/\(job)", token: fixture.admin).json
            // 2 H100s × 120 s × 2.49 an hour = 0.166 exactly.
            #expect(running["costMicros"]?.int == 166_000)
            // It exits at 170.5 s: the last part segment is charged with the exit.
            fixture.clock.advance(by: .milliseconds(20_500))
            try await Self.exit(api, job: job, node: node)
            let done = try await api.get("/v1/jobs/\(job)", token: fixture.admin).json
            #expect(done["state"]?.string == "succeeded")
            // 2 × 170.5 s × 2.49 / 3600 = 341 × 2.49 / 3600 = 0.235858 (0.2358583…, rounded down once).
            #expect(done["costMicros"]?.int == 235_858)
            let invoice = try await api.get("/v1/projects/default/invoices/2027-01", token: fixture.admin).json
            #expect(invoice["status"]?.string == "open")
            #expect(invoice["lines"]?[0]?["sku"]?.string == "gpu:H100-80GB")
            #expect(invoice["usageMicros"]?.int == 235_858 && invoice["totalMicros"]?.int == 235_858)
            let usage = try await api.get("/v1/projects/default/usage?by=job&from=2027-01-01", token: fixture.admin).json
            #expect(usage["items"]?[0]?["key"]?.string == "job-\(job)" && usage["amountMicros"]?.int == 235_858)
            #expect(usage["milliGPUHours"]?.int == 94) // 341 GPU-seconds = 0.0947 GPU-hours
            let charges = try await fixture.openStore().charges(of: JobID(UInt64(job)), limit: 100)
            #expect(charges.count == 3 && charges.allSatisfy { $0.end.milliseconds(since: $0.start) <= 60_000 })
            #expect(charges.reduce(0) { $0 + $1.usage } == 2000 * 170_500)
        }
        // A restart rebuilds the totals from the ledger: the same cost, and metering again charges nothing twice.
        let again = try await fixture.restarted()
        try await again.test { api in
            try await again.controlPlane.meterRunning()
            #expect(try await api.get("/v1/jobs/1", token: again.admin).json["costMicros"]?.int == 235_858)
            #expect(try await api.get("/v1/projects/default/budget", token: again.admin).json["spentMicros"]?.int == 235_858)
        }
    }

    @Test func aRunningJobKeepsItsMeteringAcrossARestart() async throws {
        let fixture = try await Fixture.make()
        let node = try await fixture.test { api in
            let node = try await api.register("n1", gpus: 8)
            try await Self.gpuOnlyPrices(api)
            _ = try await api.submit(fixture.admin, gpus: 1)
            try await fixture.schedule()
            try await Self.run(api, job: 1, node: node)
            fixture.clock.advance(by: .seconds(90))
            try await fixture.controlPlane.meterRunning()
            return node
        }
        let again = try await fixture.restarted()
        try await again.test { api in
            again.clock.advance(by: .seconds(40))
            try await again.controlPlane.meterRunning()
            try await Self.exit(api, job: 1, node: node)
            // 130 s of one H100 whatever the restart: 130 × 2.49 / 3600 = 0.089916 (…6̅).
            #expect(try await api.get("/v1/jobs/1", token: again.admin).json["costMicros"]?.int == 89_916)
            let charges = try await again.openStore().charges(of: JobID(1), limit: 100)
            #expect(charges.map(\.segment) == [0, 1, 2])
        }
    }

    @Test func jobsRacingForTheLastBudgetAreAdmittedExactlyAsFarAsItHolds() async throws {
        let fixture = try await Fixture.make()
        try await fixture.test { api in
            _ = try await api.register("n1", gpus: 8)
            try await Self.gpuOnlyPrices(api)
            // Each job reserves 1 H100 for 1 hour = 2.49; a 10.00 budget holds four of them.
            let set = try await api.call(.put, "/v1/projects/default/budget", token: fixture.admin, body: #"{"limitMicros":10000000,"defaultMaxRuntimeSeconds":3600}"#)
            #expect(set.status == .ok, "\(set.detail)")
            let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<12 {
                    group.addTask {
                        let reply = try await api.post("/v1/jobs", token: fixture.admin, body: #"{"project":"default","command":["x"],"resources":{"gpus":1}}"#)
                        return Int(reply.status.code)
                    }
                }
                return try await group.reduce(into: [Int]()) { $0.append($1) }
            }
            #expect(statuses.filter { $0 == 201 }.count == 4)
            #expect(statuses.filter { $0 == 402 }.count == 8)
            let budget = try await api.get("/v1/projects/default/budget", token: fixture.admin).json
            #expect(budget["reservedMicros"]?.int == Int64(9_960_000))
            let refused = try await api.post("/v1/jobs", token: fixture.admin, body: #"{"project":"default","command":["x"],"resources":{"gpus":1}}"#)
            #expect(refused.status.code == 402 && refused.detail.contains("budgetExhausted"))
            // A job with a shorter limit still fits in what is left (0.04): 57 s of an H100 is 0.039425.
            let short = try await api.post("/v1/jobs", token: fixture.admin, body: #"{"project":"default","command":["x"],"resources":{"gpus":1},"maxRuntimeSeconds":57}"#)
            #expect(short.status == .created, "\(short.detail)")
            // Cancelling a job releases what it held.
            _ = try await api.post("/v1/jobs/1/cancel", token: fixture.admin)
            #expect(try await api.get("/v1/projects/default/budget", token: fixture.admin).json["reservedMicros"]?.int == Int64(3 * 2_490_000 + 39_425))
        }
    }

    @Test func aPriceChangeAppliesFromItsTimeAndInvoicesBecomeFinal() async throws {
        let fixture = try await Fixture.make()
        try await fixture.test { api in
            let node = try await api.register("n1", gpus: 8)
            try await Self.gpuOnlyPrices(api)
            let now = fixture.clock.now().millisecondsSinceEpoch
            let past = try await api.post("/v1/prices", token: fixture.admin, body: #"{"prices":{"gpu":1000000},"effectiveAt":"2020-01-01T00:00:00Z"}"#)
            #expect(past.status.code == 422)
            // From 60 s on, every GPU costs 3.60 an hour (0.001 a GPU-second).
            let effective = RFC3339Text.format(now + 60_000)
            let change = try await api.post("/v1/prices", token: fixture.admin, body: #"{"prices":{"gpu":3600000},"effectiveAt":"\#(effective)"}"#)
            #expect(change.status == .created, "\(change.detail)")
            #expect(try await api.get("/v1/prices", token: fixture.admin).json["current"]?.int == 2)
            _ = try await api.submit(fixture.admin, gpus: 1)
            try await fixture.schedule()
            try await Self.run(api, job: 1, node: node)
            fixture.clock.advance(by: .seconds(100))
            try await Self.exit(api, job: 1, node: node)
            // 60 s at 2.49 (0.0415) + 40 s at 3.60 (0.04).
            #expect(try await api.get("/v1/jobs/1", token: fixture.admin).json["costMicros"]?.int == 41_500 + 40_000)
            let month = BillingMonth(containing: fixture.clock.now())
            let open = try await api.get("/v1/projects/default/invoices/\(month)", token: fixture.admin).json
            #expect(open["lines"]?.array.count == 2 && open["status"]?.string == "open")
            // After the month and its grace, the invoice is issued and never changes again.
            fixture.clock.advance(by: .milliseconds(month.end.millisecondsSinceEpoch - fixture.clock.now().millisecondsSinceEpoch + 600_001))
            try await fixture.controlPlane.meterRunning()
            let final = try await api.get("/v1/projects/default/invoices/\(month)", token: fixture.admin).json
            #expect(final["status"]?.string == "final" && final["totalMicros"]?.int == 81_500)
            let listed = try await api.get("/v1/projects/default/invoices", token: fixture.admin).json
            #expect(listed["items"]?[0]?["month"]?.string == month.description)
        }
    }

    @Test func atTheLimitSpotWorkStopsAndTheSoftThresholdWarnsOnce() async throws {
        let fixture = try await Fixture.make()
        try await fixture.test { api in
            let node = try await api.register("n1", gpus: 8)
            try await Self.gpuOnlyPrices(api)
            // 0.10 a month, soft at 50 %: one spot H100 (0.996 an hour) spends 0.05 in ~181 s and 0.10 in ~362 s.
            let set = try await api.call(.put, "/v1/projects/default/budget", token: fixture.admin,
                                         body: #"{"limitMicros":100000,"softPercent":50,"stopSpot":true,"defaultMaxRuntimeSeconds":360}"#)
            #expect(set.status == .ok, "\(set.detail)")
            let spot = try await api.submit(fixture.admin, gpus: 1, extra: #","spot":true"#)
            try await fixture.schedule()
            try await Self.run(api, job: spot, node: node)
            for _ in 0..<7 {
                fixture.clock.advance(by: .seconds(60))
                _ = try await api.post("/v1/nodes/\(node.id)/heartbeat", token: node.token)
                try await fixture.controlPlane.meterRunning()
            }
            let events = try await api.get("/v1/jobs/\(spot)/events", token: fixture.admin).json["items"]?.array.compactMap { $0["kind"]?.string } ?? []
            #expect(events.contains("cancelled"), "\(events)")
            #expect(try await api.get("/v1/jobs/\(spot)", token: fixture.admin).json["state"]?.string == "cancelled")
            let spent = try await api.get("/v1/projects/default/budget", token: fixture.admin).json["spentMicros"]?.int ?? 0
            #expect(spent >= 100_000 && spent < 100_000 + 16_600, "stopped within a minute's segment of the limit: \(spent)")
        }
    }

    @Test func creditsComeOffTheInvoiceAndTheDryRunPricesAJob() async throws {
        let fixture = try await Fixture.make()
        try await fixture.test { api in
            let node = try await api.register("n1", gpus: 8)
            try await Self.gpuOnlyPrices(api)
            #expect(try await api.post("/v1/projects/default/credits", token: fixture.admin, body: #"{"kind":"trial","amountMicros":100000}"#).status == .created)
            #expect(try await api.post("/v1/projects/default/credits", token: fixture.admin, body: #"{"kind":"bonus","amountMicros":1}"#).status == .badRequest)
            let estimate = try await api.post("/v1/jobs/estimate", token: fixture.admin,
                                              body: #"{"project":"default","command":["x"],"resources":{"gpus":2},"maxRuntimeSeconds":7200}"#).json
            #expect(estimate["perHourMicros"]?.int == 4_980_000 && estimate["forRuntimeMicros"]?.int == 9_960_000)
            #expect(estimate["estimatedStart"]?.string != nil && estimate["budgetAdmits"] == nil)
            _ = try await api.submit(fixture.admin, gpus: 1)
            try await fixture.schedule()
            try await Self.run(api, job: 1, node: node)
            fixture.clock.advance(by: .seconds(200))
            try await Self.exit(api, job: 1, node: node)
            let month = BillingMonth(containing: fixture.clock.now())
            let invoice = try await api.get("/v1/projects/default/invoices/\(month)", token: fixture.admin).json
            // 200 s of an H100: 0.138333; the trial covers 0.10 of it.
            #expect(invoice["usageMicros"]?.int == 138_333 && invoice["trialAppliedMicros"]?.int == 100_000 && invoice["totalMicros"]?.int == 38_333)
        }
    }
}

/// RFC 3339 for a test's request bodies.
enum RFC3339Text {
    static func format(_ milliseconds: Int64) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.string(from: Date(timeIntervalSince1970: Double(milliseconds) / 1000))
    }
}
