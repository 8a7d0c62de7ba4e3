import FastGPUModel
import FastGPUTestSupport
import Foundation
import Testing

@Suite struct QuotaTests {
    @Test func aQuotaStoredWithOneModelAndAmountStillReads() throws {
        let old = try JSONDecoder().decode(Quota.self, from: Data(#"{"gpuModel":"H100","guaranteedMilliGPUs":8000,"borrowingLimitMilliGPUs":2000}"#.utf8))
        #expect(old == Quota(gpuModel: "H100", guaranteedMilliGPUs: 8000, borrowingLimitMilliGPUs: 2000))
        let quota = Quota(guarantees: [.init(gpuModel: "H100", milliGPUs: 8000), .init(milliGPUs: 4000)], borrowingLimitMilliGPUs: nil, cohort: "lab")
        #expect(try JSONDecoder().decode(Quota.self, from: JSONEncoder().encode(quota)) == quota)
    }

    @Test func aModelsOwnGuaranteeCoversItsWorkBeforeOneOfAnyModel() {
        let quota = Quota(guarantees: [.init(milliGPUs: 4000), .init(gpuModel: "H100", milliGPUs: 8000)])
        #expect(quota.guaranteeIndex(requestedModel: "H100") == 1)
        #expect(quota.guaranteeIndex(requestedModel: "A100") == 0)
        #expect(quota.guaranteeIndex(requestedModel: nil) == 0)
        #expect(Quota(gpuModel: "H100", guaranteedMilliGPUs: 1000).guaranteeIndex(requestedModel: nil) == nil)
        #expect(quota.holdingLimitMilliGPUs == nil && quota.guaranteedMilliGPUs == 12_000)
    }

    @Test func validationBoundsEveryField() {
        #expect(Quota.validate(Quota(guarantees: [])) != nil)
        #expect(Quota.validate(Quota(guaranteedMilliGPUs: -1)) != nil)
        #expect(Quota.validate(Quota(guarantees: [.init(gpuModel: "H100", milliGPUs: 1), .init(gpuModel: "h100", milliGPUs: 1)])) != nil)
        #expect(Quota.validate(Quota(guaranteedMilliGPUs: 1, cohort: "Lab")) != nil)
        #expect(Quota.validate(Quota(guaranteedMilliGPUs: 1, cohort: String(repeating: "a", count: 64))) != nil)
        #expect(Quota.validate(Quota(guaranteedMilliGPUs: 1, borrowingLimitMilliGPUs: 100_000_001)) != nil)
        #expect(Quota.validate(Quota(guarantees: [.init(gpuModel: "H100", milliGPUs: 8000), .init(milliGPUs: 0)], cohort: "lab-2")) == nil)
    }
}
