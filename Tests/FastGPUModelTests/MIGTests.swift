import FastGPUModel
import Testing

@Suite struct MIGTests {
    struct Case: CustomTestStringConvertible, Sendable {
        var model: String
        var profile: String
        /// Occupied slots, bit i = slot i.
        var occupied: UInt8
        var expectedStarts: [Int]
        var testDescription: String { "\(model) \(profile) on \(String(occupied, radix: 2))" }
    }

    // Placements from NVIDIA's MIG User Guide (`nvidia-smi mig -lgipp`).
    @Test(arguments: [
        Case(model: "A100-40GB", profile: "1g.5gb", occupied: 0, expectedStarts: [0, 1, 2, 3, 4, 5, 6]),
        Case(model: "A100-40GB", profile: "2g.10gb", occupied: 0, expectedStarts: [0, 2, 4]),
        Case(model: "A100-40GB", profile: "3g.20gb", occupied: 0, expectedStarts: [0, 4]),
        Case(model: "A100-40GB", profile: "4g.20gb", occupied: 0, expectedStarts: [0]),
        Case(model: "A100-40GB", profile: "7g.40gb", occupied: 0, expectedStarts: [0]),
        // A 1g at slot 0 leaves 3g only at 4, 4g and 7g nowhere.
        Case(model: "A100-40GB", profile: "3g.20gb", occupied: 0b0000_0001, expectedStarts: [4]),
        Case(model: "A100-40GB", profile: "4g.20gb", occupied: 0b0000_0001, expectedStarts: []),
        Case(model: "A100-40GB", profile: "7g.40gb", occupied: 0b0000_0001, expectedStarts: []),
        // A 3g at 4 (slots 4–7) leaves 4g at 0 and 2g at 0 and 2.
        Case(model: "A100-80GB", profile: "4g.40gb", occupied: 0b1111_0000, expectedStarts: [0]),
        Case(model: "A100-80GB", profile: "2g.20gb", occupied: 0b1111_0000, expectedStarts: [0, 2]),
        Case(model: "H100-80GB", profile: "1g.20gb", occupied: 0b0011_0000, expectedStarts: [0, 2, 6]),
        Case(model: "H100-80GB", profile: "1g.10gb", occupied: 0b0111_1111, expectedStarts: []),
        Case(model: "H100-80GB", profile: "7g.80gb", occupied: 0, expectedStarts: [0]),
    ])
    func freeStarts(_ c: Case) throws {
        let geometry = try #require(MIGGeometry.of(gpuModel: c.model))
        let profile = try #require(geometry.profile(named: c.profile))
        #expect(geometry.freeStarts(for: profile, occupied: c.occupied, instances: []) == c.expectedStarts)
    }

    @Test func mediaExtensionProfileIsOnePerGPU() throws {
        let geometry = try #require(MIGGeometry.of(gpuModel: "H100-80GB"))
        let me = try #require(geometry.profile(named: "1g.10gb+me"))
        let held = MIGInstance(profile: me.name, start: 0, slotCount: 1, allocation: AllocationID(1))
        #expect(geometry.freeStarts(for: me, occupied: held.mask, instances: [held]).isEmpty)
    }

    @Test func bestStartKeepsLargeProfilesPlaceable() throws {
        // A 1g on an empty A100 could go to slots 0–6. Slot 6 strands the fewest placements:
        // 4g at 0 and 3g at 0 stay possible, while slot 0 would rule both out.
        let geometry = try #require(MIGGeometry.of(gpuModel: "A100-40GB"))
        let oneG = try #require(geometry.profile(named: "1g.5gb"))
        let start = try #require(geometry.bestStart(for: oneG, occupied: 0, instances: []))
        #expect(start >= 4)
        let threeG = try #require(geometry.profile(named: "3g.20gb"))
        #expect(geometry.freeStarts(for: threeG, occupied: oneG.mask(at: start), instances: []) == [0])
    }

    @Test func modelsWithoutMIGHaveNoGeometry() {
        #expect(MIGGeometry.of(gpuModel: "V100-32GB") == nil)
        #expect(MIGGeometry.of(gpuModel: "H100-80GB")?.gpuModel == "H100-80GB")
    }

    @Test(arguments: [
        ("H100", "H100-80GB", true), ("h100", "H100-80GB", true), ("H100-80GB", "H100-80GB", true),
        ("A100", "A100-40GB", true), ("A100-80GB", "A100-40GB", false), ("H10", "H100-80GB", false),
        ("H100", "H1000", false), ("H100-80GB-X", "H100-80GB", false),
        ("V100M16|V100M32", "V100M32", true), ("V100M16|V100M32", "T4", false),
    ])
    func modelNames(requested: String, offered: String, matches: Bool) {
        #expect(GPUModelName.matches(requested: requested, offered: offered) == matches)
    }
}
