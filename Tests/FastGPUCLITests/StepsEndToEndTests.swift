@testable import fastgpu
import Foundation
import Testing

/// Steps and per-GPU memory floors against a real server and agent: a step runs in a running
/// job's allocation with the job's devices, its output and exit code come back, it dies with the
/// allocation; `--gpus 90GB:1` is never on 80 GB GPUs, `80GB:2` runs.
@Suite(.serialized, .timeLimit(.minutes(3)))
final class StepsEndToEndTests {
    let cluster: LocalCluster

    init() throws {
        cluster = try LocalCluster()
        try cluster.startAgent("n1", gpus: "2xH100-80GB")
        cluster.waitForAgent("n1", "registered as node")
    }

    /// The job once `done` holds for it, by blocking queries on its index (no sleeping).
    func job(_ id: Int, until done: ([String: Any]) -> Bool) throws -> [String: Any] {
        var index = 0
        for _ in 0..<30 {
            let text = try cluster.curl(["-D", "-", cluster.url + "/v1/jobs/\(id)?index=\(index)&wait=5s"])
            let parts = text.components(separatedBy: "\r\n\r\n")
            let object = try cluster.json(parts.dropFirst().joined(separator: "\r\n\r\n"))
            if done(object) { return object }
            if let line = parts.first?.split(separator: "\r\n").first(where: { $0.lowercased().hasPrefix("x-fastgpu-index:") }) {
                index = Int(line.split(separator: ":").last?.trimmingCharacters(in: .whitespaces) ?? "") ?? index
            }
        }
        throw ServerProcessTests.CLIError("job \(id) did not get there")
    }

    func job(_ id: Int, reaching states: Set<String>) throws -> [String: Any] {
        try job(id) { states.contains($0["state"] as? String ?? "") }
    }

    /// The step once it has ended, by long polls on its version.
    func finished(job: Int, step: Int) throws -> [String: Any] {
        var version = 0
        for _ in 0..<40 {
            let object = try cluster.json(cluster.get("/v1/jobs/\(job)/steps/\(step)?after=\(version)&wait=5s"))
            if ["succeeded", "failed", "lost"].contains(object["state"] as? String ?? "") { return object }
            version = object["version"] as? Int ?? version
        }
        throw ServerProcessTests.CLIError("step \(step) of job \(job) did not end")
    }

    @Test func aStepRunsInTheAllocationWithItsDevicesAndEndsWithIt() throws {
        let submitted = try cluster.json(cluster.post("/v1/jobs", #"{"project":"default","command":["sh","-c","echo $CUDA_VISIBLE_DEVICES > devices; exec sleep 300"],"resources":{"gpus":1}}"#))
        let id = try #require(submitted["id"] as? Int)
        // Running as its agent reported it (a job is `running` from its placement on; a step waits for the process).
        _ = try job(id) { ($0["allocations"] as? [[String: Any]])?.contains { $0["runningSince"] is String } == true }
        // A step that reads what the job wrote in its work directory, sees the same devices, and fails.
        var step = try cluster.json(cluster.post("/v1/jobs/\(id)/steps",
                                                 #"{"command":["sh","-c","sleep 0.2; cat devices; echo $CUDA_VISIBLE_DEVICES $FASTGPU_STEP_ID $GREETING; echo oops >&2; exit 3"],"env":{"GREETING":"hi"}}"#))
        let first = try #require(step["id"] as? Int)
        step = try finished(job: id, step: first)
        let lines = (step["stdout"] as? String ?? "").split(separator: "\n").map(String.init)
        #expect(lines.count == 2 && lines[1] == "\(lines[0]) \(first) hi", "\(step)")
        #expect(step["state"] as? String == "failed" && step["exitCode"] as? Int == 3 && step["stderr"] as? String == "oops\n", "\(step)")
        // One that succeeds; the list holds both.
        let second = try #require(try cluster.json(cluster.post("/v1/jobs/\(id)/steps", #"{"command":["true"]}"#))["id"] as? Int)
        #expect(try finished(job: id, step: second)["state"] as? String == "succeeded")
        let listed = try cluster.json(cluster.get("/v1/jobs/\(id)/steps"))["items"] as? [[String: Any]] ?? []
        #expect(listed.compactMap { $0["id"] as? Int } == [first, second])
        // From the command line: its output, then its exit code.
        let exec = try CLITests.run(["exec", String(id), "--env", "WHO=cli", "--", "sh", "-c", "echo hello $WHO; echo warn >&2; exit 4"],
                                    environment: ["HOME": cluster.directory, "PATH": "/usr/bin:/bin", "FASTGPU_SERVER": cluster.url, "FASTGPU_TOKEN": cluster.admin])
        #expect(exec.status == 4 && exec.output == "hello cli\n" && exec.errors == "warn\n", "\(exec)")
        // A step still running when the job is cancelled is lost with it.
        let long = try #require(try cluster.json(cluster.post("/v1/jobs/\(id)/steps", #"{"command":["sleep","300"]}"#))["id"] as? Int)
        _ = try cluster.post("/v1/jobs/\(id)/cancel")
        _ = try job(id, reaching: ["cancelled"])
        #expect(try finished(job: id, step: long)["state"] as? String == "lost")
        // A job that does not run takes no step.
        let refused = try cluster.curl(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", cluster.url + "/v1/jobs/\(id)/steps", "-d", #"{"command":["true"]}"#])
        #expect(refused == "409")
    }

    @Test func aPerGPUMemoryFloorPicksGPUsWithThatMuchMemory() throws {
        // Simulated H100-80GB GPUs have 81,559 MiB: a floor of 90 GB is never met; 80 GB is.
        let submitted = try cluster.json(cluster.post("/v1/jobs", #"{"project":"default","command":["true"],"resources":{"gpus":1,"minGpuMemoryMiB":85831}}"#))
        let never = try job(try #require(submitted["id"] as? Int)) { (($0["queue"] as? [String: Any])?["reason"] as? [String: Any])?["kind"] != nil }
        let reason = (never["queue"] as? [String: Any])?["reason"] as? [String: Any]
        #expect(reason?["kind"] as? String == "never", "\(never)")
        #expect((reason?["message"] as? String ?? "").contains("85831 MiB"), "\(never)")
        let fits = try #require(try cluster.json(cluster.post("/v1/jobs", #"{"project":"default","command":["true"],"resources":{"gpus":2,"minGpuMemoryMiB":76293}}"#))["id"] as? Int)
        #expect(try job(fits, reaching: ["succeeded", "failed"])["state"] as? String == "succeeded")
        let bad = try cluster.curl(["-s", "-X", "POST", cluster.url + "/v1/jobs", "-d", #"{"project":"default","command":["true"],"resources":{"mig":"1g.10gb","minGpuMemoryMiB":1}}"#])
        #expect(bad.contains("minGpuMemoryMiB goes with gpus"), "\(bad)")
    }
}
