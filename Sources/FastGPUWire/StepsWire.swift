// Steps: commands run inside a running job's allocation (`/v1/jobs/{id}/steps`), as `srun`
// inside `salloc` or `kubectl exec`: on the job's devices, in its cgroup, as its user.

package struct StepSubmissionBody: Codable, Sendable, Equatable {
    package var command: [String]
    package var env: [String: String]?

    package enum CodingKeys: String, CodingKey, CaseIterable { case command, env }

    package init(from decoder: any Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        command = try c.decode([String].self, forKey: .command)
        env = try c.decodeIfPresent([String: String].self, forKey: .env)
    }

    package init(command: [String], env: [String: String]? = nil) {
        self.command = command
        self.env = env
    }
}

package struct StepWire: Codable, Sendable, Equatable {
    package var id: UInt64
    package var job: UInt64
    package var allocation: UInt64
    package var command: [String]
    /// `pending` (the agent has not started it), `running`, `succeeded`, `failed`, or `lost`
    /// (the allocation ended before the step did).
    package var state: String
    package var exitCode: Int32?
    /// Its output; at most the last 1 MiB of each stream (`truncated` says when more was written).
    package var stdout: String
    package var stderr: String
    package var truncated: Bool
    /// Bytes of each stream written in all (more than `stdout`/`stderr` hold once truncated):
    /// what a follower compares to print only what is new.
    package var stdoutBytes: Int64
    package var stderrBytes: Int64
    /// Grows with every change: `?after=VERSION&wait=30s` waits for the next one.
    package var version: UInt64
    package var createdAt: String
    package var startedAt: String?
    package var endedAt: String?

    package init(id: UInt64, job: UInt64, allocation: UInt64, command: [String], state: String, exitCode: Int32?, stdout: String, stderr: String,
                 truncated: Bool, stdoutBytes: Int64, stderrBytes: Int64, version: UInt64, createdAt: String, startedAt: String?, endedAt: String?) {
        self.stdoutBytes = stdoutBytes
        self.stderrBytes = stderrBytes
        self.id = id
        self.job = job
        self.allocation = allocation
        self.command = command
        self.state = state
        self.exitCode = exitCode
        self.stdout = stdout
        self.stderr = stderr
        self.truncated = truncated
        self.version = version
        self.createdAt = createdAt
        self.startedAt = startedAt
        self.endedAt = endedAt
    }
}

package struct StepsWire: Codable, Sendable, Equatable {
    package var items: [StepWire]

    package init(items: [StepWire]) { self.items = items }
}

/// A step for the agent to run in an allocation it holds.
package struct StepAssignmentWire: Codable, Sendable, Equatable {
    package var id: UInt64
    package var command: [String]
    package var env: [String: String]

    package init(id: UInt64, command: [String], env: [String: String]) {
        self.id = id
        self.command = command
        self.env = env
    }
}

/// What the agent says of a step: output from byte offsets (a retried report appends nothing
/// twice), that it started, and its exit code once it exited.
package struct StepReportBody: Codable, Sendable, Equatable {
    package var epoch: UInt64
    package var started: Bool
    package var stdoutOffset: Int64
    package var stdout: String
    package var stderrOffset: Int64
    package var stderr: String
    package var exitCode: Int32?

    package enum CodingKeys: String, CodingKey, CaseIterable { case epoch, started, stdoutOffset, stdout, stderrOffset, stderr, exitCode }

    package init(from decoder: any Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        epoch = try c.decode(UInt64.self, forKey: .epoch)
        started = try c.decode(Bool.self, forKey: .started)
        stdoutOffset = try c.decode(Int64.self, forKey: .stdoutOffset)
        stdout = try c.decode(String.self, forKey: .stdout)
        stderrOffset = try c.decode(Int64.self, forKey: .stderrOffset)
        stderr = try c.decode(String.self, forKey: .stderr)
        exitCode = try c.decodeIfPresent(Int32.self, forKey: .exitCode)
    }

    package init(epoch: UInt64, started: Bool, stdoutOffset: Int64, stdout: String, stderrOffset: Int64, stderr: String, exitCode: Int32?) {
        self.epoch = epoch
        self.started = started
        self.stdoutOffset = stdoutOffset
        self.stdout = stdout
        self.stderrOffset = stderrOffset
        self.stderr = stderr
        self.exitCode = exitCode
    }
}
