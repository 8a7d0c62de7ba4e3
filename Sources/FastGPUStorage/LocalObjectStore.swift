import Crypto
public import Foundation
public import NIOCore

/// The objects of the `local` backend, as files under the server's data directory.
///
/// Keys are S3 keys (any UTF-8, `..` included), so a key never becomes a path: each object is
/// stored under the SHA-256 of its key, with a small JSON file beside it that holds the key,
/// size and ETag (what listings read). A write goes to a temporary file first and is renamed
/// into place, so a reader sees the old object or the new one, never half of one. Listing reads
/// every object's JSON: fine for the embedded default (thousands of objects), not a replacement
/// for a real object store.
public struct LocalObjectStore: Sendable {
    public struct Meta: Codable, Sendable, Hashable {
        public var key: String
        public var size: Int64
        public var etag: String
        public var contentType: String?
        public var lastModified: Double
    }

    public let root: String
    /// The one bucket of the `local` backend.
    public static let bucket = "fastgpu-local"
    public static let maxObjectBytes: Int64 = 5 << 30

    public init(root: String) { self.root = root }

    func bucketDirectory(_ bucket: String) -> String { root + "/" + bucket }
    func objectPath(_ bucket: String, _ key: String) -> String {
        bucketDirectory(bucket) + "/objects/" + SigV4Signer.sha256Hex(Array(key.utf8))
    }

    public func createBucket(_ bucket: String) throws {
        for sub in ["objects", "uploads", "tmp"] {
            try FileManager.default.createDirectory(atPath: bucketDirectory(bucket) + "/" + sub, withIntermediateDirectories: true)
        }
    }

    /// Removes multipart uploads never completed nor aborted, and temporary files a crash left,
    /// once older than `age` (the server does it at start, as S3's lifecycle rule for incomplete
    /// uploads would). Returns what it removed.
    @discardableResult
    public func sweepAbandoned(in bucket: String, olderThan age: TimeInterval = 24 * 3600, now: Date = Date()) -> [String] {
        let files = FileManager.default
        var removed: [String] = []
        for sub in ["uploads", "tmp"] {
            let directory = bucketDirectory(bucket) + "/" + sub
            for name in ((try? files.contentsOfDirectory(atPath: directory)) ?? []).sorted() {
                let path = directory + "/" + name
                guard let modified = (try? files.attributesOfItem(atPath: path))?[.modificationDate] as? Date,
                      now.timeIntervalSince(modified) > age, (try? files.removeItem(atPath: path)) != nil else { continue }
                removed.append(sub + "/" + name)
            }
        }
        return removed
    }

    public func bucketExists(_ bucket: String) -> Bool {
        var isDirectory: ObjCBool = false
        return FileManager.default.fileExists(atPath: bucketDirectory(bucket) + "/objects", isDirectory: &isDirectory) && isDirectory.boolValue
    }

    /// Writes `body` to a temporary file of the bucket; returns its path, size, MD5 and SHA-256.
    /// Refused (and removed) past `maxBytes`, or when `expectedSHA256` (the signed payload
    /// hash) is not the body's.
    func receive<Body: AsyncSequence>(_ body: Body, bucket: String, maxBytes: Int64, expectedSHA256: String?) async throws -> (path: String, size: Int64, md5: String)
    where Body.Element == ByteBuffer {
        let path = bucketDirectory(bucket) + "/tmp/" + UUID().uuidString
        guard FileManager.default.createFile(atPath: path, contents: nil), let out = FileHandle(forWritingAtPath: path) else {
            throw S3Error.service(status: 500, code: "InternalError", message: "cannot write to the local store")
        }
        var md5 = Insecure.MD5()
        var sha = SHA256()
        var size: Int64 = 0
        do {
            defer { try? out.close() }
            for try await chunk in body {
                size += Int64(chunk.readableBytes)
                guard size <= maxBytes else { throw S3Error.service(status: 400, code: "EntityTooLarge", message: "an object or part is at most 5 GiB") }
                try chunk.withUnsafeReadableBytes { bytes in
                    md5.update(bufferPointer: bytes)
                    sha.update(bufferPointer: bytes)
                    try out.write(contentsOf: Data(bytes))
                }
            }
            if let expectedSHA256, expectedSHA256 != SigV4Signer.unsignedPayload, SigV4Signer.hex(sha.finalize()) != expectedSHA256 {
                throw S3Error.service(status: 400, code: "XAmzContentSHA256Mismatch", message: "The provided 'x-amz-content-sha256' header does not match what was computed.")
            }
        } catch {
            try? FileManager.default.removeItem(atPath: path)
            throw error
        }
        return (path, size, SigV4Signer.hex(md5.finalize()))
    }

    public func putObject<Body: AsyncSequence>(bucket: String, key: String, body: Body, expectedSHA256: String?, contentType: String?) async throws -> String
    where Body.Element == ByteBuffer {
        let received = try await receive(body, bucket: bucket, maxBytes: Self.maxObjectBytes, expectedSHA256: expectedSHA256)
        let etag = "\"\(received.md5)\""
        try commit(bucket: bucket, key: key, dataAt: received.path,
                   meta: Meta(key: key, size: received.size, etag: etag, contentType: contentType, lastModified: Date().timeIntervalSince1970))
        return etag
    }

    /// Moves a received file into place as `key`, then its JSON: a listing never names an
    /// object whose bytes are not there.
    func commit(bucket: String, key: String, dataAt path: String, meta: Meta) throws {
        let target = objectPath(bucket, key)
        let metaTemp = bucketDirectory(bucket) + "/tmp/" + UUID().uuidString + ".json"
        try JSONEncoder().encode(meta).write(to: URL(fileURLWithPath: metaTemp))
        guard rename(path, target) == 0, rename(metaTemp, target + ".json") == 0 else {
            try? FileManager.default.removeItem(atPath: metaTemp)
            throw S3Error.service(status: 500, code: "InternalError", message: "cannot store the object")
        }
    }

    /// The object's description and the path of its bytes, or nil.
    public func object(bucket: String, key: String) -> (meta: Meta, path: String)? {
        let path = objectPath(bucket, key)
        guard let data = FileManager.default.contents(atPath: path + ".json"),
              let meta = try? JSONDecoder().decode(Meta.self, from: data), meta.key == key,
              FileManager.default.fileExists(atPath: path) else { return nil }
        return (meta, path)
    }

    public func deleteObject(bucket: String, key: String) {
        let path = objectPath(bucket, key)
        try? FileManager.default.removeItem(atPath: path + ".json")
        try? FileManager.default.removeItem(atPath: path)
    }

    /// Objects under `prefix` after `startAfter`, in byte order of their keys, at most `maxKeys`;
    /// and whether more follow.
    public func list(bucket: String, prefix: String, startAfter: String?, maxKeys: Int) -> (objects: [Meta], truncated: Bool) {
        let directory = bucketDirectory(bucket) + "/objects"
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        var found: [Meta] = []
        for name in names where name.hasSuffix(".json") {
            guard let data = FileManager.default.contents(atPath: directory + "/" + name),
                  let meta = try? JSONDecoder().decode(Meta.self, from: data),
                  meta.key.utf8.starts(with: prefix.utf8) else { continue }
            if let startAfter, !startAfter.utf8.lexicographicallyPrecedes(meta.key.utf8) { continue }
            found.append(meta)
        }
        found.sort { $0.key.utf8.lexicographicallyPrecedes($1.key.utf8) }
        return (Array(found.prefix(maxKeys)), found.count > maxKeys)
    }

    // MARK: Multipart

    public func createUpload(bucket: String, key: String, contentType: String?) throws -> String {
        let id = UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
        let directory = bucketDirectory(bucket) + "/uploads/" + id
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try JSONEncoder().encode(Meta(key: key, size: 0, etag: "", contentType: contentType, lastModified: Date().timeIntervalSince1970))
            .write(to: URL(fileURLWithPath: directory + "/upload.json"))
        return id
    }

    func upload(bucket: String, id: String, key: String) throws -> (directory: String, meta: Meta) {
        guard id.utf8.count == 32, id.utf8.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }) else {
            throw S3Error.service(status: 404, code: "NoSuchUpload", message: "The specified upload does not exist.")
        }
        let directory = bucketDirectory(bucket) + "/uploads/" + id
        guard let data = FileManager.default.contents(atPath: directory + "/upload.json"),
              let meta = try? JSONDecoder().decode(Meta.self, from: data), meta.key == key else {
            throw S3Error.service(status: 404, code: "NoSuchUpload", message: "The specified upload does not exist.")
        }
        return (directory, meta)
    }

    public func putPart<Body: AsyncSequence>(bucket: String, key: String, uploadID: String, number: Int, body: Body, expectedSHA256: String?) async throws -> String
    where Body.Element == ByteBuffer {
        let (directory, _) = try upload(bucket: bucket, id: uploadID, key: key)
        guard (1...10_000).contains(number) else { throw S3Error.service(status: 400, code: "InvalidArgument", message: "Part number must be an integer between 1 and 10000, inclusive") }
        let received = try await receive(body, bucket: bucket, maxBytes: Self.maxObjectBytes, expectedSHA256: expectedSHA256)
        guard rename(received.path, directory + "/part-\(number)") == 0 else {
            throw S3Error.service(status: 404, code: "NoSuchUpload", message: "The specified upload does not exist.")
        }
        try Data(received.md5.utf8).write(to: URL(fileURLWithPath: directory + "/part-\(number).md5"))
        return "\"\(received.md5)\""
    }

    /// Joins the parts named (in ascending order, with the ETags their uploads returned) into
    /// the object; the ETag is S3's: the MD5 of the parts' MD5s, a dash and their count.
    public func complete(bucket: String, key: String, uploadID: String, parts: [(number: Int, etag: String)]) throws -> String {
        let (directory, meta) = try upload(bucket: bucket, id: uploadID, key: key)
        guard !parts.isEmpty, zip(parts, parts.dropFirst()).allSatisfy({ $0.number < $1.number }) else {
            throw S3Error.service(status: 400, code: "InvalidPartOrder", message: "The list of parts was not in ascending order.")
        }
        let joined = bucketDirectory(bucket) + "/tmp/" + UUID().uuidString
        guard FileManager.default.createFile(atPath: joined, contents: nil), let out = FileHandle(forWritingAtPath: joined) else {
            throw S3Error.service(status: 500, code: "InternalError", message: "cannot write to the local store")
        }
        var digests = Insecure.MD5()
        var size: Int64 = 0
        do {
            defer { try? out.close() }
            for part in parts {
                let path = directory + "/part-\(part.number)"
                guard let md5 = FileManager.default.contents(atPath: path + ".md5").map({ String(decoding: $0, as: UTF8.self) }),
                      "\"\(md5)\"" == part.etag || md5 == part.etag, let input = FileHandle(forReadingAtPath: path) else {
                    throw S3Error.service(status: 400, code: "InvalidPart", message: "One or more of the specified parts could not be found.")
                }
                defer { try? input.close() }
                while let chunk = try input.read(upToCount: 4 << 20), !chunk.isEmpty {
                    size += Int64(chunk.count)
                    try out.write(contentsOf: chunk)
                }
                digests.update(data: Self.bytes(fromHex: md5))
            }
        } catch {
            try? FileManager.default.removeItem(atPath: joined)
            throw error
        }
        let etag = "\"\(SigV4Signer.hex(digests.finalize()))-\(parts.count)\""
        try commit(bucket: bucket, key: key, dataAt: joined,
                   meta: Meta(key: key, size: size, etag: etag, contentType: meta.contentType, lastModified: Date().timeIntervalSince1970))
        try? FileManager.default.removeItem(atPath: directory)
        return etag
    }

    public func abort(bucket: String, key: String, uploadID: String) throws {
        let (directory, _) = try upload(bucket: bucket, id: uploadID, key: key)
        try? FileManager.default.removeItem(atPath: directory)
    }

    static func bytes(fromHex text: String) -> [UInt8] {
        var out: [UInt8] = []
        var high: UInt8?
        for byte in text.utf8 {
            let value: UInt8 = byte <= 0x39 ? byte &- 0x30 : (byte | 0x20) &- 0x61 &+ 10
            if let h = high { out.append(h << 4 | value); high = nil } else { high = value }
        }
        return out
    }
}
