@testable import fastgpu
import Foundation
import Testing

/// The user CLI against a real server and agent on loopback: what a person types and sees.
@Suite(.serialized, .timeLimit(.minutes(2)))
final class UserCLITests {
    let cluster: LocalCluster
    let home: String
    /// What the agent said at start about CPU and memory limits.
    let cgroupLine: String

    init() throws {
        cluster = try LocalCluster()
        try cluster.startAgent("n1", gpus: "2xH100-80GB")
        cgroupLine = cluster.waitForAgent("n1", "cgroup") ?? ""
        cluster.waitForAgent("n1", "registered as node")
        home = cluster.directory + "/home"
        try FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: true)
    }

    /// `fastgpu ARGS` as a user with a saved login (or the given environment).
    func fastgpu(_ arguments: [String], environment extra: [String: String]? = nil) throws -> CLITests.Run {
        var environment = ["HOME": home, "PATH": "/usr/bin:/bin"]
        environment.merge(extra ?? ["FASTGPU_SERVER": cluster.url, "FASTGPU_TOKEN": cluster.admin]) { _, new in new }
        return try CLITests.run(arguments, environment: environment)
    }

    @Test func runStreamsTheOutputAndExitsWithTheJobsCode() throws {
        let run = try fastgpu(["run", "--gpus", "H100:2", "--name", "hello", "--", "sh", "-c",
                               "for i in 1 2 3; do echo line $i; done; echo devices=$CUDA_VISIBLE_DEVICES; echo warn >&2; exit 3"])
        #expect(run.status == 3, "\(run.errors)")
        #expect(run.output == "line 1\nline 2\nline 3\ndevices=0,1\n")
        #expect(run.errors.contains("warn\n"))
        #expect(run.errors.contains("failed with exit code 3"))
        let ok = try fastgpu(["run", "--", "true"])
        #expect(ok.status == 0 && ok.output.isEmpty, "\(ok.errors)")
    }

    @Test func aSecretReachesTheJobAndNeverItsListings() throws {
        let value = "s3cr3t-\(UInt64.random(in: 0...UInt64.max))"
        var environment = ["FASTGPU_SERVER": cluster.url, "FASTGPU_TOKEN": cluster.admin, "HF_TOKEN": value]
        // From this shell's environment (not the command line), and from the project's store.
        let stored = Process()
        stored.executableURL = URL(fileURLWithPath: "/bin/sh")
        stored.arguments = ["-c", "printf %s \"$HF_TOKEN\" | timeout 60 \(CLITests.binary.path) secrets set default hf"]
        stored.environment = environment.merging(["HOME": home, "PATH": "/usr/bin:/bin"]) { _, new in new }
        try stored.run()
        stored.waitUntilExit()
        #expect(stored.terminationStatus == 0)
        let run = try fastgpu(["run", "--secret", "HF_TOKEN", "--secret-ref", "FROM_STORE=hf", "--",
                               "sh", "-c", "test \"$HF_TOKEN\" = \"$FROM_STORE\" && echo ${#HF_TOKEN} chars"], environment: environment)
        #expect(run.status == 0, "\(run.errors)")
        #expect(run.output == "\(value.count) chars\n")
        environment["HF_TOKEN"] = nil
        let listed = try fastgpu(["jobs", "ls", "--all", "--output", "json"], environment: environment)
        let shown = try fastgpu(["jobs", "show", "1"], environment: environment)
        let secrets = try fastgpu(["secrets", "ls", "default"], environment: environment)
        #expect(secrets.output.contains("hf"))
        for text in [run.output + run.errors, listed.output, shown.output, secrets.output] { #expect(!text.contains(value)) }
    }

    @Test func detachThenFollowShowAndList() throws {
        let detached = try fastgpu(["run", "-d", "--gpus", "1", "--env", "WHO=tester", "--", "sh", "-c", "echo hi $WHO"])
        #expect(detached.status == 0, "\(detached.errors)")
        let id = detached.output.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(UInt64(id) != nil, "run -d prints the job id alone: \(detached.output)")
        let logs = try fastgpu(["jobs", "logs", "-f", id])
        #expect(logs.status == 0 && logs.output == "hi tester\n", "\(logs.errors)")
        let show = try fastgpu(["jobs", "show", id, "--output", "json"])
        let job = try JSONSerialization.jsonObject(with: Data(show.output.utf8)) as? [String: Any]
        #expect(job?["state"] as? String == "succeeded")
        #expect((job?["env"] as? [String: String])?["WHO"] == "tester")
        let list = try fastgpu(["jobs", "ls", "--all", "-o", "json"])
        let items = (try JSONSerialization.jsonObject(with: Data(list.output.utf8)) as? [String: Any])?["items"] as? [[String: Any]]
        #expect(items?.contains { String($0["id"] as? Int ?? 0) == id } == true)
        // The same key is the same job: a script that runs again does not submit twice.
        let once = try fastgpu(["run", "-d", "--idempotency-key", "nightly-7", "--", "true"])
        let again = try fastgpu(["run", "-d", "--idempotency-key", "nightly-7", "--", "true"])
        #expect(once.status == 0 && once.output == again.output, "\(once.output) \(once.errors) / \(again.output) \(again.errors)")
        let table = try fastgpu(["jobs", "ls", "-a"])
        #expect(table.output.hasPrefix("ID ") && table.output.contains("succeeded"))
    }

    @Test func aWaitingJobSaysWhyAndCanBeCancelled() throws {
        let ready = cluster.mkfifo("ready"), hold = cluster.mkfifo("hold")
        let holder = try fastgpu(["run", "-d", "--gpus", "2", "--", "sh", "-c", "echo up > \(ready); cat \(hold) > /dev/null"])
        let holderID = holder.output.trimmingCharacters(in: .whitespacesAndNewlines)
        // The holder runs once it has written to `ready`.
        #expect(readFIFO(ready) == "up\n")
        let waiting = try fastgpu(["run", "-d", "--gpus", "1", "--name", "patient", "--", "true"])
        let id = waiting.output.trimmingCharacters(in: .whitespacesAndNewlines)
        var why = try fastgpu(["jobs", "why", id])
        // The reason comes with the first scheduling pass after the submission.
        for _ in 0..<100 where !why.output.contains("waiting for") { why = try fastgpu(["jobs", "why", id]) }
        #expect(why.output.contains("#1 in the queue"))
        #expect(why.output.contains("[gpus]"), "\(why.output)")
        let queue = try fastgpu(["queue"])
        #expect(queue.output.contains("patient"))
        let cancel = try fastgpu(["jobs", "cancel", id, holderID])
        #expect(cancel.status == 0 && cancel.output.contains("job \(id): cancelled"), "\(cancel.errors)")
        let follow = try fastgpu(["jobs", "logs", "-f", holderID])
        #expect(follow.status == 1 && follow.errors.contains("was cancelled"))
    }

    @Test func onceJobsFinishedAWaitingJobGetsALearnedStartInTheQueueAndWhy() throws {
        // Three jobs like it finish: the server learns how long such jobs run.
        for _ in 0..<3 {
            let done = try fastgpu(["run", "--gpus", "2", "--", "sleep", "0.2"])
            #expect(done.status == 0, "\(done.errors)")
        }
        let ready = cluster.mkfifo("ready"), hold = cluster.mkfifo("hold")
        let holder = try fastgpu(["run", "-d", "--gpus", "2", "--", "sh", "-c", "echo up > \(ready); cat \(hold) > /dev/null"])
        #expect(readFIFO(ready) == "up\n")
        let waiting = try fastgpu(["run", "-d", "--gpus", "2", "--name", "patient", "--", "true"])
        let id = waiting.output.trimmingCharacters(in: .whitespacesAndNewlines)
        // Neither job gave a run time; the estimate comes with the first pass after the submission.
        var queue = try fastgpu(["queue"])
        for _ in 0..<100 where !queue.output.contains("(learned)") { queue = try fastgpu(["queue"]) }
        #expect(queue.output.contains("patient") && queue.output.contains("(learned)"), "\(queue.output)")
        #expect(queue.output.contains("estimated from the run times of finished jobs like them"))
        let why = try fastgpu(["jobs", "why", id])
        #expect(why.output.contains("estimated start") && why.output.contains("learned from the run times of finished jobs"), "\(why.output)")
        let json = try fastgpu(["queue", "-o", "json"])
        #expect(json.output.contains(#""estimatedStartBasis" : "learned""#) || json.output.contains(#""estimatedStartBasis":"learned""#), "\(json.output)")
        _ = try fastgpu(["jobs", "cancel", id, holder.output.trimmingCharacters(in: .whitespacesAndNewlines)])
    }

    /// Where the machine lets the agent write cgroups (v1 or v2), a job is held to the CPU and
    /// memory it asked for; where it does not, the agent said so when it started.
    @Test func cpuAndMemoryRequestsAreLimits() throws {
        guard !cgroupLine.contains("unavailable") else {
            #expect(cgroupLine.contains("NOT enforced"))
            return
        }
        let v2 = cgroupLine.contains("cgroup v2")
        let show = v2
            ? #"g=/sys/fs/cgroup$(sed -n 's/^0:://p' /proc/self/cgroup); cat $g/cpu.max $g/memory.max"#
            : #"cat /sys/fs/cgroup/cpu$(sed -n 's/^[0-9]*:cpu:\(.*\)/\1/p' /proc/self/cgroup)/cpu.cfs_quota_us /sys/fs/cgroup/memory$(sed -n 's/^[0-9]*:memory:\(.*\)/\1/p' /proc/self/cgroup)/memory.limit_in_bytes"#
        let limits = try fastgpu(["run", "--cpus", "0.5", "--memory", "64MB", "--", "sh", "-c", show])
        #expect(limits.status == 0, "\(limits.errors)")
        #expect(limits.output == (v2 ? "50000 100000\n67108864\n" : "50000\n67108864\n"), "\(cgroupLine)")
        // 200 MB touched in a 64 MB job: the kernel ends it, and the job fails with 128 + SIGKILL.
        let hog = try fastgpu(["run", "--memory", "64MB", "--", "dd", "if=/dev/zero", "of=/dev/null", "bs=200M", "count=1"])
        #expect(hog.status == 137, "\(hog.errors)")
        #expect(hog.errors.contains("fastgpu: the kernel killed the job for using more than its memory limit of 64 MiB"), "\(hog.errors)")
    }

    /// While its job waits, `run` says so on stderr (plain lines on a pipe); once the GPUs free
    /// up it runs the job and exits with its code.
    @Test func runWaitsVisiblyThenRuns() throws {
        let ready = cluster.mkfifo("ready2"), hold = cluster.mkfifo("hold2")
        let holder = try fastgpu(["run", "-d", "--gpus", "2", "--", "sh", "-c", "echo up > \(ready); cat \(hold) > /dev/null"])
        let holderID = holder.output.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(readFIFO(ready) == "up\n")

        let process = Process()
        process.executableURL = CLITests.binary
        process.arguments = ["run", "--gpus", "1", "--", "sh", "-c", "echo finally; exit 4"]
        process.environment = ["HOME": home, "PATH": "/usr/bin:/bin", "FASTGPU_SERVER": cluster.url, "FASTGPU_TOKEN": cluster.admin]
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let errors = LineReader(err.fileHandleForReading)
        let waiting = errors.waitFor { $0.contains("pending") && $0.contains("no ready node has 1 free GPU") }
        #expect(waiting != nil, "no pending line with its reason")
        #expect(try fastgpu(["jobs", "cancel", holderID]).status == 0)
        let end = errors.waitFor { $0.contains("failed with exit code 4") }
        process.waitUntilExit()
        #expect(end != nil)
        #expect(process.terminationStatus == 4)
        #expect(String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self) == "finally\n")
    }

    /// A gang's lines carry their rank.
    @Test func aGangsOutputCarriesItsRanks() throws {
        try cluster.startAgent("n2", gpus: "2xH100-80GB")
        cluster.waitForAgent("n2", "registered as node")
        let run = try fastgpu(["run", "--nodes", "2", "--gpus", "2", "--", "sh", "-c", "echo rank $FASTGPU_NODE_RANK of $FASTGPU_NUM_NODES"])
        #expect(run.status == 0, "\(run.errors)")
        #expect(Set(run.output.split(separator: "\n")) == ["[rank 0] rank 0 of 2", "[rank 1] rank 1 of 2"])
    }

    @Test func wrongInputGetsOneLineAndANonZeroExit() throws {
        let never = try fastgpu(["run", "--gpus", "H200:1", "--", "true"])
        #expect(never.status == 1)
        #expect(never.errors.contains("can never start: no node has GPU model H200; it was cancelled"), "\(never.errors)")
        let badYAML = cluster.directory + "/bad.yaml"
        try "run: [oops\n".write(toFile: badYAML, atomically: true, encoding: .utf8)
        let unknownKey = cluster.directory + "/unknown.yaml"
        try "gpu: 1\nrun: true\n".write(toFile: unknownKey, atomically: true, encoding: .utf8)
        let cases: [([String], [String: String]?, String)] = [
            (["run", "--gpus", "abc:x", "--", "true"], nil, "--gpus must look like H100:2, 2, H100, 24GB:2"),
            (["run", "--gpu-memory", "lots", "--", "true"], nil, "--gpu-memory must be a size"),
            (["run", "--max-runtime", "soon", "--", "true"], nil, "--max-runtime must be a duration"),
            (["run", "--gpus", "1"], nil, "no command to run"),
            (["run", "-f", badYAML], nil, "is not valid YAML"),
            (["run", "-f", unknownKey], nil, "unknown key 'gpu'"),
            (["jobs", "ls"], ["FASTGPU_SERVER": "http://127.0.0.1:1", "FASTGPU_TOKEN": "x"], "cannot reach the FastGPU server at http://127.0.0.1:1"),
            (["jobs", "ls"], ["FASTGPU_SERVER": cluster.url, "FASTGPU_TOKEN": "fgpu_not_a_token"], "the server refused the token"),
            (["jobs", "show", "123456"], nil, "not found"),
            (["jobs", "show", "twelve"], nil, "is not a job id"),
        ]
        for (arguments, environment, message) in cases {
            let run = try fastgpu(arguments, environment: environment)
            #expect(run.status != 0, "\(arguments)")
            #expect(run.errors.contains(message), "\(arguments): \(run.errors)")
            let lines = run.errors.split(separator: "\n")
            #expect(lines.count <= 3, "\(arguments) printed more than a line or two: \(run.errors)")
        }
    }

    @Test func loginSavesTheServerAndTokenForLaterCommands() throws {
        let tokenFile = cluster.directory + "/server/admin-token"
        let login = try fastgpu(["login", "--server", cluster.url, "--token-file", tokenFile], environment: [:])
        #expect(login.status == 0, "\(login.errors)")
        let config = home + "/.config/fastgpu/config.json"
        let mode = try FileManager.default.attributesOfItem(atPath: config)[.posixPermissions] as? Int
        #expect(mode == 0o600)
        let nodes = try fastgpu(["nodes", "ls"], environment: [:])
        #expect(nodes.status == 0 && nodes.output.contains("n1") && nodes.output.contains("2/2"), "\(nodes.errors)")
        // The saved token goes to its own server only, not to another one named on the command line.
        let elsewhere = try fastgpu(["nodes", "ls", "--server", "http://127.0.0.1:9"], environment: [:])
        #expect(elsewhere.status != 0 && elsewhere.errors.contains("no API token"), "\(elsewhere.errors)")
        let token = try fastgpu(["tokens", "create", "alice"], environment: [:])
        #expect(token.output.hasPrefix("fgpu_"))
        let created = try fastgpu(["projects", "create", "vision"], environment: [:])
        #expect(created.status == 0)
        let member = try fastgpu(["projects", "add-member", "vision", "alice", "--role", "viewer"], environment: [:])
        #expect(member.status == 0, "\(member.errors)")
        // alice's own token sees her project and may not submit to it as a viewer.
        let alice = ["FASTGPU_SERVER": cluster.url, "FASTGPU_TOKEN": token.output.trimmingCharacters(in: .whitespacesAndNewlines)]
        let projects = try fastgpu(["projects", "-o", "json"], environment: alice)
        #expect(projects.output.contains("\"vision\""))
        let refused = try fastgpu(["run", "--project", "vision", "--", "true"], environment: alice)
        #expect(refused.status == 1 && refused.errors.contains("HTTP 403"), "\(refused.errors)")
        let cordon = try fastgpu(["nodes", "cordon", "n1"], environment: [:])
        #expect(cordon.output.contains("cordoned"), "\(cordon.output) \(cordon.errors)")
    }
}

@Suite struct JobSpecTests {
    @Test func gpuSizeAndDurationValues() throws {
        #expect(try JobSpec.parseGPUs("H100:2") == ("H100", 2, nil))
        #expect(try JobSpec.parseGPUs("4") == (nil, 4, nil))
        #expect(try JobSpec.parseGPUs("A100-80GB") == ("A100-80GB", 1, nil))
        #expect(try JobSpec.parseGPUs("24GB:2") == (nil, 2, 22_888))
        #expect(try JobSpec.parseGPUs("H100:80GB:8") == ("H100", 8, 76_293))
        #expect(try JobSpec.parseGPUs("16GB") == (nil, 1, 15_258))
        for bad in ["abc:x", "H100:0", ":2", "H100:2:3", "-1", "", "24GB:0", "80GB:H100:2", "H100:A100:2", "0GB:1"] { #expect(throws: CommandFailure.self) { try JobSpec.parseGPUs(bad) } }
        #expect(try JobSpec.parseMiB("20GB", flag: "") == 20480)
        #expect(try JobSpec.parseMiB("1.5G", flag: "") == 1536)
        #expect(try JobSpec.parseMiB("512MiB", flag: "") == 512)
        #expect(try JobSpec.parseMiB("512", flag: "") == 512)
        #expect(try JobSpec.parseSeconds("1h30m", flag: "") == 5400)
        #expect(try JobSpec.parseSeconds("90", flag: "") == 90)
        #expect(throws: CommandFailure.self) { try JobSpec.parseSeconds("1x", flag: "") }
    }

    @Test func aTaskFileMeansWhatTheFlagsMean() throws {
        let file = try TaskFile.parse("""
            name: train
            nodes: 2
            resources:
              gpus: H100:8
              cpus: 0.5
              memory: 64GB
            env:
              A: "1"
            run: python train.py --epochs 3
            retry: 2
            priority: high
            spot: true
            max_runtime: 12h
            """, path: "task.yaml")
        var flags = JobSpec()
        flags.nodes = 2
        flags.gpus = "H100:8"
        flags.cpus = "0.5"
        flags.memory = "64GB"
        flags.name = "train"
        flags.env = ["A": "1"]
        flags.command = ["sh", "-c", "python train.py --epochs 3"]
        flags.retry = 2
        flags.priority = "high"
        flags.spot = true
        flags.maxRuntime = "12h"
        #expect(file == flags)
        let body = try file.body(defaultProject: "default")
        #expect(body.tasks == 2 && body.gang == true && body.resources?.gpus == 8 && body.resources?.gpuModel == "H100")
        #expect(body.resources?.cpuMillis == 500 && body.resources?.memoryMiB == 65536)
        #expect(body.maxAttempts == 3 && body.maxRuntimeSeconds == 43200 && body.spot == true)
        // Flags win over the file.
        var override = JobSpec()
        override.gpus = "2"
        #expect(try file.overridden(by: override).body(defaultProject: "p").resources?.gpus == 2)
    }
}
