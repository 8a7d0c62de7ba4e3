public import FastGPUModel
public import FastGPUStorage
import FastGPUStore

/// Storage backends and the project prefix: who may reach which object of which bucket.
///
/// Every key a project reaches through FastGPU lives under `PROJECT/` of the backend's bucket
/// (presigned URLs, job outputs and inputs alike), so one project cannot name another's
/// objects however it spells the key. A cluster admin may name any key.
extension ControlPlane {
    public func storageBackends(by principal: Principal) throws -> [StorageBackendView] {
        try requireUser(principal)
        return storage.views
    }

    public struct StorageBackendRequest: Sendable {
        public var name: String
        public var endpoint: String
        public var region: String
        public var bucket: String
        public var addressing: String
        public var credentials: S3Credentials
        public var isDefault: Bool

        public init(name: String, endpoint: String, region: String, bucket: String, addressing: String, credentials: S3Credentials, isDefault: Bool) {
            self.name = name
            self.endpoint = endpoint
            self.region = region
            self.bucket = bucket
            self.addressing = addressing
            self.credentials = credentials
            self.isDefault = isDefault
        }
    }

    /// Adds (or replaces) an S3 backend; cluster admins only.
    public func setStorageBackend(_ request: StorageBackendRequest, by principal: Principal) async throws -> StorageBackendView {
        try checkWritable()
        try requireClusterAdmin(principal)
        let records = try storage.add(
            StorageBackends.NewBackend(name: request.name, endpoint: request.endpoint, region: request.region, bucket: request.bucket,
                                       addressing: request.addressing, credentials: request.credentials, isDefault: request.isDefault),
            by: principal.subject, now: clock.now())
        for record in records { pending.direct.append(.saveStorageBackend(record)) }
        try await awaitDurable()
        return StorageBackends.view(records[0])
    }

    public func removeStorageBackend(_ name: String, by principal: Principal) async throws {
        try checkWritable()
        try requireClusterAdmin(principal)
        guard name != StorageBackends.localName else { throw ControlPlaneError.invalid("'local' is the server's own backend and cannot be removed") }
        try storage.remove(name)
        pending.direct.append(.removeStorageBackend(name: name))
        try await awaitDurable()
    }

    /// An input of a job as submitted, checked and resolved under the project's prefix.
    func inputSource(_ request: JobSubmission.InputRequest, projectName: String) throws(ControlPlaneError) -> InputSource {
        try checkWorkPath(request.path, what: "an input's path")
        guard request.from.hasPrefix("s3://") else { throw .invalid("an input comes from s3://BACKEND/KEY, not \(request.from.prefix(64))") }
        let rest = request.from.dropFirst(5)
        guard let slash = rest.firstIndex(of: "/"), slash != rest.startIndex, rest.index(after: slash) != rest.endIndex else {
            throw .invalid("an input comes from s3://BACKEND/KEY (or s3://BACKEND/PREFIX/ for every object under it)")
        }
        let backend = String(rest[..<slash])
        let relative = String(rest[rest.index(after: slash)...])
        let object = try storage.resolve(backend: backend, prefix: projectName + "/", key: relative)
        return InputSource(path: request.path, backend: backend, key: object.key, uri: request.from)
    }

    /// A service's inputs as given (URIs) resolved under its project's prefix.
    func resolvingInputs(of spec: ServiceSpec, projectName: String) throws(ControlPlaneError) -> ServiceSpec {
        guard let inputs = spec.inputs else { return spec }
        var resolved = spec
        resolved.inputs = try inputs.map { input throws(ControlPlaneError) in
            try inputSource(JobSubmission.InputRequest(from: input.uri, path: input.path), projectName: projectName)
        }
        return resolved
    }

    /// A path in the job's working directory (`/fastgpu/work` as a container sees it), never above it.
    func checkWorkPath(_ path: String, what: String) throws(ControlPlaneError) {
        guard !path.isEmpty, path.utf8.count <= 4096, !path.utf8.contains(0) else { throw .invalid("\(what) is 1 to 4096 bytes") }
        guard !path.split(separator: "/").contains(".."), !path.hasPrefix("/") || path.hasPrefix("/fastgpu/work") else {
            throw .invalid("\(what) is in the job's working directory (relative, or under /fastgpu/work in a container), without '..'")
        }
    }

    /// An output of a job as submitted, checked and resolved: `s3://BACKEND/PREFIX` with the
    /// job's id for `{job_id}`, under the project's prefix.
    func outputTarget(_ request: JobSubmission.OutputRequest, job: JobID, projectName: String) throws(ControlPlaneError) -> OutputTarget {
        try checkWorkPath(request.path, what: "an output's path")
        guard request.to.hasPrefix("s3://") else { throw .invalid("an output goes to s3://BACKEND/PREFIX/, not \(request.to.prefix(64))") }
        let rest = request.to.dropFirst(5)
        guard let slash = rest.firstIndex(of: "/"), slash != rest.startIndex else {
            throw .invalid("an output goes to s3://BACKEND/PREFIX/ (a backend, then a prefix)")
        }
        let backend = String(rest[..<slash])
        var relative = String(rest[rest.index(after: slash)...]).replacingOccurrences(of: "{job_id}", with: String(job.rawValue))
        if !relative.isEmpty && !relative.hasSuffix("/") { relative += "/" }
        guard !relative.isEmpty else { throw .invalid("an output's prefix must not be empty: s3://\(backend)/results/{job_id}/") }
        let object = try storage.resolve(backend: backend, prefix: projectName + "/", key: relative)
        return OutputTarget(path: request.path, backend: backend, keyPrefix: object.key, uri: "s3://\(backend)/\(relative)", when: request.when)
    }

    /// Makes the `local` backend on the first start of a server that serves it.
    public func ensureLocalStorage() async throws {
        guard let records = try storage.ensureLocal(now: clock.now()) else { return }
        for record in records { pending.direct.append(.saveStorageBackend(record)) }
        try await awaitDurable()
    }

    /// The `local` backend's credentials, which its request checks verify against.
    public func localStorageCredentials() -> S3Credentials? { storage.localCredentials() }

    /// The object `key` of `project` (under its prefix) on `backend`, if the caller may
    /// `write` (member) or read (viewer) it. A project the caller is not in is not found.
    /// A cluster admin who names no project reaches the key as it is.
    public func resolveObject(project projectName: String?, backend: String?, key: String, write: Bool,
                              by principal: Principal) throws -> ResolvedObject {
        try requireUser(principal)
        let project: ProjectRecord
        if let projectName {
            project = projects[try visibleProject(projectName, by: principal)]!   // visible: it exists
        } else if principal.clusterAdmin {
            return try storage.resolve(backend: backend, prefix: "", key: key)
        } else {
            let mine = projects.values.filter { role(of: principal, in: $0.id) != nil }
            guard mine.count == 1, let only = mine.first else { throw ControlPlaneError.invalid("name the project the object belongs to") }
            project = only
        }
        guard let role = role(of: principal, in: project.id), role >= (write ? .member : .viewer) else {
            throw ControlPlaneError.forbidden("a viewer may read the project's objects, not write them")
        }
        return try storage.resolve(backend: backend, prefix: project.name + "/", key: key)
    }
}
