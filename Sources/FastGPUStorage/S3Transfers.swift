import Crypto
import Foundation
public import NIOCore

/// What an upload or download moved: the object's size and the SHA-256 of its bytes (the
/// manifest of job outputs records both), and the backend's ETag.
public struct S3TransferResult: Sendable, Hashable {
    public var key: String
    public var size: Int64
    public var sha256: String
    public var etag: String
}

/// How an upload is cut: parts of `partSizeBytes` (16 MiB by default, larger when an object
/// would need more than 10,000), `parallelParts` sent at once, each tried `attemptsPerPart` times.
public struct S3TransferOptions: Sendable {
    public var partSizeBytes: Int = 16 << 20
    public var parallelParts: Int = 4
    public var attemptsPerPart: Int = 4
    /// Waits before the second, third… attempt of a part.
    public var retryBackoff: [Duration] = [.milliseconds(200), .milliseconds(800), .seconds(3)]

    public init() {}
}

extension S3Client {
    /// Uploads the file at `path` as `key`: one PUT when it fits in a part, else a multipart
    /// upload whose parts are read in order (so the file's SHA-256 comes for free), sent
    /// `parallelParts` at a time and retried one by one. A multipart upload that fails is
    /// aborted, so the backend keeps no orphaned parts.
    public func uploadFile(at path: String, key: String, contentType: String? = nil,
                           options: S3TransferOptions = S3TransferOptions()) async throws -> S3TransferResult {
        try Self.checkKey(key)
        guard let file = FileHandle(forReadingAtPath: path) else { throw S3Error.invalid("cannot read \(path)") }
        defer { try? file.close() }
        let size = Int64((try? FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber)?.int64Value ?? 0)
        let partSize = max(options.partSizeBytes, Int((size + Int64(Self.maxParts) - 1) / Int64(Self.maxParts)))
        var whole = SHA256()

        if size <= Int64(partSize) {
            let data = try file.readToEnd() ?? Data()
            whole.update(data: data)
            var buffer = ByteBuffer()
            buffer.writeBytes(data)
            let etag = try await withRetries(options) { () async throws(S3Error) -> String in
                try await putObject(key, body: buffer, contentType: contentType)
            }
            return S3TransferResult(key: key, size: Int64(data.count), sha256: SigV4Signer.hex(whole.finalize()), etag: etag)
        }

        let uploadID = try await createMultipartUpload(key, contentType: contentType)
        do {
            let parts = try await withThrowingTaskGroup(of: (Int, String).self) { group in
                var etags: [Int: String] = [:]
                var number = 0
                var inFlight = 0
                var total: Int64 = 0
                while true {
                    let data = try file.read(upToCount: partSize) ?? Data()
                    if data.isEmpty { break }
                    total += Int64(data.count)
                    whole.update(data: data)
                    number += 1
                    var buffer = ByteBuffer()
                    buffer.writeBytes(data)
                    if inFlight == options.parallelParts, let (done, etag) = try await group.next() {
                        etags[done] = etag
                        inFlight -= 1
                    }
                    let partNumber = number
                    group.addTask {
                        let etag = try await withRetries(options) { () async throws(S3Error) -> String in
                            try await uploadPart(key, uploadID: uploadID, number: partNumber, body: buffer)
                        }
                        return (partNumber, etag)
                    }
                    inFlight += 1
                }
                for try await (done, etag) in group { etags[done] = etag }
                guard total == size else { throw S3Error.invalid("\(path) changed size while it was uploaded") }
                return etags.sorted { $0.key < $1.key }.map { (number: $0.key, etag: $0.value) }
            }
            let etag = try await withRetries(options) { () async throws(S3Error) -> String in
                try await completeMultipartUpload(key, uploadID: uploadID, parts: parts)
            }
            return S3TransferResult(key: key, size: size, sha256: SigV4Signer.hex(whole.finalize()), etag: etag)
        } catch {
            try? await abortMultipartUpload(key, uploadID: uploadID)
            throw error
        }
    }

    /// Downloads `key` to `path`, through `path.partial` renamed at the end so that a file at
    /// `path` is always whole. Refused past `maxBytes`.
    public func downloadFile(_ key: String, to path: String, maxBytes: Int64 = 1 << 40) async throws -> S3TransferResult {
        try Self.checkKey(key)
        let partial = path + ".partial"
        let files = FileManager.default
        try? files.removeItem(atPath: partial)
        guard files.createFile(atPath: partial, contents: nil) , let out = FileHandle(forWritingAtPath: partial) else {
            throw S3Error.invalid("cannot write \(path)")
        }
        var whole = SHA256()
        var size: Int64 = 0
        let etag: String
        do {
            defer { try? out.close() }
            etag = try await stream("GET", key: key) { chunk in
                size += Int64(chunk.readableBytes)
                guard size <= maxBytes else { throw S3Error.invalid("\(key) is larger than \(maxBytes) bytes") }
                chunk.withUnsafeReadableBytes { whole.update(bufferPointer: $0) }
                try chunk.withUnsafeReadableBytes { try out.write(contentsOf: Data($0)) }
            }
        } catch {
            try? files.removeItem(atPath: partial)
            throw error
        }
        try? files.removeItem(atPath: path)
        try files.moveItem(atPath: partial, toPath: path)
        return S3TransferResult(key: key, size: size, sha256: SigV4Signer.hex(whole.finalize()), etag: etag)
    }

    /// Sends `attempt` up to `attemptsPerPart` times while its error is worth retrying.
    func withRetries<T: Sendable>(_ options: S3TransferOptions, _ attempt: () async throws(S3Error) -> T) async throws -> T {
        var tries = 0
        while true {
            do {
                return try await attempt()
            } catch {
                tries += 1
                guard error.isRetryable, tries < options.attemptsPerPart else { throw error }
                try await Task.sleep(for: options.retryBackoff[min(tries - 1, options.retryBackoff.count - 1)])
            }
        }
    }
}
