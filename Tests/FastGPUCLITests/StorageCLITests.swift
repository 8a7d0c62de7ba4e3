@testable import fastgpu
import Foundation
import Testing

/// Storage from the command line against a real server, agent and (where installed) moto: a
/// job's outputs land in the bucket with their manifest and come back whole; a failed upload
/// says why, and a retry succeeds once the backend is back.
@Suite(.serialized, .timeLimit(.minutes(3)))
final class StorageCLITests {
    let cluster: LocalCluster
    let home: String

    init() throws {
        cluster = try LocalCluster()
        try cluster.startAgent("n1", gpus: "2xH100-80GB")
        cluster.waitForAgent("n1", "registered as node")
        home = cluster.directory + "/home"
        try FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: true)
    }

    /// `fastgpu ARGS` as the cluster admin (plus `extra` in the environment).
    func fastgpu(_ arguments: [String], environment extra: [String: String] = [:]) throws -> CLITests.Run {
        try CLITests.run(arguments, environment: ["HOME": home, "PATH": "/usr/bin:/bin", "FASTGPU_SERVER": cluster.url, "FASTGPU_TOKEN": cluster.admin]
            .merging(extra) { _, new in new })
    }

    /// The job's state once it is final, by blocking queries (no sleeping).
    func finalState(_ job: Int) throws -> [String: Any] {
        var index = 0
        for _ in 0..<20 {
            let text = try cluster.curl(["-D", "-", cluster.url + "/v1/jobs/\(job)?index=\(index)&wait=10s"])
            let (headers, body) = (text.components(separatedBy: "\r\n\r\n").first ?? "", text.components(separatedBy: "\r\n\r\n").dropFirst().joined(separator: "\r\n\r\n"))
            let object = try cluster.json(body)
            if ["succeeded", "failed", "cancelled"].contains(object["state"] as? String ?? "") { return object }
            if let line = headers.split(separator: "\r\n").first(where: { $0.lowercased().hasPrefix("x-fastgpu-index:") }) {
                index = Int(line.split(separator: ":").last?.trimmingCharacters(in: .whitespaces) ?? "") ?? index
            }
        }
        throw ServerProcessTests.CLIError("job \(job) did not finish")
    }

    @Test func aJobsOutputsLandInTheLocalBucketWithAManifestAndComeBackWhole() throws {
        let script = "mkdir -p out/sub && printf 'loss 0.25\\n' > out/metrics.txt && head -c 3000000 /dev/urandom > out/sub/model.bin && echo done"
        let run = try fastgpu(["run", "--gpus", "1", "--output", "out=s3://local/results/{job_id}/", "--", "sh", "-c", script])
        #expect(run.status == 0, "\(run.errors)")
        let job = try #require(run.errors.split(separator: " ").dropFirst().first.flatMap { Int($0) })
        // The allocation ended (its GPUs free) before the upload, and the job ended after it.
        let kinds = try cluster.json(cluster.get("/v1/jobs/\(job)/events"))["items"].flatMap { $0 as? [[String: Any]] }?.compactMap { $0["kind"] as? String } ?? []
        let exited = try #require(kinds.firstIndex(of: "exited"), "\(kinds)")
        let uploading = try #require(kinds.firstIndex(of: "uploading"), "\(kinds)")
        let uploaded = try #require(kinds.firstIndex(of: "outputs-uploaded"), "\(kinds)")
        #expect(exited < uploading && uploading < uploaded, "\(kinds)")

        let listed = try fastgpu(["jobs", "outputs", "ls", String(job)])
        #expect(listed.status == 0, "\(listed.errors)")
        #expect(listed.output.contains("out → s3://local/results/\(job)/  (always; complete)"), "\(listed.output)")
        #expect(listed.output.contains("metrics.txt") && listed.output.contains("sub/model.bin"))

        let into = cluster.directory + "/fetched-\(job)"
        let fetched = try fastgpu(["jobs", "outputs", "get", String(job), "--into", into])
        #expect(fetched.status == 0, "\(fetched.errors)")
        #expect(try String(contentsOfFile: into + "/metrics.txt", encoding: .utf8) == "loss 0.25\n")
        #expect((try FileManager.default.attributesOfItem(atPath: into + "/sub/model.bin")[.size] as? Int) == 3_000_000)

        // The same objects are the project's, through presigned URLs.
        let copy = try fastgpu(["storage", "cp", "s3://local/results/\(job)/metrics.txt", into + "/copy.txt"])
        #expect(copy.status == 0, "\(copy.errors)")
        #expect(try String(contentsOfFile: into + "/copy.txt", encoding: .utf8) == "loss 0.25\n")
        let up = try fastgpu(["storage", "cp", into + "/sub/model.bin", "s3://local/models/model.bin"])
        #expect(up.status == 0 && up.output.contains("(3000000 bytes)"), "\(up.errors)")
        #expect(try fastgpu(["storage", "ls"]).output.contains("local"))
        // Nothing climbs out of the project's prefix.
        let escape = try fastgpu(["storage", "cp", into + "/copy.txt", "s3://local/../other/x"])
        #expect(escape.status != 0 && escape.errors.contains("'..'"), "\(escape.errors)")
    }

    @Test func aJobsInputsAreInItsWorkingDirectoryBeforeItStarts() throws {
        let source = cluster.directory + "/inputs-src"
        try FileManager.default.createDirectory(atPath: source, withIntermediateDirectories: true)
        try "weights v1\n".write(toFile: source + "/model.txt", atomically: true, encoding: .utf8)
        try "a\n".write(toFile: source + "/a.txt", atomically: true, encoding: .utf8)
        for (file, uri) in [("model.txt", "s3://local/models/model.txt"), ("a.txt", "s3://local/shards/0/a.txt"), ("model.txt", "s3://local/shards/1/b.txt")] {
            let copied = try fastgpu(["storage", "cp", source + "/" + file, uri])
            #expect(copied.status == 0, "\(copied.errors)")
        }
        let run = try fastgpu(["run", "--input", "model.txt=s3://local/models/model.txt", "--input", "data=s3://local/shards/", "--",
                               "sh", "-c", "cat model.txt; cat data/0/a.txt; ls data/1"])
        #expect(run.status == 0, "\(run.errors)")
        #expect(run.output == "weights v1\na\nb.txt\n", "\(run.output)")
        #expect(run.errors.contains("fastgpu: downloaded s3://local/shards/ to data (2 files"), "\(run.errors)")

        // An input that is not there fails the job before its command runs, and says which.
        let missing = try fastgpu(["run", "--input", "x=s3://local/nothing/here.bin", "--", "sh", "-c", "echo ran"])
        #expect(missing.status == 1 && !missing.output.contains("ran"), "\(missing.output)")
        #expect(missing.errors.contains("fastgpu: cannot download s3://local/nothing/here.bin"), "\(missing.errors)")
        // And one that climbs out of the working directory is refused at submission.
        let escape = try fastgpu(["run", "--input", "../x=s3://local/models/model.txt", "--", "true"])
        #expect(escape.status != 0 && escape.errors.contains("working directory"), "\(escape.errors)")
    }

    @Test(.enabled(if: LocalMoto.enabled, "moto_server is not installed (pip install 'moto[server]')"))
    func aFailedUploadSaysWhyAndARetrySucceedsOnceTheBackendIsBack() throws {
        var moto = try LocalMoto(port: 0)
        let port = moto.port
        try moto.createBucket("team-results")
        let keys = ["AWS_ACCESS_KEY_ID": "AKIDMOTO", "AWS_SECRET_ACCESS_KEY": "moto-secret"]
        let added = try fastgpu(["storage", "add", "team", "--endpoint", "http://127.0.0.1:\(port)", "--bucket", "team-results"], environment: keys)
        #expect(added.status == 0, "\(added.errors)")
        moto.stop()

        let run = try fastgpu(["run", "--output", "out=s3://team/runs/{job_id}/", "--", "sh", "-c", "mkdir out && echo ok > out/result.txt"])
        #expect(run.status == 1, "\(run.output) \(run.errors)")
        #expect(run.errors.contains("output_upload_failed"), "\(run.errors)")
        let job = try #require(run.errors.split(separator: " ").dropFirst().first.flatMap { Int($0) })
        let shown = try fastgpu(["jobs", "show", String(job)])
        #expect(shown.output.contains("failure      output_upload_failed: "), "\(shown.output)")
        #expect(shown.output.contains("could not be reached"), "\(shown.output)")
        #expect(!shown.output.contains("moto-secret"))

        moto = try LocalMoto(port: port)
        try moto.createBucket("team-results")
        let retried = try fastgpu(["jobs", "outputs", "retry", String(job)])
        #expect(retried.status == 0, "\(retried.errors)")
        #expect(try finalState(job)["state"] as? String == "succeeded")
        let listed = try fastgpu(["jobs", "outputs", "ls", String(job)])
        #expect(listed.output.contains("result.txt") && listed.output.contains("complete"), "\(listed.output) \(listed.errors)")
        moto.stop()
    }
}

/// moto on loopback for the CLI tests (the storage tests have their own): buckets are made with
/// an unsigned PUT, which moto accepts. At the lowest CPU priority, as the storage tests' one.
struct LocalMoto {
    static var enabled: Bool {
        ProcessInfo.processInfo.environment["FASTGPU_REQUIRE_S3_TESTS"] == "1"
            || (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").contains { FileManager.default.isExecutableFile(atPath: "\($0)/moto_server") }
    }

    let process = Process()
    var port = 0

    init(port wanted: Int) throws {
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", "exec nice -n 19 moto_server -H 127.0.0.1 -p \(wanted)"]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let reader = LineReader(output.fileHandleForReading)
        let line = reader.waitFor { $0.contains("Running on http://127.0.0.1:") } ?? ""
        guard let range = line.range(of: "127.0.0.1:") else { throw ServerProcessTests.CLIError("moto_server did not start") }
        port = Int(line[range.upperBound...].prefix { $0.isNumber }) ?? 0
    }

    func createBucket(_ name: String) throws {
        _ = try ServerProcessTests.curl(["-X", "PUT", "http://127.0.0.1:\(port)/\(name)"])
    }

    func stop() {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }
}
