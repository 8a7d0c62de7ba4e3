/// `PUT /v1/storage/backends/{name}`: an S3-compatible bucket and the keys to it. The keys are
/// sealed at once and never shown again.
package struct StorageBackendBody: Codable, Sendable, Equatable {
    package var endpoint: String
    package var region: String
    package var bucket: String
    package var addressing: String?
    package var accessKeyID: String
    package var secretAccessKey: String
    package var sessionToken: String?
    package var isDefault: Bool?

    package enum CodingKeys: String, CodingKey, CaseIterable {
        case endpoint, region, bucket, addressing, accessKeyID, secretAccessKey, sessionToken
        case isDefault = "default"
    }

    package init(from decoder: any Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        endpoint = try c.decode(String.self, forKey: .endpoint)
        region = try c.decodeIfPresent(String.self, forKey: .region) ?? "us-east-1"
        bucket = try c.decode(String.self, forKey: .bucket)
        addressing = try c.decodeIfPresent(String.self, forKey: .addressing)
        accessKeyID = try c.decode(String.self, forKey: .accessKeyID)
        secretAccessKey = try c.decode(String.self, forKey: .secretAccessKey)
        sessionToken = try c.decodeIfPresent(String.self, forKey: .sessionToken)
        isDefault = try c.decodeIfPresent(Bool.self, forKey: .isDefault)
    }

    package init(endpoint: String, region: String, bucket: String, addressing: String?, accessKeyID: String, secretAccessKey: String,
                 sessionToken: String? = nil, isDefault: Bool? = nil) {
        self.endpoint = endpoint
        self.region = region
        self.bucket = bucket
        self.addressing = addressing
        self.accessKeyID = accessKeyID
        self.secretAccessKey = secretAccessKey
        self.sessionToken = sessionToken
        self.isDefault = isDefault
    }
}

/// A storage backend as the API shows it: never its credentials.
package struct StorageBackendWire: Codable, Sendable, Equatable {
    package var name: String
    package var kind: String
    package var endpoint: String
    package var region: String
    package var bucket: String
    package var addressing: String
    package var isDefault: Bool
    package var createdAt: String
    package var createdBy: String

    package enum CodingKeys: String, CodingKey {
        case name, kind, endpoint, region, bucket, addressing, createdAt, createdBy
        case isDefault = "default"
    }

    package init(name: String, kind: String, endpoint: String, region: String, bucket: String, addressing: String, isDefault: Bool,
                 createdAt: String, createdBy: String) {
        self.name = name
        self.kind = kind
        self.endpoint = endpoint
        self.region = region
        self.bucket = bucket
        self.addressing = addressing
        self.isDefault = isDefault
        self.createdAt = createdAt
        self.createdBy = createdBy
    }
}

package struct StorageBackendListWire: Codable, Sendable, Equatable {
    package var items: [StorageBackendWire]

    package init(items: [StorageBackendWire]) { self.items = items }
}

/// `POST /v1/storage/presign`: a URL for one object of a project's prefix.
package struct PresignBody: Codable, Sendable, Equatable {
    package var project: String?
    package var backend: String?
    package var key: String
    package var method: String
    package var expiresSeconds: Int

    package enum CodingKeys: String, CodingKey, CaseIterable { case project, backend, key, method, expiresSeconds }

    package init(from decoder: any Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        project = try c.decodeIfPresent(String.self, forKey: .project)
        backend = try c.decodeIfPresent(String.self, forKey: .backend)
        key = try c.decode(String.self, forKey: .key)
        method = try c.decodeIfPresent(String.self, forKey: .method) ?? "GET"
        expiresSeconds = try c.decodeIfPresent(Int.self, forKey: .expiresSeconds) ?? 900
    }

    package init(project: String?, backend: String?, key: String, method: String, expiresSeconds: Int) {
        self.project = project
        self.backend = backend
        self.key = key
        self.method = method
        self.expiresSeconds = expiresSeconds
    }
}

/// A presigned URL: whoever holds it may do `method` on the object until `expiresAt`.
package struct PresignWire: Codable, Sendable, Equatable {
    package var url: String
    package var method: String
    package var backend: String
    /// The object's key in the bucket (the project's prefix, then the key asked for).
    package var bucketKey: String
    /// `s3://BACKEND/KEY` as the project names it (without its prefix).
    package var uri: String
    package var expiresAt: String

    package init(url: String, method: String, backend: String, bucketKey: String, uri: String, expiresAt: String) {
        self.url = url
        self.method = method
        self.backend = backend
        self.bucketKey = bucketKey
        self.uri = uri
        self.expiresAt = expiresAt
    }
}

/// One output of a job submission: a directory uploaded after the process exits.
package struct OutputBody: Codable, Sendable, Equatable {
    package var path: String
    /// `s3://BACKEND/PREFIX/`; `{job_id}` becomes the job's id.
    package var to: String
    /// always (the default), success or failure: against the task's exit.
    package var when: String?

    package enum CodingKeys: String, CodingKey, CaseIterable { case path, to, when }

    package init(from decoder: any Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        path = try c.decode(String.self, forKey: .path)
        to = try c.decode(String.self, forKey: .to)
        when = try c.decodeIfPresent(String.self, forKey: .when)
    }

    package init(path: String, to: String, when: String? = nil) {
        self.path = path
        self.to = to
        self.when = when
    }
}

/// `GET /v1/jobs/{id}/outputs`: where a job's outputs went and what is there.
package struct JobOutputsWire: Codable, Sendable, Equatable {
    package var job: UInt64
    package var state: String
    package var outputs: [JobOutputWire]

    package init(job: UInt64, state: String, outputs: [JobOutputWire]) {
        self.job = job
        self.state = state
        self.outputs = outputs
    }
}

package struct JobOutputWire: Codable, Sendable, Equatable {
    package var path: String
    package var uri: String
    package var when: String
    /// Every task's manifest is in the bucket (it is written last: the outputs are whole).
    package var complete: Bool
    package var files: [OutputFileWire]

    package init(path: String, uri: String, when: String, complete: Bool, files: [OutputFileWire]) {
        self.path = path
        self.uri = uri
        self.when = when
        self.complete = complete
        self.files = files
    }
}

/// A file of a manifest: its path under the output's URI, size, SHA-256 and a URL to fetch it (15 minutes).
package struct OutputFileWire: Codable, Sendable, Equatable {
    package var path: String
    package var size: Int64
    package var sha256: String
    package var url: String

    package init(path: String, size: Int64, sha256: String, url: String) {
        self.path = path
        self.size = size
        self.sha256 = sha256
        self.url = url
    }
}

/// `manifest.json`, written by the agent after every file of an output: the commit marker.
package struct OutputManifestWire: Codable, Sendable, Equatable {
    package struct File: Codable, Sendable, Equatable {
        package var path: String
        package var size: Int64
        package var sha256: String

        package init(path: String, size: Int64, sha256: String) {
            self.path = path
            self.size = size
            self.sha256 = sha256
        }
    }

    package var job: UInt64
    package var allocation: UInt64
    package var files: [File]

    package init(job: UInt64, allocation: UInt64, files: [File]) {
        self.job = job
        self.allocation = allocation
        self.files = files
    }
}

/// One input of a job submission: an object (or, ending in `/`, every object under a prefix)
/// downloaded into the job's working directory before its command starts.
package struct InputBody: Codable, Sendable, Equatable {
    package var from: String
    package var path: String

    package enum CodingKeys: String, CodingKey, CaseIterable { case from, path }

    package init(from decoder: any Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        from = try c.decode(String.self, forKey: .from)
        path = try c.decode(String.self, forKey: .path)
    }

    package init(from: String, path: String) {
        self.from = from
        self.path = path
    }
}

/// An input as its agent fetches it (credentials for that agent only).
package struct InputDownloadWire: Codable, Sendable, Equatable {
    package var path: String
    package var key: String
    package var uri: String
    package var backend: BackendAccessWire

    package init(path: String, key: String, uri: String, backend: BackendAccessWire) {
        self.path = path
        self.key = key
        self.uri = uri
        self.backend = backend
    }
}
