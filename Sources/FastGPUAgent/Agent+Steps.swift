import FastGPUClient
import FastGPUWire
import Foundation

// Steps: commands run in an allocation this agent runs, as its job's command runs — same devices,
// cgroups, user and sandbox, same work directory — each with its own output and exit code.
extension Agent {
    func stepDirectory(_ step: UInt64, of workload: Workload) -> String { workload.directory + "/steps/\(step)" }

    /// Starts a step: its directory (output files, the job's environment with the step's, a
    /// `work` link to the allocation's), then the same wrapper as the job's, claiming the step's
    /// directory so that it never runs twice.
    func launchStep(_ step: StepAssignmentWire, in workload: Workload) {
        let directory = stepDirectory(step.id, of: workload)
        do {
            guard workload.refusal == nil, workload.sandbox?.kind != .container else {
                throw AgentClient.Failure(status: 0, description: "steps run in host-process allocations")
            }
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            for file in ["stdout", "stderr"] where !FileManager.default.fileExists(atPath: directory + "/" + file) {
                FileManager.default.createFile(atPath: directory + "/" + file, contents: nil)
            }
            if (try? FileManager.default.destinationOfSymbolicLink(atPath: directory + "/work")) == nil {
                try FileManager.default.createSymbolicLink(atPath: directory + "/work", withDestinationPath: workload.directory + "/work")
            }
            var environment = workload.environment.merging(step.env) { _, step in step }
            environment["FASTGPU_STEP_ID"] = String(step.id)
            try Self.writeEnvironment(environment, to: directory, lines: false)
            try runWrapper(Self.wrapper(joining: workload.cgroups ?? [], prelude: nil, environmentOnFD4: true), named: "fastgpu-step",
                           arguments: (workload.launcher ?? [execHelper, "exec-env", "--fd", "4", "--"]) + step.command, in: directory)
            spawnedSteps.insert("\(workload.allocation)/\(step.id)")
            logger.info("started step \(step.id) in allocation \(workload.allocation)")
        } catch {
            logger.error("cannot start step \(step.id) in allocation \(workload.allocation): \(error)")
            try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            Self.recordStartFailure(in: directory, reason: "\(error)")
        }
    }

    /// Reports each step's new output, its start, and its exit once all its output is reported.
    func superviseSteps(_ workload: inout Workload) async {
        guard let runs = workload.steps, let state else { return }
        for (id, initial) in runs.sorted(by: { $0.key < $1.key }) where !initial.done {
            var run = initial
            let directory = stepDirectory(id, of: workload)
            let claimed = FileManager.default.fileExists(atPath: directory + "/claimed")
            if !claimed && !spawnedSteps.contains("\(workload.allocation)/\(id)") {
                // Recorded by an agent that died before starting it.
                Self.recordStartFailure(in: directory, reason: "the agent restarted before starting it; run it again")
            }
            // The exit code first: once it is there, all output is in the files.
            let code = Self.exitCode(in: directory)
            let limit = 256 * 1024
            let out = Self.readText(directory + "/stdout", from: run.stdoutShipped, limit: limit, final: code != nil)
            let err = Self.readText(directory + "/stderr", from: run.stderrShipped, limit: limit, final: code != nil)
            let complete = code != nil && out.bytes < limit && err.bytes < limit
            let started = claimed || code != nil
            guard out.bytes > 0 || err.bytes > 0 || started != run.reportedStart || complete else { continue }
            let body = StepReportBody(epoch: workload.epoch, started: started, stdoutOffset: Int64(run.stdoutShipped), stdout: out.text,
                                      stderrOffset: Int64(run.stderrShipped), stderr: err.text, exitCode: complete ? code : nil)
            do {
                try await client.reportStep(node: state.nodeID, token: state.token, allocation: workload.allocation, step: id, body)
                run.stdoutShipped += UInt64(out.bytes)
                run.stderrShipped += UInt64(err.bytes)
                run.reportedStart = started
                run.done = complete
            } catch let failure as AgentClient.Failure where failure.status == 404 || failure.status == 409 {
                // The control plane no longer knows the step (it restarted, or the allocation moved on).
                run.done = true
            } catch {
                logger.warning("step \(id) of allocation \(workload.allocation): \(error)")
            }
            workload.steps?[id] = run
        }
    }

    /// Signals the process groups of the allocation's steps that still run: not one whose
    /// wrapper has written its exit code (its pid may be another process's by now).
    func signalSteps(_ signal: Int32, of workload: Workload) {
        for (id, run) in workload.steps ?? [:] where !run.done {
            let directory = stepDirectory(id, of: workload)
            if Self.exitCode(in: directory) == nil, let pid = Self.pid(in: directory), pid > 0, Self.isAlive(pid) {
                WorkloadProcesses.signal(signal, group: pid, cgroups: [])
            }
        }
    }

    /// Up to `limit` bytes of a file from `offset`, as text whose UTF-8 has exactly as many bytes
    /// as were read (an invalid byte becomes `?`), so that offsets on both sides agree. A
    /// character cut by the end of the read waits for the next one unless the file is complete.
    static func readText(_ path: String, from offset: UInt64, limit: Int, final: Bool) -> (text: String, bytes: Int) {
        guard let handle = FileHandle(forReadingAtPath: path) else { return ("", 0) }
        defer { try? handle.close() }
        guard (try? handle.seek(toOffset: offset)) != nil, let data = try? handle.read(upToCount: limit), !data.isEmpty else { return ("", 0) }
        let bytes = [UInt8](data)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var i = 0
        while i < bytes.count {
            let lead = bytes[i]
            let length = lead < 0x80 ? 1 : lead & 0xE0 == 0xC0 ? 2 : lead & 0xF0 == 0xE0 ? 3 : lead & 0xF8 == 0xF0 ? 4 : 0
            if length == 1 {
                out.append(lead)
                i += 1
                continue
            }
            // A character the read cut (or the process is still writing) waits for the next read.
            if length > 1 && i + length > bytes.count && !final { break }
            if length > 1, i + length <= bytes.count, String(validating: bytes[i..<(i + length)], as: UTF8.self) != nil {
                out.append(contentsOf: bytes[i..<(i + length)])
                i += length
            } else {
                out.append(UInt8(ascii: "?"))
                i += 1
            }
        }
        return (String(decoding: out, as: UTF8.self), i)
    }
}
