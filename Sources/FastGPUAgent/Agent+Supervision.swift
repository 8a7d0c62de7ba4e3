import AsyncHTTPClient
import NIOSSL
import FastGPUClient
import FastGPUWire
import Foundation
public import Logging

// Supervision: exits, runtime limits, stops that end only when no process is left, output shipping.
extension Agent {
    func supervise() async {
        guard let state else { return }
        sweepAllocationDirectoriesHourly()
        for id in state.workloads.keys.sorted() {
            guard let workload = self.state?.workloads[id] else { continue }
            do {
                try await supervise(workload)
            } catch {
                logger.warning("allocation \(id): \(error)")
            }
        }
        // Every tick would otherwise rewrite the state file; only a change is worth a write.
        if self.state?.workloads != state.workloads {
            try? save()
            for (id, gone) in state.workloads where self.state?.workloads[id] == nil { Cgroups.remove(gone.cgroups ?? []) }
        }
    }

    func supervise(_ initial: Workload) async throws {
        guard let state else { return }
        var workload = initial
        let id = workload.allocation
        if workload.pid == 0 {
            if let pid = Self.pid(in: workload.directory) {
                workload.pid = pid
            } else {
                let claimed = FileManager.default.fileExists(atPath: workload.directory + "/claimed")
                if claimed, let code = Self.exitCode(in: workload.directory) {
                    // It could not be started: its reason is in its stderr.
                    try await shipOutput(&workload)
                    self.state?.workloads[id] = nil
                    if workload.stoppingSince == nil {
                        await reportExit(id, epoch: workload.epoch, code: code, node: state.nodeID, token: state.token)
                    }
                    return
                }
                if !claimed && !spawned.contains(id) && workload.stoppingSince == nil {
                    // Recorded by an agent that died before spawning it: spawn it now.
                    launch(workload)
                }
                if workload.stoppingSince != nil && !claimed && Self.exitCode(in: workload.directory) == nil {
                    self.state?.workloads[id] = nil
                }
                return
            }
            self.state?.workloads[id] = workload
        }
        // A container runs once its image is on the node: until the wrapper says `running`, it
        // is pulling (or failing to), not running.
        let phase = workload.sandbox?.kind == .container || workload.fetchesInputs == true ? Self.phase(in: workload.directory) : "running"
        if phase == "pulling" || phase == "downloading", workload.sawPulling != true && workload.stoppingSince == nil {
            logger.info("allocation \(id): \(phase == "pulling" ? "pulling image \(workload.sandbox?.image ?? "")" : "downloading its inputs")")
            do {
                try await client.report(node: state.nodeID, token: state.token, allocation: id, epoch: workload.epoch, exitCode: nil, pulling: true)
            } catch let failure as AgentClient.Failure where failure.status == 409 {
                // Stale: the next assignments stop it.
            }
            workload.sawPulling = true
        }
        if phase == "running", let image = workload.sandbox?.image { presentImages.insert(image) }
        if workload.stoppingSince == nil && !workload.reportedRunning && phase == "running" {
            do {
                try await client.report(node: state.nodeID, token: state.token, allocation: id, epoch: workload.epoch, exitCode: nil)
            } catch let failure as AgentClient.Failure where failure.status == 409 {
                // Stale: the control plane replaced this allocation; the next assignments stop it.
            }
            workload.reportedRunning = true
        }
        try await shipOutput(&workload)
        await superviseSteps(&workload)
        // While this supervision waited on the network, a reconcile may have decided to stop the
        // workload (and signalled it): decide on that, and do not write the stop away below.
        adoptStopDecision(into: &workload)
        let alive = Self.isAlive(workload.pid)
        let cgroups = workload.cgroups ?? []
        if let since = workload.stoppingSince {
            // Stopped once every process of it is gone, not when its wrapper is: a process
            // that ignores SIGTERM outlives the shell that ran it.
            let left = WorkloadProcesses.members(group: workload.pid, cgroups: cgroups)
            if left.isEmpty {
                // Its processes are gone (or, without cgroups, not the agent's to see): podman
                // removes the container — whatever still runs in it, and its record, mounts and
                // network — before the stop counts as done.
                await removeContainer(of: workload)
            }
            if left.isEmpty {
                signalSteps(SIGKILL, of: workload)
                self.state?.workloads[id] = nil
                logger.info("allocation \(id) stopped")
                if workload.limitExceeded {
                    await reportExit(id, epoch: workload.epoch, code: 124, node: state.nodeID, token: state.token)
                }
                return
            }
            if !workload.signalled {
                // Adopted (its pid learnt) after the stop was decided: it gets its SIGTERM now.
                WorkloadProcesses.signal(SIGTERM, group: workload.pid, cgroups: cgroups)
                workload.signalled = true
            } else if Duration.seconds(Date().timeIntervalSince(since)) >= configuration.stopGrace {
                if workload.killedAt == nil {
                    logger.info("allocation \(id): \(left.count) process(es) outlived the \(configuration.stopGrace) grace after SIGTERM; sending SIGKILL")
                    workload.killedAt = Date()
                    await removeContainer(of: workload)
                }
                WorkloadProcesses.signal(SIGKILL, group: workload.pid, cgroups: cgroups)
            }
        } else if let deadline = workload.deadline, Date() > deadline {
            logger.info("allocation \(id) passed its runtime limit; stopping it")
            WorkloadProcesses.signal(SIGTERM, group: workload.pid, cgroups: cgroups)
            workload.signalled = true
            workload.stoppingSince = Date()
            workload.limitExceeded = true
        } else if let code = Self.exitCode(in: workload.directory) {
            // The job's command is done; what it left behind (a background child) is not the
            // job any more and holds its devices: it is killed before the exit is reported.
            if !WorkloadProcesses.members(group: workload.pid, cgroups: cgroups).isEmpty {
                WorkloadProcesses.signal(SIGKILL, group: workload.pid, cgroups: cgroups)
                self.state?.workloads[id] = workload
                return
            }
            if code == 125, let image = workload.sandbox?.image {
                // podman could not run it: perhaps the image went from the node; ask again next time.
                presentImages.remove(image)
            }
            if code != 0, let limit = Cgroups.oomKilled(workload.cgroups ?? []) {
                // Said where the person looks: the job's own error output.
                let note = "fastgpu: the kernel killed the job for using more than its memory limit of \(limit >> 20) MiB (ask for more with --memory)\n"
                if let handle = FileHandle(forWritingAtPath: workload.directory + "/stderr") {
                    handle.seekToEndOfFile()
                    handle.write(Data(note.utf8))
                    try? handle.close()
                }
            }
            try await shipOutput(&workload)
            // Its steps end with it (the allocation's devices go back).
            signalSteps(SIGKILL, of: workload)
            // Gone from the state before the report: a reconcile that runs meanwhile must not
            // try to stop it. Heartbeats list it until its exit is reported (`reportExit`).
            self.state?.workloads[id] = nil
            await reportExit(id, epoch: workload.epoch, code: code, node: state.nodeID, token: state.token)
            logger.info("allocation \(id) exited with \(code)")
            return
        } else if !alive {
            // The wrapper itself was killed (not by us): what is left of the job goes too, and
            // the failure is reported once nothing of it runs.
            if !WorkloadProcesses.members(group: workload.pid, cgroups: cgroups).isEmpty {
                WorkloadProcesses.signal(SIGKILL, group: workload.pid, cgroups: cgroups)
                self.state?.workloads[id] = workload
                return
            }
            await removeContainer(of: workload)
            signalSteps(SIGKILL, of: workload)
            self.state?.workloads[id] = nil
            await reportExit(id, epoch: workload.epoch, code: 137, node: state.nodeID, token: state.token)
            return
        }
        self.state?.workloads[id] = workload
    }

    /// Reports how an allocation ended. Until a control plane has the report, heartbeats list
    /// the allocation as still held and each heartbeat sends the report again: a job that
    /// ended while no control plane answered (one restarting, or a leader being replaced) is
    /// never taken for lost and run a second time. A refusal (the control plane ended the
    /// allocation already, or does not know it) is final.
    func reportExit(_ id: UInt64, epoch: UInt64, code: Int32, node: UInt64, token: String) async {
        exiting[id] = epoch
        do {
            try await client.report(node: node, token: token, allocation: id, epoch: epoch, exitCode: code)
        } catch let failure as AgentClient.Failure where [401, 403, 404, 409].contains(failure.status) {
            logger.info("allocation \(id) exited after the control plane had ended it (\(failure.status))")
        } catch {
            unreportedExits[id] = code
            try? save()
            logger.warning("allocation \(id): its exit (\(code)) is not reported yet (\(error)); the next heartbeat sends it again")
            return
        }
        exiting[id] = nil
        if unreportedExits.removeValue(forKey: id) != nil { try? save() }
    }

    /// Sends the exits no control plane has acknowledged yet, oldest allocation first; stops at
    /// the first that finds no control plane (one that answered with an error is passed over
    /// and tried again next time).
    func resendExits() async {
        guard let state else { return }
        for (id, code) in unreportedExits.sorted(by: { $0.key < $1.key }) {
            guard let epoch = exiting[id] else {
                unreportedExits[id] = nil
                continue
            }
            do {
                try await client.report(node: state.nodeID, token: state.token, allocation: id, epoch: epoch, exitCode: code)
            } catch let failure as AgentClient.Failure where [401, 403, 404, 409].contains(failure.status) {
                logger.info("allocation \(id) exited after the control plane had ended it (\(failure.status))")
            } catch is AgentClient.Failure {
                continue
            } catch {
                return
            }
            logger.info("allocation \(id): its exit (\(code)) is reported now")
            exiting[id] = nil
            unreportedExits[id] = nil
            try? save()
        }
    }

    /// `podman rm --force` of a container workload, off the actor, awaited.
    func removeContainer(of workload: Workload) async {
        guard let container = workload.sandbox?.container, let runtime = containerRuntime else { return }
        await Task.detached { runtime.remove(container) }.value
    }

    /// Copies a stop that `reconcile` recorded into a copy of the workload taken before it.
    /// Only `reconcile` and the runtime limit start a stop, and a stop is never undone.
    func adoptStopDecision(into workload: inout Workload) {
        // Steps a reconcile started meanwhile stay recorded (this copy's progress wins for the others).
        if let current = state?.workloads[workload.allocation]?.steps {
            workload.steps = current.merging(workload.steps ?? [:]) { _, mine in mine }
        }
        guard workload.stoppingSince == nil, let current = state?.workloads[workload.allocation], current.stoppingSince != nil else { return }
        workload.stoppingSince = current.stoppingSince
        workload.signalled = current.signalled
    }

    /// Ships what the workload wrote since the last upload, in order, each chunk numbered.
    func shipOutput(_ workload: inout Workload) async throws {
        guard let state else { return }
        var chunks: [(sequence: Int64, stream: String, text: String)] = []
        var shipped = workload.shipped
        var sequence = workload.nextSequence
        for stream in ["stdout", "stderr"] {
            guard let handle = FileHandle(forReadingAtPath: workload.directory + "/" + stream) else { continue }
            defer { try? handle.close() }
            let offset = shipped[stream] ?? 0
            try handle.seek(toOffset: offset)
            guard let data = try handle.read(upToCount: 256 * 1024), !data.isEmpty else { continue }
            // Whole lines only, unless a line alone is larger than the read.
            var end = data.count
            if let lastNewline = data.lastIndex(of: UInt8(ascii: "\n")) { end = lastNewline + 1 } else if data.count < 256 * 1024 { continue }
            chunks.append((sequence, stream, String(decoding: data.prefix(end), as: UTF8.self)))
            sequence += 1
            shipped[stream] = offset + UInt64(end)
        }
        guard !chunks.isEmpty else { return }
        do {
            try await client.uploadLogs(node: state.nodeID, token: state.token, allocation: workload.allocation, chunks: chunks)
        } catch let failure as AgentClient.Failure where failure.status == 404 {
            // The allocation is unknown to the control plane: its lines have nowhere to go.
        }
        workload.shipped = shipped
        workload.nextSequence = sequence
    }

    static func pid(in directory: String) -> Int32? {
        guard let data = FileManager.default.contents(atPath: directory + "/pid") else { return nil }
        return Int32(String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
    }

    /// What the wrapper of a container says it is doing: `pulling`, `running`, or nil before either.
    static func phase(in directory: String) -> String? {
        FileManager.default.contents(atPath: directory + "/phase").map { String(decoding: $0, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) }
    }

    static func exitCode(in directory: String) -> Int32? {
        guard let data = FileManager.default.contents(atPath: directory + "/exit-code") else { return nil }
        return Int32(String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
    }

    /// Alive and not a zombie (a re-attached workload is not our child, and PID 1 may not reap it).
    static func isAlive(_ pid: Int32) -> Bool {
        kill(pid, 0) == 0 && WorkloadProcesses.Stat(pid: pid)?.isZombie != true
    }
}
