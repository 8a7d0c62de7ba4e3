public import FastGPUModel

public import FastGPUWorkloads

/// Random clusters and job mixes for the property tests, from a seeded generator.
extension Workloads {
    /// A random small cluster: mixed models, MIG GPUs, labels, some nodes not ready.
    public static func randomCluster(using rng: inout some RandomNumberGenerator) -> [Node] {
        let models = ["H100-80GB", "A100-80GB", "A100-40GB"]
        let count = Int.random(in: 1...12, using: &rng)
        return (0..<count).map { i in
            let model = models.randomElement(using: &rng)!
            var builder = Node.make(UInt64(i + 1))
            let plain = [0, 1, 2, 4, 8].randomElement(using: &rng)!
            builder = builder.gpus(plain, model: model)
            if Int.random(in: 0..<4, using: &rng) == 0 { builder = builder.migGPUs(Int.random(in: 1...2, using: &rng), model: model) }
            builder = builder.islands(Int.random(in: 1...2, using: &rng))
                .cpu(millis: Int.random(in: 4...64, using: &rng) * 1000)
                .memory(mib: Int.random(in: 16...512, using: &rng) * 1024)
            if Bool.random(using: &rng) { builder = builder.label("zone", ["a", "b"].randomElement(using: &rng)!) }
            if Int.random(in: 0..<10, using: &rng) == 0 { builder = builder.state([.cordoned, .draining, .down].randomElement(using: &rng)!) }
            if Int.random(in: 0..<6, using: &rng) == 0 { builder = builder.crossProjectSharing() }
            return builder.build()
        }
    }

    /// A random job mix: whole GPUs, shares, MIG profiles, CPU-only, gangs, spot, priorities.
    public static func randomJobs(count: Int, firstID: UInt64 = 1, using rng: inout some RandomNumberGenerator) -> [Job] {
        let profiles = ["1g.5gb", "1g.10gb", "2g.10gb", "2g.20gb", "3g.20gb", "3g.40gb", "4g.40gb", "7g.80gb", "1g.10gb+me", "9g.90gb"]
        return (0..<count).map { i in
            var b = Job.make(firstID + UInt64(i))
                .project(UInt64.random(in: 1...3, using: &rng))
                .cpu(millis: Int.random(in: 0...16, using: &rng) * 1000)
                .memory(mib: Int.random(in: 0...64, using: &rng) * 1024)
                .submitted(atSecond: Int64(i))
            switch Int.random(in: 0..<10, using: &rng) {
            case 0..<4: b = b.gpus([1, 1, 2, 4, 8, 16].randomElement(using: &rng)!, model: [nil, "H100", "A100-80GB", "V100"].randomElement(using: &rng)!)
            case 4..<6: b = b.share(milli: Int.random(in: 1...999, using: &rng), memoryMiB: Int.random(in: 0...40, using: &rng) * 1024)
            case 6..<8: b = b.mig(profiles.randomElement(using: &rng)!)
            default: b = b.noGPU()
            }
            if Int.random(in: 0..<4, using: &rng) == 0 { b = b.tasks(Int.random(in: 2...4, using: &rng), gang: Bool.random(using: &rng)) }
            if Int.random(in: 0..<4, using: &rng) == 0 { b = b.spot() }
            if Int.random(in: 0..<4, using: &rng) == 0 { b = b.priority([.low, .high].randomElement(using: &rng)!) }
            if Bool.random(using: &rng) { b = b.estimate(seconds: Int64.random(in: 10...10_000, using: &rng)) }
            if Int.random(in: 0..<8, using: &rng) == 0 { b = b.selector("zone", "a") }
            return b.build()
        }
    }
}
