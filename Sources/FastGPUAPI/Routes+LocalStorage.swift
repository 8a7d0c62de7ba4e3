import FastGPUControlPlane
import FastGPUModel
import FastGPUStorage
import Foundation
import Hummingbird
import HTTPTypes
import NIOCore

/// The `local` backend's S3 endpoint at `/s3/fastgpu-local/...`: the part of the S3 protocol
/// FastGPU's own client and presigned URLs use (objects, ListObjectsV2, multipart), so the
/// embedded default needs no other server and the same job spec works with it and with a bucket.
///
/// Every request carries a Signature V4 (header or presigned) made with the backend's own
/// credentials, which only the control plane holds; errors are S3's XML, as S3 clients expect.
extension APIServer {
    func localStorageRoutes(_ router: Router<APIRequestContext>, store: LocalObjectStore) {
        let cp = controlPlane
        let clock = self.clock
        let handler: @Sendable (Request, APIRequestContext) async throws -> Response = { request, _ in
            do {
                return try await Self.serveLocalStorage(request, store: store, controlPlane: cp,
                                                        now: AmzTime(epochSeconds: clock.now().millisecondsSinceEpoch / 1000))
            } catch let error as S3Error {
                return Self.s3ErrorResponse(error)
            }
        }
        for method in [HTTPRequest.Method.get, .put, .head, .delete, .post] {
            router.on("/s3/:bucket", method: method, use: handler)
            router.on("/s3/:bucket/**", method: method, use: handler)
        }
    }

    static func serveLocalStorage(_ request: Request, store: LocalObjectStore, controlPlane: ControlPlane, now: AmzTime) async throws -> Response {
        guard let credentials = await controlPlane.localStorageCredentials() else {
            throw S3Error.service(status: 503, code: "ServiceUnavailable", message: "the local backend is not set up")
        }
        var headers: [String: String] = [:]
        // A header given twice is one value, comma-joined (as the signer canonicalises it).
        for field in request.headers { headers[field.name.canonicalName] = headers[field.name.canonicalName].map { "\($0),\(field.value)" } ?? field.value }
        if headers["host"] == nil, let authority = request.head.authority { headers["host"] = authority }
        let rawPath = request.uri.path
        let rawQuery = request.uri.query ?? ""
        let verifier = SigV4Verifier(credentials: credentials, region: "local")
        let payloadHash = try verifier.verify(SigV4Verifier.Received(method: request.method.rawValue, rawPath: rawPath, rawQuery: rawQuery, headers: headers),
                                              now: now).get()

        // /s3/BUCKET[/KEY]
        let afterPrefix = rawPath.dropFirst("/s3/".count)
        let slash = afterPrefix.firstIndex(of: "/")
        let bucket = String(afterPrefix[..<(slash ?? afterPrefix.endIndex)])
        guard bucket == LocalObjectStore.bucket else {
            throw S3Error.service(status: 404, code: "NoSuchBucket", message: "The specified bucket does not exist")
        }
        let query = SigV4Signer.parseQuery(Substring(rawQuery)) ?? []
        func parameter(_ name: String) -> String? { query.first { $0.name == name }?.value }
        let keyPart = slash.map { afterPrefix[afterPrefix.index(after: $0)...] } ?? ""
        if keyPart.isEmpty { return try await bucketRequest(request, store: store, bucket: bucket, parameter: parameter) }
        guard let key = SigV4Signer.percentDecode(keyPart) else {
            throw S3Error.service(status: 400, code: "InvalidURI", message: "Couldn't parse the specified URI.")
        }
        try S3Client.checkKey(key)
        let contentSHA = payloadHash == SigV4Signer.unsignedPayload ? nil : payloadHash

        switch request.method {
        case .put:
            if let uploadID = parameter("uploadId") {
                guard let number = parameter("partNumber").flatMap({ Int($0) }) else {
                    throw S3Error.service(status: 400, code: "InvalidArgument", message: "partNumber is required")
                }
                let etag = try await store.putPart(bucket: bucket, key: key, uploadID: uploadID, number: number, body: request.body, expectedSHA256: contentSHA)
                return s3Response(.ok, headers: [.eTag: etag])
            }
            let etag = try await store.putObject(bucket: bucket, key: key, body: request.body, expectedSHA256: contentSHA,
                                                 contentType: request.headers[.contentType])
            return s3Response(.ok, headers: [.eTag: etag])
        case .get, .head:
            guard let (meta, path) = store.object(bucket: bucket, key: key) else {
                throw S3Error.service(status: 404, code: "NoSuchKey", message: "The specified key does not exist.")
            }
            var fields: HTTPFields = [.eTag: meta.etag, .contentType: meta.contentType ?? "application/octet-stream",
                                      .lastModified: httpDate(meta.lastModified)]
            fields[.contentLength] = String(meta.size)
            if request.method == .head { return Response(status: .ok, headers: fields, body: ResponseBody(contentLength: Int(meta.size)) { writer in try await writer.finish(nil) }) }
            return Response(status: .ok, headers: fields, body: ResponseBody(contentLength: Int(meta.size)) { writer in
                guard let file = FileHandle(forReadingAtPath: path) else { throw S3Error.service(status: 500, code: "InternalError", message: "") }
                defer { try? file.close() }
                while let chunk = try file.read(upToCount: 1 << 20), !chunk.isEmpty {
                    try await writer.write(ByteBuffer(bytes: chunk))
                }
                try await writer.finish(nil)
            })
        case .delete:
            if let uploadID = parameter("uploadId") {
                try store.abort(bucket: bucket, key: key, uploadID: uploadID)
            } else {
                store.deleteObject(bucket: bucket, key: key)
            }
            return s3Response(.noContent)
        case .post:
            if query.contains(where: { $0.name == "uploads" }) {
                let id = try store.createUpload(bucket: bucket, key: key, contentType: request.headers[.contentType])
                return xml("<InitiateMultipartUploadResult><Bucket>\(bucket)</Bucket><Key>\(S3XML.escape(key))</Key><UploadId>\(id)</UploadId></InitiateMultipartUploadResult>")
            }
            if let uploadID = parameter("uploadId") {
                let body = try await request.body.collect(upTo: 2 << 20)
                let text = Substring(String(buffer: body))
                var parts: [(number: Int, etag: String)] = []
                for block in S3XML.blocks("Part", in: text) {
                    guard let number = S3XML.value("PartNumber", in: block).flatMap({ Int($0) }), let etag = S3XML.value("ETag", in: block) else {
                        throw S3Error.service(status: 400, code: "MalformedXML", message: "The XML you provided was not well-formed.")
                    }
                    parts.append((number, etag))
                }
                let etag = try store.complete(bucket: bucket, key: key, uploadID: uploadID, parts: parts)
                return xml("<CompleteMultipartUploadResult><Bucket>\(bucket)</Bucket><Key>\(S3XML.escape(key))</Key><ETag>\(S3XML.escape(etag))</ETag></CompleteMultipartUploadResult>")
            }
            throw S3Error.service(status: 400, code: "InvalidRequest", message: "POST takes ?uploads or ?uploadId")
        default:
            throw S3Error.service(status: 405, code: "MethodNotAllowed", message: "The specified method is not allowed against this resource.")
        }
    }

    /// A request on the bucket itself: create (it exists), HEAD, or ListObjectsV2.
    static func bucketRequest(_ request: Request, store: LocalObjectStore, bucket: String, parameter: (String) -> String?) async throws -> Response {
        switch request.method {
        case .put, .head: return s3Response(.ok)
        case .get:
            let maxKeys = min(1000, max(1, parameter("max-keys").flatMap { Int($0) } ?? 1000))
            let prefix = parameter("prefix") ?? ""
            let startAfter = parameter("continuation-token") ?? parameter("start-after")
            let (objects, truncated) = store.list(bucket: bucket, prefix: prefix, startAfter: startAfter, maxKeys: maxKeys)
            var body = "<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Name>\(bucket)</Name><Prefix>\(S3XML.escape(prefix))</Prefix>"
            body += "<KeyCount>\(objects.count)</KeyCount><MaxKeys>\(maxKeys)</MaxKeys><IsTruncated>\(truncated)</IsTruncated>"
            if truncated, let last = objects.last { body += "<NextContinuationToken>\(S3XML.escape(last.key))</NextContinuationToken>" }
            for object in objects {
                body += "<Contents><Key>\(S3XML.escape(object.key))</Key><LastModified>\(isoDate(object.lastModified))</LastModified>"
                body += "<ETag>\(S3XML.escape(object.etag))</ETag><Size>\(object.size)</Size><StorageClass>STANDARD</StorageClass></Contents>"
            }
            return xml(body + "</ListBucketResult>")
        default:
            throw S3Error.service(status: 405, code: "MethodNotAllowed", message: "The specified method is not allowed against this resource.")
        }
    }

    static func s3ErrorResponse(_ error: S3Error) -> Response {
        let (status, code, message): (Int, String, String) = switch error {
        case .service(let status, let code, let message): (status, code, message)
        case .invalid(let words): (400, "InvalidArgument", words)
        case .transport, .malformedReply: (500, "InternalError", "We encountered an internal error. Please try again.")
        }
        var response = xml("<Error><Code>\(S3XML.escape(code))</Code><Message>\(S3XML.escape(message))</Message></Error>")
        response.status = HTTPResponse.Status(code: status)
        return response
    }

    static func s3Response(_ status: HTTPResponse.Status, headers: HTTPFields = [:]) -> Response {
        Response(status: status, headers: headers, body: ResponseBody())
    }

    static func xml(_ text: String) -> Response {
        Response(status: .ok, headers: [.contentType: "application/xml"], body: ResponseBody(byteBuffer: ByteBuffer(string: "<?xml version=\"1.0\" encoding=\"UTF-8\"?>" + text)))
    }

    static func httpDate(_ seconds: Double) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
        return formatter.string(from: Date(timeIntervalSince1970: seconds))
    }

    static func isoDate(_ seconds: Double) -> String {
        let time = AmzTime(epochSeconds: Int64(seconds)).basic
        let b = Array(time)
        return "\(String(b[0..<4]))-\(String(b[4..<6]))-\(String(b[6..<8]))T\(String(b[9..<11])):\(String(b[11..<13])):\(String(b[13..<15])).000Z"
    }
}
