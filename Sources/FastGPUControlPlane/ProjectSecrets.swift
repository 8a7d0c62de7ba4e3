public import FastGPUModel
public import FastGPUStore
import Logging

/// A secret of a project's store as its members see it: never its value.
public struct SecretView: Hashable, Sendable {
    public var name: String
    public var updatedAt: Timestamp
    public var updatedBy: String
}

/// Every project's secret store, sealed, and the sealing of jobs' secrets: what the control
/// plane keeps in memory of secrets, and every rule about them. The actor authorises, and writes
/// through to the store what this returns.
struct ProjectSecrets {
    let box: SecretBox
    private var records: [ProjectID: [String: SecretRecord]] = [:]

    /// A project holds at most this many secrets, each at most `maxValueBytes`.
    static let maxPerProject = 1000
    static let maxValueBytes = 64 * 1024

    init(box: SecretBox, stored: [SecretRecord]) {
        self.box = box
        for secret in stored { records[secret.projectID, default: [:]][secret.name] = secret }
    }

    func names(of project: ProjectID) -> [SecretView] {
        (records[project] ?? [:]).values.sorted { $0.name < $1.name }.map(Self.view)
    }

    /// Seals and keeps `value` as the project's secret `name`; returns the record to store.
    mutating func set(_ name: String, to value: String, in project: ProjectID, by subject: String, now: Timestamp) throws -> SecretRecord {
        guard Self.isName(name) else { throw ControlPlaneError.invalid("a secret's name is 1 to 128 letters, digits, '-', '_' or '.'") }
        guard value.utf8.count <= Self.maxValueBytes else { throw ControlPlaneError.invalid("a secret is at most 64 KiB") }
        guard (records[project]?.count ?? 0) < Self.maxPerProject || records[project]?[name] != nil else {
            throw ControlPlaneError.invalid("a project has at most \(Self.maxPerProject) secrets")
        }
        let record = SecretRecord(projectID: project, name: name, sealed: try box.seal(value, for: Self.context(project: project, name: name)),
                                  updatedAt: now, updatedBy: subject)
        records[project, default: [:]][name] = record
        return record
    }

    mutating func remove(_ name: String, from project: ProjectID) throws {
        guard Self.isName(name) else { throw ControlPlaneError.invalid("a secret's name is 1 to 128 letters, digits, '-', '_' or '.'") }
        guard records[project]?.removeValue(forKey: name) != nil else { throw ControlPlaneError.notFound("secret \(name) not found") }
    }

    /// The job's secrets sealed for it: inline values, and values of the project's store named
    /// by `secretRefs` (read now: a later change to the store does not reach a job already
    /// submitted, as a retried task must run with what its first attempt had).
    func seal(_ submission: JobSubmission, job: JobID, project: ProjectID) throws -> [String: String] {
        var sealed: [String: String] = [:]
        for (name, value) in submission.secrets {
            guard submission.launch.environment[name] == nil else { throw ControlPlaneError.invalid("\(name) is both in env and in secrets") }
            sealed[name] = try box.seal(value, for: Self.context(job: job, name: name))
        }
        for (name, secretName) in submission.secretRefs {
            guard submission.launch.environment[name] == nil, submission.secrets[name] == nil else {
                throw ControlPlaneError.invalid("\(name) is given twice (env, secrets, secretRefs)")
            }
            guard let stored = records[project]?[secretName] else { throw ControlPlaneError.invalid("the project has no secret named \(secretName)") }
            let value = try box.open(stored.sealed, for: Self.context(project: project, name: secretName))
            sealed[name] = try box.seal(value, for: Self.context(job: job, name: name))
        }
        return sealed
    }

    /// The launch as its agent gets it: secrets opened into the environment. A secret that does
    /// not open (the key file was replaced) is left out and logged by name, never by value.
    func opened(_ launch: JobLaunch, job: JobID, logger: Logger) -> JobLaunch {
        guard !launch.sealedSecrets.isEmpty else { return launch }
        var opened = launch
        opened.sealedSecrets = [:]
        for (name, sealed) in launch.sealedSecrets {
            do {
                opened.environment[name] = try box.open(sealed, for: Self.context(job: job, name: name))
            } catch {
                logger.error("a secret of a job does not open; the job runs without it", metadata: ["job": "\(job.rawValue)", "name": "\(name)"])
            }
        }
        return opened
    }

    static func view(_ record: SecretRecord) -> SecretView {
        SecretView(name: record.name, updatedAt: record.updatedAt, updatedBy: record.updatedBy)
    }

    static func isName(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= 128
            && name.utf8.allSatisfy { ($0 >= 0x41 && $0 <= 0x5a) || ($0 >= 0x61 && $0 <= 0x7a) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2d || $0 == 0x5f || $0 == 0x2e }
    }

    static func context(job: JobID, name: String) -> String { "job:\(job.rawValue):\(name)" }
    static func context(project: ProjectID, name: String) -> String { "project:\(project.rawValue):\(name)" }
}
