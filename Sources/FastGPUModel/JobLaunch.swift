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
    /// The OCI image the command runs in (`pytorch/pytorch:2.3.0-cuda12.1-cudnn8-runtime`);
    /// nil: a host process, as its project's user.
    public var image: String?
    /// The workload's network; nil: the runner's default (`isolated` in a container, `host` for a
    /// host process).
    public var network: NetworkMode?
    /// Set for a service's replica: the agent gives it a port and probes its readiness.
    public var replica: ReplicaLaunch?
    /// Directories the agent uploads to a bucket once the process has exited.
    public var outputs: [OutputTarget] = []
    /// Objects the agent downloads into the working directory before the process starts.
    public var inputs: [InputSource] = []

    public init(command: [String], environment: [String: String] = [:], maxAttempts: Int = 3, sealedSecrets: [String: String] = [:],
                image: String? = nil, network: NetworkMode? = nil, replica: ReplicaLaunch? = nil) {
        self.replica = replica
        self.command = command
        self.environment = environment
        self.maxAttempts = maxAttempts
        self.sealedSecrets = sealedSecrets
        self.image = image
        self.network = network
    }

    enum CodingKeys: String, CodingKey { case command, environment, maxAttempts, sealedSecrets, image, network, replica, outputs, inputs }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        command = try c.decode([String].self, forKey: .command)
        environment = try c.decode([String: String].self, forKey: .environment)
        maxAttempts = try c.decode(Int.self, forKey: .maxAttempts)
        // Rows written before secrets existed have none.
        sealedSecrets = try c.decodeIfPresent([String: String].self, forKey: .sealedSecrets) ?? [:]
        // And before images and networks: host processes on the host's network.
        image = try c.decodeIfPresent(String.self, forKey: .image)
        network = try c.decodeIfPresent(NetworkMode.self, forKey: .network)
        replica = try c.decodeIfPresent(ReplicaLaunch.self, forKey: .replica)
        outputs = try c.decodeIfPresent([OutputTarget].self, forKey: .outputs) ?? []
        inputs = try c.decodeIfPresent([InputSource].self, forKey: .inputs) ?? []
    }
}

/// One input of a job: an object (or every object under a prefix) downloaded into the job's
/// working directory before its command starts. Resolved by the control plane at submission.
public struct InputSource: Hashable, Sendable, Codable {
    /// In the job's working directory: the file, or the directory the prefix's objects go in.
    public var path: String
    public var backend: String
    /// The key (or key prefix, ending in `/`) in the backend's bucket, under the project's prefix.
    public var key: String
    /// `s3://BACKEND/…` as the project names it.
    public var uri: String

    public init(path: String, backend: String, key: String, uri: String) {
        self.path = path
        self.backend = backend
        self.key = key
        self.uri = uri
    }

    /// A prefix (`s3://b/data/`): every object under it, their paths kept.
    public var isDirectory: Bool { key.hasSuffix("/") }
}

/// One output directory of a job and where it goes: checked and resolved by the control plane
/// at submission (the backend exists; the key is under the project's prefix, the job's id in it).
public struct OutputTarget: Hashable, Sendable, Codable {
    /// In the job's working directory, or absolute.
    public var path: String
    public var backend: String
    /// The key prefix in the backend's bucket, ending in `/`: the project's prefix, then what the job named.
    public var keyPrefix: String
    /// `s3://BACKEND/…/` as the project names it.
    public var uri: String
    public var when: OutputWhen

    public init(path: String, backend: String, keyPrefix: String, uri: String, when: OutputWhen) {
        self.path = path
        self.backend = backend
        self.keyPrefix = keyPrefix
        self.uri = uri
        self.when = when
    }
}

/// What a workload may reach on the network.
public enum NetworkMode: String, Hashable, Sendable, Codable, CaseIterable {
    /// Loopback only: no socket reaches the control plane, other jobs or the internet.
    case none
    /// Its own network namespace with outbound traffic through NAT; nothing reaches in (containers).
    case isolated
    /// The node's network: what multi-node NCCL needs.
    case host
}

/// Which of a workload's output streams a log line came from.
public enum LogStream: String, Hashable, Sendable, Codable {
    case stdout
    case stderr
}
