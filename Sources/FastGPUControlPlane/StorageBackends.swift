public import FastGPUModel
public import FastGPUStorage
public import FastGPUStore
import Foundation

/// A storage backend as callers see it: never its credentials.
public struct StorageBackendView: Hashable, Sendable {
    public var name: String
    public var kind: String
    /// Empty for `local` (it is the server itself, at `/s3`).
    public var endpoint: String
    public var region: String
    public var bucket: String
    public var addressing: String
    public var isDefault: Bool
    public var createdAt: Timestamp
    public var createdBy: String
}

/// What a caller gets to reach one object: the backend (with its opened credentials, for the
/// server's own use only: never returned) and the object's full key in the bucket.
public struct ResolvedObject: Sendable {
    public var backend: String
    public var kind: String
    /// Nil for `local`: its endpoint is the server as the caller reached it.
    public var endpoint: S3Endpoint?
    public var bucket: String
    public var region: String
    public var addressing: S3Endpoint.Addressing
    public var credentials: S3Credentials
    /// The key in the bucket: the project's prefix, then what the caller named.
    public var key: String
    /// `PROJECT/`, or empty for a cluster admin who named no project.
    public var prefix: String
}

/// Every storage backend, with its credentials sealed; every rule about names, endpoints and
/// the project prefix that walls tenants apart.
///
/// Invariant: at most one backend is the default; a backend's credentials are only ever held
/// sealed (`storage:NAME`) here and in the store, opened only to sign a request.
struct StorageBackends {
    static let localName = "local"
    /// The bucket of the `local` backend (a directory under the server's data directory).
    static let localBucket = LocalObjectStore.bucket
    static let maxBackends = 100

    let box: SecretBox
    private(set) var records: [String: StorageBackendRecord] = [:]

    init(box: SecretBox, stored: [StorageBackendRecord]) {
        self.box = box
        for record in stored { records[record.name] = record }
    }

    var views: [StorageBackendView] { records.values.sorted { $0.name < $1.name }.map(Self.view) }

    struct NewBackend {
        var name: String
        var endpoint: String
        var region: String
        var bucket: String
        var addressing: String
        var credentials: S3Credentials
        var isDefault: Bool
    }

    /// Checks and seals a new S3 backend (or replaces one of the same name); returns the
    /// records to store (the old default loses the mark when this one takes it).
    mutating func add(_ backend: NewBackend, by subject: String, now: Timestamp) throws(ControlPlaneError) -> [StorageBackendRecord] {
        guard Self.isName(backend.name) else { throw .invalid("a backend's name is 1 to 63 lower-case letters, digits or '-', starting with a letter") }
        guard backend.name != Self.localName else { throw .invalid("'local' is the server's own backend; choose another name") }
        guard records.count < Self.maxBackends || records[backend.name] != nil else { throw .invalid("a cluster has at most \(Self.maxBackends) storage backends") }
        guard let addressing = S3Endpoint.Addressing(rawValue: backend.addressing) else { throw .invalid("addressing is path or virtual-host") }
        do {
            _ = try S3Endpoint(url: backend.endpoint, region: backend.region, bucket: backend.bucket, addressing: addressing)
        } catch {
            throw .invalid(error.description)
        }
        let credentials = backend.credentials
        guard (1...128).contains(credentials.accessKeyID.utf8.count), credentials.accessKeyID.allSatisfy({ $0.isASCII && !$0.isWhitespace }),
              (1...256).contains(credentials.secretAccessKey.utf8.count), (credentials.sessionToken?.utf8.count ?? 0) <= 4096
        else { throw .invalid("credentials are an accessKeyID (1 to 128 characters), a secretAccessKey (1 to 256) and an optional sessionToken") }
        return try put(StorageBackendRecord(name: backend.name, kind: "s3", endpoint: backend.endpoint, region: backend.region, bucket: backend.bucket,
                                            addressing: addressing.rawValue, sealedCredentials: seal(credentials, for: backend.name),
                                            isDefault: backend.isDefault, createdAt: now, createdBy: subject))
    }

    /// The `local` backend, made with fresh random credentials on the first start of a server
    /// that serves it; nil when it exists already.
    mutating func ensureLocal(now: Timestamp) throws(ControlPlaneError) -> [StorageBackendRecord]? {
        guard records[Self.localName] == nil else { return nil }
        var random = SystemRandomNumberGenerator()
        func token(_ count: Int, _ alphabet: [Character]) -> String { String((0..<count).map { _ in alphabet.randomElement(using: &random)! }) }
        let upper = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
        let any = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
        let credentials = S3Credentials(accessKeyID: "FGPU" + token(16, upper), secretAccessKey: token(40, any))
        return try put(StorageBackendRecord(name: Self.localName, kind: "local", endpoint: "", region: "local", bucket: Self.localBucket,
                                            addressing: S3Endpoint.Addressing.path.rawValue, sealedCredentials: seal(credentials, for: Self.localName),
                                            isDefault: !records.values.contains { $0.isDefault }, createdAt: now, createdBy: "fastgpu"))
    }

    mutating func remove(_ name: String) throws(ControlPlaneError) {
        guard records.removeValue(forKey: name) != nil else { throw .notFound("storage backend \(name) not found") }
    }

    /// The backend `name` (or the default), the caller's object key under `prefix`, and the
    /// credentials to sign with.
    func resolve(backend name: String?, prefix: String, key: String) throws(ControlPlaneError) -> ResolvedObject {
        let record: StorageBackendRecord
        if let name {
            guard let found = records[name] else { throw .notFound("storage backend \(name) not found") }
            record = found
        } else {
            guard let found = records.values.first(where: \.isDefault) else { throw .invalid("no storage backend is the default; name one") }
            record = found
        }
        try Self.checkRelativeKey(key)
        let fullKey = prefix + key
        do { try S3Client.checkKey(fullKey) } catch { throw .invalid(error.description) }
        return try object(in: record, key: fullKey, prefix: prefix)
    }

    /// The connection to a key resolved (and checked) at submission: a job's input or output.
    /// Nil when its backend has been removed since.
    func connection(backend name: String, key: String) -> ResolvedObject? {
        records[name].flatMap { try? object(in: $0, key: key, prefix: "") }
    }

    private func object(in record: StorageBackendRecord, key: String, prefix: String) throws(ControlPlaneError) -> ResolvedObject {
        let addressing = S3Endpoint.Addressing(rawValue: record.addressing) ?? .path
        var endpoint: S3Endpoint?
        if record.kind != "local" {
            // Checked when the backend was added; a stored one that no longer parses is not the local one.
            do { endpoint = try S3Endpoint(url: record.endpoint, region: record.region, bucket: record.bucket, addressing: addressing) } catch {
                throw .unavailable("storage backend \(record.name)'s endpoint does not parse: \(error.description)")
            }
        }
        return ResolvedObject(backend: record.name, kind: record.kind, endpoint: endpoint, bucket: record.bucket, region: record.region,
                              addressing: addressing, credentials: try open(record), key: key, prefix: prefix)
    }

    /// The `local` backend's credentials: what its request checks verify against.
    func localCredentials() -> S3Credentials? {
        records[Self.localName].flatMap { try? open($0) }
    }

    /// A key as a caller names it under their prefix: S3 treats keys as literal strings, but
    /// some S3-compatible servers normalise `..` and `//` in paths, which would step out of
    /// the prefix; such keys are refused everywhere.
    static func checkRelativeKey(_ key: String) throws(ControlPlaneError) {
        guard !key.isEmpty, key.utf8.count <= 900 else { throw .invalid("a key is 1 to 900 bytes") }
        guard !key.hasPrefix("/"), !key.contains("//"),
              !key.split(separator: "/", omittingEmptySubsequences: false).contains(where: { $0 == "." || $0 == ".." }),
              !key.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7f || $0 == "\\" })
        else { throw .invalid("a key does not start with '/', and holds no '//', '.' or '..' segment, backslash or control character") }
    }

    private mutating func put(_ record: StorageBackendRecord) throws(ControlPlaneError) -> [StorageBackendRecord] {
        var changed = [record]
        if record.isDefault {
            for (name, var other) in records where other.isDefault && name != record.name {
                other.isDefault = false
                records[name] = other
                changed.append(other)
            }
        }
        records[record.name] = record
        return changed
    }

    private func seal(_ credentials: S3Credentials, for name: String) throws(ControlPlaneError) -> String {
        let fields = [credentials.accessKeyID, credentials.secretAccessKey, credentials.sessionToken ?? ""]
        do {
            let data = try JSONEncoder().encode(fields)
            return try box.seal(String(decoding: data, as: UTF8.self), for: "storage:\(name)")
        } catch {
            throw .unavailable("the credentials could not be sealed")
        }
    }

    private func open(_ record: StorageBackendRecord) throws(ControlPlaneError) -> S3Credentials {
        do {
            let text = try box.open(record.sealedCredentials, for: "storage:\(record.name)")
            let fields = try JSONDecoder().decode([String].self, from: Data(text.utf8))
            guard fields.count == 3 else { throw SecretError("") }
            return S3Credentials(accessKeyID: fields[0], secretAccessKey: fields[1], sessionToken: fields[2].isEmpty ? nil : fields[2])
        } catch {
            throw .unavailable("the credentials of storage backend \(record.name) do not open with this server's key (was secret-key replaced?)")
        }
    }

    static func view(_ record: StorageBackendRecord) -> StorageBackendView {
        StorageBackendView(name: record.name, kind: record.kind, endpoint: record.endpoint, region: record.region, bucket: record.bucket,
                           addressing: record.addressing, isDefault: record.isDefault, createdAt: record.createdAt, createdBy: record.createdBy)
    }

    static func isName(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard (1...63).contains(bytes.count), (0x61...0x7a).contains(bytes[0]) else { return false }
        return bytes.allSatisfy { (0x61...0x7a).contains($0) || (0x30...0x39).contains($0) || $0 == 0x2d }
    }
}
