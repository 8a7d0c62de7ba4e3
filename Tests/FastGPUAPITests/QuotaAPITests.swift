import FastGPUAPI
import FastGPUControlPlane
import FastGPUModel
import Foundation
import Testing

@Suite("API: quotas with borrowing and reclaim")
struct QuotaAPITests {
    @Test func anOwnerReclaimsItsGuaranteeFromABorrowerWithinOnePassAndTheNotice() async throws {
        let fixture = try await Fixture.make()
        try await fixture.test { api in
            let node = try await api.register("n1", gpus: 8)
            _ = try await api.member("olga", of: "owner", role: "admin")
            _ = try await api.member("bert", of: "borrower", role: "admin")
            let set = try await api.call(.put, "/v1/projects/owner/quota", token: fixture.admin, body: #"{"gpuModel":"H100","guaranteedMilliGPUs":8000}"#)
            #expect(set.status == .ok, "\(set.detail)")
            // The owner is idle: the borrower, guaranteed nothing, takes all 8 GPUs, even at high priority.
            let borrowed = try await api.submit(fixture.admin, project: "borrower", gpus: 8, extra: #","priority":"high""#)
            try await fixture.schedule()
            try await BillingAPITests.run(api, job: borrowed, node: node)
            let started = try await api.get("/v1/jobs/\(borrowed)", token: fixture.admin).json["allocations"]?[0]
            // Its agent says what it runs: from now on, GPUs it may still be stopping are held.
            _ = try await api.post("/v1/nodes/\(node.id)/heartbeat", token: node.token,
                                   body: #"{"running":[{"allocation":\#(started?["id"]?.int ?? 0),"epoch":\#(started?["epoch"]?.int ?? 0)}]}"#)
            let running = try await api.get("/v1/jobs/\(borrowed)", token: fixture.admin).json
            #expect(running["state"]?.string == "running")
            #expect(try await api.get("/v1/projects/borrower/quota", token: fixture.admin).json["inUseMilliGPUs"]?.int == 8000)
            let victim = running["allocations"]?[0]?["id"]?.int ?? 0

            // The owner wants its guarantee: one pass preempts the borrower and places the owner.
            let submitted = try await api.post("/v1/jobs", token: fixture.admin, body: #"{"project":"owner","command":["train"],"resources":{"gpus":8,"gpuModel":"H100"}}"#)
            #expect(submitted.status == .created, "\(submitted.detail)")
            let owned = UInt64(submitted.json["id"]?.int ?? 0)
            #expect(try await fixture.schedule() == 1)
            let preempted = try await api.get("/v1/jobs/\(borrowed)", token: fixture.admin).json
            #expect(preempted["allocations"]?[0]?["outcome"]?.string == "preempted")
            #expect(try await api.get("/v1/jobs/\(owned)", token: fixture.admin).json["state"]?.string == "running")
            // The borrower's agent has its stop notice; the owner's work waits for those GPUs until the agent lets go.
            var assigned = try await api.get("/v1/nodes/\(node.id)/assignments", token: node.token).json
            #expect(assigned["allocations"]?.array.isEmpty == true)
            _ = try await api.post("/v1/nodes/\(node.id)/heartbeat", token: node.token, body: #"{"running":[]}"#)
            assigned = try await api.get("/v1/nodes/\(node.id)/assignments", token: node.token).json
            #expect(assigned["allocations"]?.array.count == 1 && assigned["allocations"]?[0]?["job"]?.int == Int64(owned))
            #expect(assigned["allocations"]?[0]?["allocation"]?["id"]?.int != victim)
            #expect(try await api.get("/v1/projects/owner/quota", token: fixture.admin).json["guaranteedInUseMilliGPUs"]?.int == 8000)

            // Guaranteed work does not yield to a borrower, whatever its priority: it waits.
            _ = try await api.submit(fixture.admin, project: "borrower", gpus: 8, extra: #","priority":"high""#)
            #expect(try await fixture.schedule() == 0)
            // Nor to another project's guaranteed claim of higher priority (guarantees over-sold here).
            _ = try await api.member("gus", of: "other", role: "admin")
            #expect(try await api.call(.put, "/v1/projects/other/quota", token: fixture.admin, body: #"{"guaranteedMilliGPUs":8000}"#).status == .ok)
            _ = try await api.submit(fixture.admin, project: "other", gpus: 8, extra: #","priority":"high""#)
            #expect(try await fixture.schedule() == 0)
            #expect(try await api.get("/v1/jobs/\(owned)", token: fixture.admin).json["state"]?.string == "running")
        }
    }

    @Test func workBeyondTheBorrowingLimitWaitsWithQuotaExhausted() async throws {
        let fixture = try await Fixture.make()
        try await fixture.test { api in
            _ = try await api.register("n1", gpus: 8)
            _ = try await api.member("bert", of: "borrower", role: "admin")
            let set = try await api.call(.put, "/v1/projects/borrower/quota", token: fixture.admin, body: #"{"guaranteedMilliGPUs":2000,"borrowingLimitMilliGPUs":2000}"#)
            #expect(set.status == .ok, "\(set.detail)")
            let first = try await api.submit(fixture.admin, project: "borrower", gpus: 4)
            try await fixture.schedule()
            let second = try await api.submit(fixture.admin, project: "borrower", gpus: 1)
            try await fixture.schedule()
            #expect(try await api.get("/v1/jobs/\(first)", token: fixture.admin).json["state"]?.string == "running")
            let waiting = try await api.get("/v1/jobs/\(second)", token: fixture.admin).json
            #expect(waiting["state"]?.string == "pending")
            #expect(waiting["queue"]?["reason"]?["code"]?.string == "quotaExhausted", "\(waiting["queue"] ?? .null)")
            #expect(waiting["queue"]?["reason"]?["message"]?.string?.contains("4 GPUs in use, 2 guaranteed and at most 2 more borrowed") == true)
            // A job that could never fit the quota is refused at once, not left waiting.
            let huge = try await api.post("/v1/jobs", token: fixture.admin, body: #"{"project":"borrower","command":["x"],"resources":{"gpus":5}}"#)
            #expect(huge.status.code == 422 && huge.detail.contains("lets it hold 4 at most"), "\(huge.detail)")
            let bad = try await api.call(.put, "/v1/projects/borrower/quota", token: fixture.admin, body: #"{"guaranteedMilliGPUs":-1}"#)
            #expect(bad.status.code == 422)
            // A limit of 0 borrows nothing: work of a model no guarantee covers waits, however
            // much the guarantee of another model leaves unused.
            _ = try await api.member("a", of: "a100s", role: "admin")
            #expect(try await api.call(.put, "/v1/projects/a100s/quota", token: fixture.admin,
                                       body: #"{"gpuModel":"A100","guaranteedMilliGPUs":8000,"borrowingLimitMilliGPUs":0}"#).status == .ok)
            let uncovered = try await api.submit(fixture.admin, project: "a100s", gpus: 1)
            try await fixture.schedule()
            #expect(try await api.get("/v1/jobs/\(uncovered)", token: fixture.admin).json["queue"]?["reason"]?["code"]?.string == "quotaExhausted")
        }
    }
}

@Suite("API: cohorts and guarantees per model")
struct CohortAPITests {
    @Test func aCohortLendsItsIdleGuaranteeOnlyToItsOwnProjectsAndReclaimsFromThemFirst() async throws {
        let fixture = try await Fixture.make()
        try await fixture.test { api in
            _ = try await api.register("n1", gpus: 8)
            _ = try await api.register("n2", gpus: 8)
            for project in ["vision", "speech", "outsider"] { _ = try await api.member("m-\(project)", of: project, role: "admin") }
            // vision is guaranteed 8 of the 16 GPUs and lends them only within cohort lab; speech is
            // in lab with no guarantee of its own; outsider has no quota at all.
            let vision = try await api.call(.put, "/v1/projects/vision/quota", token: fixture.admin, body: #"{"guaranteedMilliGPUs":8000,"cohort":"lab"}"#)
            #expect(vision.status == .ok, "\(vision.detail)")
            #expect(vision.json["cohort"]?.string == "lab" && vision.json["guarantees"]?[0]?["milliGPUs"]?.int == 8000)
            #expect(try await api.call(.put, "/v1/projects/speech/quota", token: fixture.admin, body: #"{"guaranteedMilliGPUs":0,"cohort":"lab"}"#).status == .ok)

            // The outsider may borrow the 8 GPUs nobody is guaranteed, not vision's idle 8.
            let first = try await api.submit(fixture.admin, project: "outsider", gpus: 8)
            let second = try await api.submit(fixture.admin, project: "outsider", gpus: 8)
            try await fixture.schedule()
            #expect(try await api.get("/v1/jobs/\(first)", token: fixture.admin).json["allocations"]?.array.count == 1)
            let fenced = try await api.get("/v1/jobs/\(second)", token: fixture.admin).json
            #expect(fenced["state"]?.string == "pending")
            #expect(fenced["queue"]?["reason"]?["code"]?.string == "cohortFenced", "\(fenced["queue"] ?? .null)")
            #expect(fenced["queue"]?["reason"]?["message"]?.string?.contains("guaranteed to cohort lab") == true)
            #expect(try await api.post("/v1/jobs/\(second)/cancel", token: fixture.admin).status == .ok)

            // speech, in lab, borrows vision's idle guarantee.
            let lent = try await api.submit(fixture.admin, project: "speech", gpus: 8)
            try await fixture.schedule()
            #expect(try await api.get("/v1/jobs/\(lent)", token: fixture.admin).json["allocations"]?.array.count == 1)

            // vision wants its guarantee back: the pass reclaims what lab lent to speech, not
            // what the outsider holds beside the fence.
            let owned = try await api.submit(fixture.admin, project: "vision", gpus: 8)
            #expect(try await fixture.schedule() == 1)
            #expect(try await api.get("/v1/jobs/\(lent)", token: fixture.admin).json["allocations"]?[0]?["outcome"]?.string == "preempted")
            #expect(try await api.get("/v1/jobs/\(first)", token: fixture.admin).json["allocations"]?[0]?["outcome"] == nil)
            #expect(try await api.get("/v1/jobs/\(owned)", token: fixture.admin).json["allocations"]?.array.count == 1)
        }
    }

    @Test func aGuaranteedClaimTakesBackBorrowedGPUsBeforeItStopsItsOwnWork() async throws {
        let fixture = try await Fixture.make()
        try await fixture.test { api in
            _ = try await api.register("n1", gpus: 8)
            _ = try await api.register("n2", gpus: 8)
            _ = try await api.member("o", of: "owner", role: "admin")
            _ = try await api.member("b", of: "borrower", role: "admin")
            #expect(try await api.call(.put, "/v1/projects/owner/quota", token: fixture.admin, body: #"{"guaranteedMilliGPUs":16000}"#).status == .ok)
            let old = try await api.submit(fixture.admin, project: "owner", gpus: 8)
            try await fixture.schedule()
            var borrowed: [UInt64] = []
            for _ in 0..<8 { borrowed.append(try await api.submit(fixture.admin, project: "borrower", gpus: 1)) }
            try await fixture.schedule()
            // A high-priority claim of the owner outranks its own old job too; stopping that one job
            // would disturb fewer allocations, but what others borrowed goes first.
            let claim = try await api.submit(fixture.admin, project: "owner", gpus: 8, extra: #","priority":"high""#)
            #expect(try await fixture.schedule() == 1)
            #expect(try await api.get("/v1/jobs/\(old)", token: fixture.admin).json["allocations"]?[0]?["outcome"] == nil)
            for job in borrowed {
                #expect(try await api.get("/v1/jobs/\(job)", token: fixture.admin).json["allocations"]?[0]?["outcome"]?.string == "preempted")
            }
            #expect(try await api.get("/v1/jobs/\(claim)", token: fixture.admin).json["allocations"]?.array.count == 1)
        }
    }

    @Test func aQuotaHoldsOneGuaranteePerModelAndBadQuotasAreRefused() async throws {
        let fixture = try await Fixture.make()
        try await fixture.test { api in
            _ = try await api.register("n1", gpus: 8)
            _ = try await api.member("m", of: "multi", role: "admin")
            let set = try await api.call(.put, "/v1/projects/multi/quota", token: fixture.admin,
                                         body: #"{"guarantees":[{"gpuModel":"H100","milliGPUs":4000},{"gpuModel":"A100","milliGPUs":2000}],"borrowingLimitMilliGPUs":1000}"#)
            #expect(set.status == .ok, "\(set.detail)")
            #expect(set.json["guaranteedMilliGPUs"]?.int == 6000 && set.json["guarantees"]?.array.count == 2)
            // An H100 job counts against the H100 guarantee only.
            let job = try await api.post("/v1/jobs", token: fixture.admin, body: #"{"project":"multi","command":["x"],"resources":{"gpus":3,"gpuModel":"H100"}}"#)
            #expect(job.status == .created, "\(job.detail)")
            try await fixture.schedule()
            let quota = try await api.get("/v1/projects/multi/quota", token: fixture.admin).json
            #expect(quota["guarantees"]?[0]?["inUseMilliGPUs"]?.int == 3000 && quota["guarantees"]?[1]?["inUseMilliGPUs"]?.int == 0)
            #expect(quota["guaranteedInUseMilliGPUs"]?.int == 3000)
            // Holding at most 6 + 1: a job of 8 GPUs is refused at submission.
            let huge = try await api.post("/v1/jobs", token: fixture.admin, body: #"{"project":"multi","command":["x"],"resources":{"gpus":8}}"#)
            #expect(huge.status.code == 422 && huge.detail.contains("lets it hold 7 at most"), "\(huge.detail)")

            let both = try await api.call(.put, "/v1/projects/multi/quota", token: fixture.admin, body: #"{"guaranteedMilliGPUs":1000,"guarantees":[{"milliGPUs":1000}]}"#)
            #expect(both.status.code == 400 && both.detail.contains("not both"), "\(both.detail)")
            let twice = try await api.call(.put, "/v1/projects/multi/quota", token: fixture.admin, body: #"{"guarantees":[{"gpuModel":"H100","milliGPUs":1000},{"gpuModel":"h100","milliGPUs":1000}]}"#)
            #expect(twice.status.code == 422 && twice.detail.contains("one guarantee per GPU model"), "\(twice.detail)")
            let cohort = try await api.call(.put, "/v1/projects/multi/quota", token: fixture.admin, body: #"{"guaranteedMilliGPUs":1000,"cohort":"Lab!"}"#)
            #expect(cohort.status.code == 422 && cohort.detail.contains("cohort name"), "\(cohort.detail)")
            let unknown = try await api.call(.put, "/v1/projects/multi/quota", token: fixture.admin, body: #"{"guarantees":[{"milliGPUs":1000,"extra":1}]}"#)
            #expect(unknown.status.code == 400)
            // The quota that was set is still there, whole.
            #expect(try await api.get("/v1/projects/multi/quota", token: fixture.admin).json["guarantees"]?.array.count == 2)
        }
    }
}
