import FastGPUModel
import FastGPUSimulator
import Foundation
import Testing

@Suite struct TraceReaderTests {
    static func fixture(_ name: String) throws -> String {
        let url = try #require(Bundle.module.url(forResource: "Fixtures/\(name)", withExtension: nil))
        return url.path
    }

    @Test func phillyRowsAreSortedAndRebased() throws {
        let trace = try TraceReader.read(try Self.fixture("philly-first20.csv"), format: .philly)
        #expect(trace.jobs.count == 20)
        // The earliest row is line 4: 2017-09-29 07:58:32, 860,662 s, 1 GPU, VC 6c71a0.
        let first = try #require(trace.jobs.first)
        #expect(first.submitMilliseconds == 0)
        #expect(first.durationMilliseconds == 860_662_000)
        #expect(first.gpus == 1 && first.project == "6c71a0" && first.name == "philly-4")
        #expect(trace.jobs.map(\.id) == Array(1...20))
        #expect(zip(trace.jobs, trace.jobs.dropFirst()).allSatisfy { $0.submitMilliseconds <= $1.submitMilliseconds })
        // Line 2, 2017-10-09 07:01:55, is 10 days less 56 min 37 s after line 4: 864,000 − 3,397 = 860,603 s.
        #expect(trace.jobs.first { $0.name == "philly-2" }?.submitMilliseconds == 860_603_000)
    }

    @Test func heliosRowsKeepUsersNodesAndMicroseconds() throws {
        let trace = try TraceReader.read(try Self.fixture("helios-first20.csv"), format: .helios)
        #expect(trace.jobs.count == 20)
        let first = try #require(trace.jobs.first { $0.name == "helios-765563" })
        #expect(first.submitMilliseconds == 5_835_000)  // 5,835,000,000 µs
        #expect(first.gpus == 128 && first.nodes == 16 && first.user == "uH3om" && first.project == "vcvGl")
        #expect(first.durationMilliseconds == 24_000)
        let group = first.taskGroup(gpusPerNode: 8)
        #expect(group.count == 16 && group.gang && group.resources.gpu == .whole(count: 8))
    }

    @Test func alibabaPodsCarrySharesCPUAndModelConstraints() throws {
        let trace = try TraceReader.read(try Self.fixture("openb-pods-first20.csv"), format: .alibaba)
        #expect(trace.jobs.count == 20)
        let share = try #require(trace.jobs.first { $0.name == "openb-pod-0001" })
        #expect(share.gpuMilli == 460 && share.cpuMillis == 6000 && share.memoryMiB == 12288)
        #expect(share.taskGroup(gpusPerNode: 8).resources.gpu == .share(milli: 460, memoryMiB: 0))
        let constrained = try #require(trace.jobs.first { $0.name == "openb-pod-0009" })
        #expect(constrained.gpuModels == ["V100M16", "V100M32"])
        #expect(constrained.taskGroup(gpusPerNode: 8).resources.gpuModel == "V100M16|V100M32")
        let nodes = try TraceReader.alibabaNodes(try Self.fixture("openb-nodes-first10.csv"))
        #expect(nodes.count == 10)
        #expect(nodes[0].name == "openb-node-0000" && nodes[0].gpus.count == 2 && nodes[0].gpuModel == "P100" && nodes[0].cpuMillis == 64_000)
    }

    @Test func slurmWorkloadArrivesAtOnce() throws {
        let trace = try TraceReader.read(try Self.fixture("mixed-first10.csv"), format: .slurm)
        #expect(trace.jobs.count == 10)
        #expect(trace.jobs.allSatisfy { $0.submitMilliseconds == 0 })
        #expect(trace.jobs[0].gpus == 2 && trace.jobs[0].durationMilliseconds == 13_000)
    }

    struct Bad: Sendable, CustomTestStringConvertible {
        var format: TraceFormat
        var text: String
        var line: Int?
        var says: String
        var testDescription: String { "\(format): \(says)" }
    }

    @Test(arguments: [
        Bad(format: .csv, text: "submit_s,gpus,duration_s\n0,1,10\n5,abc,10\n", line: 3, says: "gpus 'abc' is not a whole number"),
        Bad(format: .csv, text: "submit_s,gpus,duration_s\n0,1,-4\n", line: 2, says: "duration_s '-4' is not a duration in seconds"),
        Bad(format: .csv, text: "submit_s,gpus,duration_s,gpu_milli\n0,1,10,1500\n", line: 2, says: "gpu_milli 1500 is out of range"),
        Bad(format: .csv, text: "submit_s,gpus\n0,1\n", line: 1, says: "expected the header submit_s,gpus,duration_s"),
        Bad(format: .csv, text: "submit_s,gpus,duration_s\n", line: nil, says: "no jobs in the trace"),
        Bad(format: .csv, text: "", line: nil, says: "the file is empty"),
        Bad(format: .philly, text: "timestamp,duration,num_gpus,gpu_time,cluster\n2017-13-01 00:00:00,5,1,5,a\n", line: 2, says: "is not a valid time"),
        Bad(format: .philly, text: "timestamp,duration,num_gpus,gpu_time,cluster\n2017-10-01 00:00:00,5,0,5,a\n", line: 2, says: "num_gpus 0 is out of range"),
        Bad(format: .helios, text: "# c\njob_id,user,tenant,class,submit_time,num_chips,chip_type,num_nodes,duration_s\n1,u,v,c,10,8,,,5\n", line: 3, says: "empty num_nodes"),
        Bad(format: .alibaba, text: "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time\np,1,1,1,0,,LS,Running,0,5\n", line: 2, says: "gpu_milli 0 is out of range"),
    ])
    func badInputNamesTheLine(_ bad: Bad) {
        do {
            _ = try TraceReader.parse(bad.text, format: bad.format, file: "t.csv")
            Issue.record("accepted bad input")
        } catch let error as TraceError {
            #expect(error.line == bad.line)
            #expect(error.description.contains(bad.says), "\(error)")
            #expect(!error.description.contains("\n"), "one line")
        } catch {
            Issue.record("unexpected \(error)")
        }
    }

    @Test func aMissingFileIsOneClearError() {
        #expect(throws: TraceError(file: "/nonexistent/t.csv", "cannot read the file")) {
            try TraceReader.read("/nonexistent/t.csv", format: .csv)
        }
    }

    @Test func windowsRebaseAndKeepTheirPast() throws {
        let text = "submit_s,gpus,duration_s\n0,1,5\n10,1,100\n20,2,5\n30,1,5\n"
        let trace = try TraceReader.parse(text, format: .csv, file: "t.csv")
        let window = trace.window(fromSeconds: 15, toSeconds: 31)
        #expect(window.jobs.map(\.submitMilliseconds) == [0, 10_000])
        #expect(window.jobs.map(\.gpus) == [2, 1])
        // Before 15 s only the first job had finished (the second runs until 110 s).
        #expect(trace.finished(beforeSeconds: 15).map(\.submitMilliseconds) == [0])
    }
}
