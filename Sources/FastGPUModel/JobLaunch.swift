/// What a job runs: the part of a job that the scheduler never reads and the agent needs.
public struct JobLaunch: Hashable, Sendable, Codable {
    /// argv; the first element is the program.
    public var command: [String]
    public var environment: [String: String]
    /// How many allocations a task may use up before a lost task fails the job (≥ 1).
    public var maxAttempts: Int
    /// Secret environment values, sealed (AES-GCM, base64) by the control plane's `SecretBox`
    /// for this job: never returned by the API, opened only for the agent that runs an allocation.
    public var sealedSecrets: [String: String]

    public init(command: [String], environment: [String: String] = [:], maxAttempts: Int = 3, sealedSecrets: [String: String] = [:]) {
        self.command = command
        self.environment = environment
        self.maxAttempts = maxAttempts
        self.sealedSecrets = sealedSecrets
    }

    enum CodingKeys: String, CodingKey { case command, environment, maxAttempts, sealedSecrets }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        command = try c.decode([String].self, forKey: .command)
        environment = try c.decode([String: String].self, forKey: .environment)
        maxAttempts = try c.decode(Int.self, forKey: .maxAttempts)
        // Rows written before secrets existed have none.
        sealedSecrets = try c.decodeIfPresent([String: String].self, forKey: .sealedSecrets) ?? [:]
    }
}

/// Which of a workload's output streams a log line came from.
public enum LogStream: String, Hashable, Sendable, Codable {
    case stdout
    case stderr
}
