@testable import FastGPUAPI
import FastGPUWire
import Foundation
import Testing

@Suite("JSON output")
struct JSONOutputTests {
    static func job(name: String, env: [String: String], queue: QueueWire?) -> JobWire {
        JobWire(id: 7, name: name, project: "default", submitter: "a\"b", state: "pending", priority: "normal", spot: false, command: ["python", "-c", "print(\"hi\")\n"],
                env: env, tasks: 2, gang: true, gpus: "2", gpuModel: nil, cpuMillis: 1000, memoryMiB: 1024, maxRuntimeSeconds: 60, estimatedRuntimeSeconds: nil,
                maxAttempts: 3, attempts: 1, submittedAt: "2026-01-01T00:00:00.000Z", finishedAt: nil,
                allocations: [AllocationWire(id: 1, node: 2, taskGroup: 0, taskIndex: 1, devices: ["gpu0", "gpu1"], cpuMillis: 1, memoryMiB: 2, epoch: 9, live: false,
                                             report: "exited", outcome: "failed", exitCode: -9, startedAt: "s", endedAt: "e",
                                             slots: [DeviceSlotWire(gpu: 0, kind: "whole"), DeviceSlotWire(gpu: 1, kind: "share", milli: 500, memoryMiB: 2048),
                                                     DeviceSlotWire(gpu: 2, kind: "mig", profile: "1g.10gb", start: 3)],
                                             runningSince: "r")],
                queue: queue, minGpuMemoryMiB: name == "plain" ? 22_888 : nil)
    }

    @Test(arguments: [
        job(name: "plain", env: [:], queue: nil),
        job(name: "quote \" backslash \\ slash / tab \t nul \u{0} bell \u{7} é 世界 🚀", env: ["B": "2", "A": "1\n"],
            queue: QueueWire(position: 3, reason: ReasonWire(kind: "notNow", code: "gpus", message: "no \"room\"", jobsAhead: 2,
                                                             largestFreeFit: FreeFitWire(node: 3, freeGPUs: 4, gpuModel: "H100")), estimatedStart: "t")),
        job(name: "", env: ["": ""], queue: QueueWire(position: 1, reason: nil, estimatedStart: nil)),
    ])
    func writesWhatJSONEncoderWrites(wire: JobWire) throws {
        let direct = String(decoding: wire.jsonBytes, as: UTF8.self)
        let encoded = String(decoding: try JSONEncoder().encode(wire), as: UTF8.self)
        let parsedDirect = try #require(JSONValue.parse(direct), "\(direct)")
        #expect(parsedDirect == JSONValue.parse(encoded))
        // What the server writes directly, clients read back as the very same value.
        #expect(try JSONDecoder().decode(JobWire.self, from: Data(wire.jsonBytes)) == wire)
        let list = JobListWire(items: [wire, wire], next: "7")
        #expect(JSONValue.parse(String(decoding: list.jsonBytes, as: UTF8.self)) == JSONValue.parse(String(decoding: try JSONEncoder().encode(list), as: UTF8.self)))
        let line = LogLineWire(position: 4, allocation: 2, sequence: 0, stream: "stdout", time: "t", text: wire.name)
        #expect(JSONValue.parse(String(decoding: line.jsonBytes, as: UTF8.self)) == JSONValue.parse(String(decoding: try JSONEncoder().encode(line), as: UTF8.self)))
        let queue = QueueListWire(items: [QueueItemWire(position: 1, job: 7, project: "p", name: wire.name, submitter: "s",
                                                        reason: wire.queue?.reason, estimatedStart: wire.queue?.estimatedStart)])
        #expect(JSONValue.parse(String(decoding: queue.jsonBytes, as: UTF8.self)) == JSONValue.parse(String(decoding: try JSONEncoder().encode(queue), as: UTF8.self)))
    }
}
