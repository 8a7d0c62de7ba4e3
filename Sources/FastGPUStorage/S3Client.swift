public import AsyncHTTPClient
import Crypto
import Foundation
public import NIOCore
import NIOHTTP1

/// Where a bucket lives and how to reach it: `http(s)://host[:port][/path]`, the region the signature
/// names, the bucket, and whether the bucket goes in the path (MinIO, Ceph, moto, the local
/// backend) or in the host name (AWS, Alibaba OSS).
public struct S3Endpoint: Sendable, Hashable {
    public enum Addressing: String, Sendable, Hashable, Codable, CaseIterable {
        case path
        case virtualHost = "virtual-host"
    }

    public var secure: Bool
    public var host: String
    public var port: Int?
    /// A path the backend is served under (`/s3` for the local backend), or empty.
    public var basePath: String
    public var region: String
    public var bucket: String
    public var addressing: Addressing

    /// Checks every part: a scheme of http or https, a host, an optional port, an optional plain
    /// path, no query or user; a bucket name as S3 allows (3–63 of `a-z 0-9 . -`); a region of letters, digits and `-`.
    public init(url: String, region: String, bucket: String, addressing: Addressing) throws(S3Error) {
        let secure: Bool
        var rest: Substring
        if url.hasPrefix("https://") { secure = true; rest = url.dropFirst(8) }
        else if url.hasPrefix("http://") { secure = false; rest = url.dropFirst(7) }
        else { throw .invalid("an endpoint is http://HOST[:PORT] or https://HOST[:PORT]") }
        while rest.hasSuffix("/") { rest = rest.dropLast() }
        var basePath: Substring = ""
        if let slash = rest.firstIndex(of: "/") {
            basePath = rest[slash...]
            rest = rest[..<slash]
        }
        guard basePath.utf8.count <= 256,
              basePath.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "/" || $0 == "-" || $0 == "_" || $0 == ".") }),
              !basePath.contains("//"), !basePath.split(separator: "/").contains(where: { $0 == "." || $0 == ".." })
        else { throw .invalid("an endpoint's path is letters, digits, '-', '_', '.' and '/' (no query, user or fragment)") }
        guard !rest.isEmpty, rest.utf8.count <= 253,
              rest.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "." || $0 == "-" || $0 == ":" || $0 == "[" || $0 == "]") })
        else { throw .invalid("an endpoint is http(s)://HOST[:PORT][/PATH], without a query or user") }
        var port: Int?
        var host = rest
        if let colon = rest.lastIndex(of: ":"), !rest.hasSuffix("]") {
            guard let value = Int(rest[rest.index(after: colon)...]), (1...65535).contains(value) else {
                throw .invalid("an endpoint's port is 1 to 65535")
            }
            port = value
            host = rest[..<colon]
        }
        guard !host.isEmpty else { throw .invalid("an endpoint names a host") }
        guard Self.isBucketName(bucket) else {
            throw .invalid("a bucket name is 3 to 63 lower-case letters, digits, '.' or '-', starting and ending with a letter or digit")
        }
        guard !region.isEmpty, region.utf8.count <= 64, region.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") }) else {
            throw .invalid("a region is 1 to 64 letters, digits or '-'")
        }
        self.secure = secure
        self.host = String(host)
        self.port = port
        self.basePath = String(basePath)
        self.region = region
        self.bucket = bucket
        self.addressing = addressing
    }

    public static func isBucketName(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard (3...63).contains(bytes.count) else { return false }
        func alnum(_ b: UInt8) -> Bool { (0x61...0x7a).contains(b) || (0x30...0x39).contains(b) }
        return alnum(bytes[0]) && alnum(bytes[bytes.count - 1]) && bytes.allSatisfy { alnum($0) || $0 == 0x2e || $0 == 0x2d }
    }

    /// `http://host:port` as given.
    public var url: String { "\(secure ? "https" : "http")://\(host)\(port.map { ":\($0)" } ?? "")\(basePath)" }

    /// The `Host` header's value for a request to this bucket.
    var requestHost: String {
        let name = addressing == .virtualHost ? "\(bucket).\(host)" : host
        guard let port, port != (secure ? 443 : 80) else { return name }
        return "\(name):\(port)"
    }

    /// The encoded path of `key` (or of the bucket itself when `key` is nil).
    func encodedPath(key: String?) -> String {
        let encodedKey = key.map { SigV4Signer.uriEncode($0, keepSlash: true) }
        switch addressing {
        case .path: return basePath + "/\(bucket)" + (encodedKey.map { "/\($0)" } ?? "")
        case .virtualHost: return basePath + "/" + (encodedKey ?? "")
        }
    }
}

/// What went wrong talking to a backend. Its words never hold a credential or a signature.
public enum S3Error: Error, Sendable, CustomStringConvertible, Equatable {
    /// The backend answered with an error: its HTTP status and S3 error code.
    case service(status: Int, code: String, message: String)
    /// The backend could not be reached, or the connection failed or timed out.
    case transport(String)
    /// The backend answered something this client cannot read.
    case malformedReply(String)
    /// The caller asked for something invalid (a key too long, an endpoint without a host).
    case invalid(String)

    public var description: String {
        switch self {
        case .service(let status, let code, let message): "the storage backend answered \(status) \(code)\(message.isEmpty ? "" : ": \(message)")"
        case .transport(let words): "the storage backend could not be reached: \(words)"
        case .malformedReply(let words): "the storage backend's reply could not be read: \(words)"
        case .invalid(let words): words
        }
    }

    /// Worth sending again: the network, a 5xx, throttling, or a request S3 timed out.
    public var isRetryable: Bool {
        switch self {
        case .transport: true
        case .service(let status, let code, _): status >= 500 || status == 429 || code == "SlowDown" || code == "RequestTimeout"
        case .malformedReply, .invalid: false
        }
    }
}

/// An object as a listing or HEAD shows it.
public struct S3ObjectInfo: Sendable, Hashable {
    public var key: String
    public var size: Int64
    public var etag: String
    public var lastModified: String?
}

/// One page of ListObjectsV2.
public struct S3ListPage: Sendable {
    public var objects: [S3ObjectInfo]
    /// Present when there is more to list.
    public var nextContinuationToken: String?
}

/// A client for one bucket of an S3-compatible backend: the operations FastGPU needs, signed
/// with Signature V4, on AsyncHTTPClient. Objects are moved in bounded pieces (a single PUT of
/// at most `partSizeBytes`, else a multipart upload of such parts, several at once) so memory
/// stays bounded by `partSizeBytes × parallelParts` whatever the object's size.
public struct S3Client: Sendable {
    public let endpoint: S3Endpoint
    let signer: SigV4Signer
    let http: HTTPClient
    let now: @Sendable () -> AmzTime
    /// One request's limit; a part of 16 MiB on a slow link still fits.
    public var requestTimeout: TimeAmount = .seconds(300)

    public static let maxKeyBytes = 1024
    /// S3's limits: at most 10,000 parts, each at least 5 MiB (but the last) and at most 5 GiB.
    public static let maxParts = 10_000

    public init(endpoint: S3Endpoint, credentials: S3Credentials, http: HTTPClient,
                now: @escaping @Sendable () -> AmzTime = AmzTime.now) {
        self.endpoint = endpoint
        self.signer = SigV4Signer(credentials: credentials, region: endpoint.region)
        self.http = http
        self.now = now
    }

    /// An HTTP client for backends: a connect that fails gives up after `connectTimeout` (the
    /// shared client waits 90 s, as browsers do), and enough connections per host for several
    /// parts at once. Its owner shuts it down.
    public static func makeHTTPClient(connectTimeout: TimeAmount = .seconds(5)) -> HTTPClient {
        var configuration = HTTPClient.Configuration()
        configuration.timeout = HTTPClient.Configuration.Timeout(connect: connectTimeout, read: .seconds(120))
        configuration.connectionPool = HTTPClient.Configuration.ConnectionPool(idleTimeout: .seconds(30), concurrentHTTP1ConnectionsPerHostSoftLimit: 16)
        configuration.decompression = .disabled
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }

    public static func checkKey(_ key: String) throws(S3Error) {
        guard !key.isEmpty, key.utf8.count <= maxKeyBytes else { throw .invalid("an object key is 1 to 1024 bytes of UTF-8") }
        guard !key.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7f }) else {
            throw .invalid("an object key holds no control characters")
        }
    }

    // MARK: Buckets

    /// Creates the bucket (tests, and the local backend's first start); one that exists and is
    /// ours already is no error.
    public func createBucket() async throws(S3Error) {
        do {
            _ = try await send("PUT", key: nil, body: ByteBuffer())
        } catch .service(_, "BucketAlreadyOwnedByYou", _) {
        }
    }

    // MARK: Objects

    /// Stores `body` as `key` with one PUT; returns the ETag.
    @discardableResult
    public func putObject(_ key: String, body: ByteBuffer, contentType: String? = nil, metadata: [String: String] = [:]) async throws(S3Error) -> String {
        try Self.checkKey(key)
        var headers: [(name: String, value: String)] = [("content-length", String(body.readableBytes))]
        if let contentType { headers.append(("content-type", contentType)) }
        for (name, value) in metadata.sorted(by: { $0.key < $1.key }) { headers.append(("x-amz-meta-\(name.lowercased())", value)) }
        let response = try await send("PUT", key: key, headers: headers, body: body)
        return response.headers.first(name: "etag") ?? ""
    }

    /// The whole object, refused when it is larger than `maxBytes`.
    public func getObject(_ key: String, maxBytes: Int = 64 << 20) async throws(S3Error) -> ByteBuffer {
        try Self.checkKey(key)
        return try await send("GET", key: key, maxReplyBytes: maxBytes).body
    }

    /// Size and ETag of `key`, or `nil` when there is no such object.
    public func headObject(_ key: String) async throws(S3Error) -> S3ObjectInfo? {
        try Self.checkKey(key)
        do {
            let response = try await send("HEAD", key: key)
            return S3ObjectInfo(key: key, size: Int64(response.headers.first(name: "content-length") ?? "") ?? 0,
                                etag: response.headers.first(name: "etag") ?? "", lastModified: response.headers.first(name: "last-modified"))
        } catch .service(status: 404, _, _) {
            return nil
        }
    }

    /// Deletes `key`; deleting what is not there succeeds, as in S3.
    public func deleteObject(_ key: String) async throws(S3Error) {
        try Self.checkKey(key)
        _ = try await send("DELETE", key: key)
    }

    /// One page of the keys under `prefix`, in S3's (byte) order.
    public func listObjects(prefix: String, continuationToken: String? = nil, maxKeys: Int = 1000) async throws(S3Error) -> S3ListPage {
        guard (1...1000).contains(maxKeys) else { throw .invalid("max-keys is 1 to 1000") }
        var query: [(name: String, value: String)] = [("list-type", "2"), ("max-keys", String(maxKeys)), ("prefix", prefix)]
        if let continuationToken { query.append(("continuation-token", continuationToken)) }
        let response = try await send("GET", key: nil, query: query, maxReplyBytes: 16 << 20)
        let text = Substring(String(buffer: response.body))
        guard text.contains("ListBucketResult") else { throw .malformedReply("a listing without ListBucketResult") }
        var objects: [S3ObjectInfo] = []
        for block in S3XML.blocks("Contents", in: text) {
            guard let key = S3XML.value("Key", in: block), let size = S3XML.value("Size", in: block).flatMap({ Int64($0) }) else {
                throw .malformedReply("a listed object without Key or Size")
            }
            objects.append(S3ObjectInfo(key: key, size: size, etag: S3XML.value("ETag", in: block) ?? "",
                                        lastModified: S3XML.value("LastModified", in: block)))
        }
        let truncated = S3XML.value("IsTruncated", in: text) == "true"
        let next = truncated ? S3XML.value("NextContinuationToken", in: text) : nil
        if truncated && next == nil { throw .malformedReply("a truncated listing without NextContinuationToken") }
        return S3ListPage(objects: objects, nextContinuationToken: next)
    }

    /// Every key under `prefix`, refused past `limit` objects.
    public func listAllObjects(prefix: String, pageSize: Int = 1000, limit: Int = 100_000) async throws(S3Error) -> [S3ObjectInfo] {
        var all: [S3ObjectInfo] = []
        var token: String?
        repeat {
            let page = try await listObjects(prefix: prefix, continuationToken: token, maxKeys: pageSize)
            all += page.objects
            guard all.count <= limit else { throw .invalid("more than \(limit) objects under \(prefix)") }
            token = page.nextContinuationToken
        } while token != nil
        return all
    }

    // MARK: Multipart

    public func createMultipartUpload(_ key: String, contentType: String? = nil) async throws(S3Error) -> String {
        try Self.checkKey(key)
        let headers: [(name: String, value: String)] = contentType.map { [("content-type", $0)] } ?? []
        let response = try await send("POST", key: key, query: [("uploads", "")], headers: headers, maxReplyBytes: 1 << 20)
        guard let id = S3XML.value("UploadId", in: Substring(String(buffer: response.body))), !id.isEmpty else {
            throw .malformedReply("InitiateMultipartUploadResult without UploadId")
        }
        return id
    }

    /// Sends part `number` (1–10,000); returns its ETag.
    public func uploadPart(_ key: String, uploadID: String, number: Int, body: ByteBuffer) async throws(S3Error) -> String {
        guard (1...Self.maxParts).contains(number) else { throw .invalid("a part number is 1 to 10000") }
        let response = try await send("PUT", key: key, query: [("partNumber", String(number)), ("uploadId", uploadID)],
                                      headers: [("content-length", String(body.readableBytes))], body: body)
        guard let etag = response.headers.first(name: "etag") else { throw .malformedReply("an uploaded part without ETag") }
        return etag
    }

    @discardableResult
    public func completeMultipartUpload(_ key: String, uploadID: String, parts: [(number: Int, etag: String)]) async throws(S3Error) -> String {
        let body = ByteBuffer(string: S3XML.completeMultipartBody(parts))
        let response = try await send("POST", key: key, query: [("uploadId", uploadID)],
                                      headers: [("content-type", "application/xml"), ("content-length", String(body.readableBytes))],
                                      body: body, maxReplyBytes: 1 << 20)
        // S3 may answer 200 and put the error in the body (the reply starts before the parts are joined).
        let text = Substring(String(buffer: response.body))
        if !S3XML.blocks("Error", in: text).isEmpty {
            throw .service(status: 200, code: S3XML.value("Code", in: text) ?? "InternalError", message: S3XML.value("Message", in: text) ?? "")
        }
        return S3XML.value("ETag", in: text) ?? ""
    }

    public func abortMultipartUpload(_ key: String, uploadID: String) async throws(S3Error) {
        _ = try await send("DELETE", key: key, query: [("uploadId", uploadID)])
    }

    // MARK: Presigned URLs

    /// A URL that lets whoever holds it `method` (GET, PUT, HEAD, DELETE) `key` for `expiresSeconds`.
    public func presignedURL(_ method: String, key: String, expiresSeconds: Int) throws(S3Error) -> String {
        try Self.presignedURL(method, key: key, endpoint: endpoint, credentials: signer.credentials, expiresSeconds: expiresSeconds, at: now())
    }

    /// The same, without a client: what the control plane hands out.
    public static func presignedURL(_ method: String, key: String, endpoint: S3Endpoint, credentials: S3Credentials,
                                    expiresSeconds: Int, at time: AmzTime) throws(S3Error) -> String {
        try checkKey(key)
        guard ["GET", "PUT", "HEAD", "DELETE"].contains(method) else { throw .invalid("a presigned URL is for GET, PUT, HEAD or DELETE") }
        guard (1...SigV4Signer.maxPresignSeconds).contains(expiresSeconds) else { throw .invalid("a presigned URL expires in 1 s to 7 days") }
        let path = endpoint.encodedPath(key: key)
        let request = SigV4Request(method: method, host: endpoint.requestHost, encodedPath: path)
        let query = SigV4Signer(credentials: credentials, region: endpoint.region).presignedQuery(for: request, expiresSeconds: expiresSeconds, at: time)
        return "\(endpoint.secure ? "https" : "http")://\(endpoint.requestHost)\(path)?" + encodeQuery(query)
    }

    // MARK: Sending

    struct Reply {
        var status: Int
        var headers: HTTPHeaders
        var body: ByteBuffer
    }

    /// Signs one request: the payload's SHA-256 is signed (plain HTTP to a backend on a LAN is
    /// common, and a signed payload is what keeps a body from being altered on the way).
    func makeRequest(_ method: String, key: String?, query: [(name: String, value: String)] = [],
                     headers extra: [(name: String, value: String)] = [], body: ByteBuffer? = nil) -> HTTPClientRequest {
        let path = endpoint.encodedPath(key: key)
        let payloadHash = body.map { buffer in
            buffer.withUnsafeReadableBytes { SigV4Signer.hex(SHA256.hash(data: $0)) }
        } ?? SigV4Signer.emptyPayloadHash
        let signed = SigV4Request(method: method, host: endpoint.requestHost, encodedPath: path, query: query,
                                  headers: extra.filter { $0.name != "content-length" })
        var request = HTTPClientRequest(url: "\(endpoint.secure ? "https" : "http")://\(endpoint.requestHost)\(path)"
                                            + (query.isEmpty ? "" : "?" + Self.encodeQuery(query)))
        request.method = HTTPMethod(rawValue: method)
        for (name, value) in signed.headers { request.headers.add(name: name, value: value) }
        for (name, value) in signer.signedHeaders(for: signed, payloadHash: payloadHash, at: now()) {
            request.headers.add(name: name, value: value)
        }
        request.headers.replaceOrAdd(name: "host", value: endpoint.requestHost)
        if let body { request.body = .bytes(body) }
        return request
    }

    /// Signs and sends one request and reads its whole reply; a status of 300 or more becomes
    /// `S3Error.service` with the code of the reply's XML body.
    func send(_ method: String, key: String?, query: [(name: String, value: String)] = [],
              headers extra: [(name: String, value: String)] = [], body: ByteBuffer? = nil,
              maxReplyBytes: Int = 1 << 20) async throws(S3Error) -> Reply {
        let request = makeRequest(method, key: key, query: query, headers: extra, body: body)
        let response: HTTPClientResponse
        let replyBody: ByteBuffer
        do {
            response = try await http.execute(request, timeout: requestTimeout)
            let limit = response.status.code >= 300 ? 64 << 10 : maxReplyBytes
            replyBody = method == "HEAD" ? ByteBuffer() : try await response.body.collect(upTo: limit)
        } catch is NIOTooManyBytesError {
            throw .malformedReply("a reply over the \(maxReplyBytes)-byte limit")
        } catch {
            throw .transport(String(describing: error))
        }
        try Self.check(response, body: replyBody)
        return Reply(status: Int(response.status.code), headers: response.headers, body: replyBody)
    }

    /// Signs and sends one request and hands its reply's body to `consume` piece by piece, as
    /// fast as `consume` takes them; returns the reply's ETag.
    func stream(_ method: String, key: String?, consume: (ByteBuffer) throws -> Void) async throws -> String {
        let request = makeRequest(method, key: key)
        let response: HTTPClientResponse
        do {
            response = try await http.execute(request, timeout: requestTimeout)
        } catch {
            throw S3Error.transport(String(describing: error))
        }
        guard response.status.code < 300 else {
            let body = (try? await response.body.collect(upTo: 64 << 10)) ?? ByteBuffer()
            try Self.check(response, body: body)
            return ""
        }
        do {
            for try await chunk in response.body { try consume(chunk) }
        } catch let error as S3Error {
            throw error
        } catch {
            throw S3Error.transport(String(describing: error))
        }
        return response.headers.first(name: "etag") ?? ""
    }

    static func check(_ response: HTTPClientResponse, body: ByteBuffer) throws(S3Error) {
        guard response.status.code >= 300 else { return }
        let text = Substring(String(buffer: body))
        throw .service(status: Int(response.status.code), code: S3XML.value("Code", in: text) ?? response.status.reasonPhrase,
                       message: S3XML.value("Message", in: text) ?? "")
    }

    static func encodeQuery(_ pairs: [(name: String, value: String)]) -> String {
        pairs.map { SigV4Signer.uriEncode($0.name, keepSlash: false) + "=" + SigV4Signer.uriEncode($0.value, keepSlash: false) }
            .joined(separator: "&")
    }
}
