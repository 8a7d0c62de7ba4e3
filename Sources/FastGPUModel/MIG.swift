/// A MIG profile of one GPU model, with NVIDIA's placement rule for it.
///
/// A MIG-capable GPU has eight memory slots. An instance of a profile occupies `slotCount`
/// consecutive slots starting at one of `allowedStarts`; that is all the scheduler needs to know
/// whether a profile still fits on a partly used GPU. Figures are from NVIDIA's MIG User Guide
/// ("Supported MIG Profiles", and `nvidia-smi mig -lgipp`, e.g. A100: `1g.5gb {0,1,2,3,4,5,6}:1`,
/// `2g.10gb {0,2,4}:2`, `3g.20gb {0,4}:4`, `4g.20gb {0}:4`, `7g.40gb {0}:8`). Memory is the nominal
/// size in the profile's name; the driver reports a few hundred MiB less.
public struct MIGProfile: Hashable, Sendable, CustomStringConvertible {
    public let name: String
    public let computeSlices: Int
    public let memoryMiB: Int
    public let slotCount: Int
    public let allowedStarts: [Int]
    /// `+me` profiles carry the GPU's only media engines: one per GPU.
    public let maxInstances: Int

    public init(name: String, computeSlices: Int, memoryMiB: Int, slotCount: Int, allowedStarts: [Int], maxInstances: Int = 7) {
        self.name = name
        self.computeSlices = computeSlices
        self.memoryMiB = memoryMiB
        self.slotCount = slotCount
        self.allowedStarts = allowedStarts
        self.maxInstances = maxInstances
    }

    /// The slot mask an instance starting at `start` occupies.
    public func mask(at start: Int) -> UInt8 {
        UInt8(truncatingIfNeeded: ((1 << slotCount) - 1) << start)
    }

    public var description: String { name }
}

/// The MIG geometry of one GPU model: its profiles and their placements.
public struct MIGGeometry: Sendable {
    public static let slotCount = 8
    public let gpuModel: String
    public let profiles: [MIGProfile]

    public func profile(named name: String) -> MIGProfile? {
        profiles.first { $0.name.lowercased() == name.lowercased() }
    }

    /// The geometry of a GPU model, or nil when the model has no MIG support known here.
    public static func of(gpuModel: String) -> MIGGeometry? {
        known.first { GPUModelName.matches(requested: $0.gpuModel, offered: gpuModel) && $0.gpuModel.count == gpuModel.count }
            ?? known.first { GPUModelName.matches(requested: $0.gpuModel, offered: gpuModel) }
    }

    /// Every MIG profile name known for any model (to tell "unknown profile" from "not on this model").
    public static var allProfileNames: Set<String> {
        Set(known.flatMap { $0.profiles.map { $0.name.lowercased() } })
    }

    private static func standard(_ model: String, _ g: Int) -> MIGGeometry {
        // g = memory per slot in GiB: 5 on A100-40GB, 10 on the 80 GB parts.
        let gib = 1024
        return MIGGeometry(gpuModel: model, profiles: [
            MIGProfile(name: "1g.\(g)gb", computeSlices: 1, memoryMiB: g * gib, slotCount: 1, allowedStarts: [0, 1, 2, 3, 4, 5, 6]),
            MIGProfile(name: "1g.\(g)gb+me", computeSlices: 1, memoryMiB: g * gib, slotCount: 1, allowedStarts: [0, 1, 2, 3, 4, 5, 6], maxInstances: 1),
            MIGProfile(name: "1g.\(2 * g)gb", computeSlices: 1, memoryMiB: 2 * g * gib, slotCount: 2, allowedStarts: [0, 2, 4, 6], maxInstances: 4),
            MIGProfile(name: "2g.\(2 * g)gb", computeSlices: 2, memoryMiB: 2 * g * gib, slotCount: 2, allowedStarts: [0, 2, 4], maxInstances: 3),
            MIGProfile(name: "3g.\(4 * g)gb", computeSlices: 3, memoryMiB: 4 * g * gib, slotCount: 4, allowedStarts: [0, 4], maxInstances: 2),
            MIGProfile(name: "4g.\(4 * g)gb", computeSlices: 4, memoryMiB: 4 * g * gib, slotCount: 4, allowedStarts: [0], maxInstances: 1),
            MIGProfile(name: "7g.\(8 * g)gb", computeSlices: 7, memoryMiB: 8 * g * gib, slotCount: 8, allowedStarts: [0], maxInstances: 1),
        ])
    }

    public static let known: [MIGGeometry] = [
        standard("A100-40GB", 5),
        standard("A100-80GB", 10),
        standard("H100-80GB", 10),
    ]
}

/// One MIG instance on a GPU, held by one allocation.
public struct MIGInstance: Hashable, Sendable, Codable {
    public var profile: String
    public var start: Int
    public var slotCount: Int
    public var allocation: AllocationID

    public init(profile: String, start: Int, slotCount: Int, allocation: AllocationID) {
        self.profile = profile
        self.start = start
        self.slotCount = slotCount
        self.allocation = allocation
    }

    public var mask: UInt8 { UInt8(truncatingIfNeeded: ((1 << slotCount) - 1) << start) }
}

extension MIGGeometry {
    /// The starts where `profile` fits given the occupied slot mask and instances, in NVIDIA's order.
    public func freeStarts(for profile: MIGProfile, occupied: UInt8, instances: [MIGInstance]) -> [Int] {
        if profile.maxInstances < 7, instances.count(where: { $0.profile == profile.name }) >= profile.maxInstances {
            return []
        }
        return profile.allowedStarts.filter { occupied & profile.mask(at: $0) == 0 }
    }

    /// How many placements of any profile remain possible on a slot mask: the measure used to pick
    /// the start that keeps the most options open (fewest stranded slots).
    public func remainingPlacements(occupied: UInt8) -> Int {
        var total = 0
        for profile in profiles where profile.maxInstances == 7 || profile.slotCount > 1 {
            for start in profile.allowedStarts where occupied & profile.mask(at: start) == 0 { total += 1 }
        }
        return total
    }

    /// The start for a new instance: the one that leaves the most placements possible; ties go to
    /// the lowest start. Nil when the profile does not fit.
    public func bestStart(for profile: MIGProfile, occupied: UInt8, instances: [MIGInstance]) -> Int? {
        var best: (start: Int, remaining: Int)?
        for start in freeStarts(for: profile, occupied: occupied, instances: instances) {
            let remaining = remainingPlacements(occupied: occupied | profile.mask(at: start))
            if best == nil || remaining > best!.remaining { best = (start, remaining) }
        }
        return best?.start
    }
}
