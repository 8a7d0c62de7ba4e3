import Crypto

/// Checks Signature V4 on a request the server received (the `local` backend's S3 endpoint):
/// the header form and the presigned-URL form, with the same canonical request the signer
/// builds, so that whatever FastGPU's (or any S3) client signs, this accepts, and nothing else.
public struct SigV4Verifier: Sendable {
    public let credentials: S3Credentials
    public let region: String
    /// How far a request's `x-amz-date` may be from the server's clock (S3 allows 15 minutes).
    public var maxSkewSeconds: Int64 = 900

    public init(credentials: S3Credentials, region: String) {
        self.credentials = credentials
        self.region = region
    }

    /// A request as received: the path exactly as sent (still encoded), the raw query, and the
    /// headers by lower-case name.
    public struct Received: Sendable {
        public var method: String
        public var rawPath: String
        public var rawQuery: String
        public var headers: [String: String]

        public init(method: String, rawPath: String, rawQuery: String, headers: [String: String]) {
            self.method = method
            self.rawPath = rawPath
            self.rawQuery = rawQuery
            self.headers = headers
        }
    }

    /// The payload hash the request promises (a hex SHA-256 to check the body against, or
    /// `UNSIGNED-PAYLOAD`) when its signature holds; else an S3 error code and message.
    public func verify(_ request: Received, now: AmzTime) -> Result<String, S3Error> {
        guard let query = SigV4Signer.parseQuery(Substring(request.rawQuery)) else { return .failure(refused("AuthorizationQueryParametersError", "the query is malformed")) }
        guard let host = request.headers["host"] else { return .failure(refused("AccessDenied", "a request names its Host")) }
        if let authorization = request.headers["authorization"] {
            return verifyHeader(authorization, request: request, host: host, query: query, now: now)
        }
        if query.contains(where: { $0.name == "X-Amz-Signature" }) {
            return verifyPresigned(request: request, host: host, query: query, now: now)
        }
        return .failure(refused("AccessDenied", "the request is not signed"))
    }

    private func verifyHeader(_ authorization: String, request: Received, host: String, query: [(name: String, value: String)],
                              now: AmzTime) -> Result<String, S3Error> {
        guard authorization.hasPrefix("AWS4-HMAC-SHA256 ") else { return .failure(refused("AccessDenied", "only AWS4-HMAC-SHA256 signatures are accepted")) }
        var fields: [String: String] = [:]
        for part in authorization.dropFirst(17).split(separator: ",") {
            let trimmed = part.trimmingPrefixSpaces()
            guard let equals = trimmed.firstIndex(of: "=") else { continue }
            fields[String(trimmed[..<equals])] = String(trimmed[trimmed.index(after: equals)...])
        }
        guard let credential = fields["Credential"], let signedHeaders = fields["SignedHeaders"], let signature = fields["Signature"],
              let dateText = request.headers["x-amz-date"], let time = AmzTime(basic: dateText),
              let payloadHash = request.headers["x-amz-content-sha256"]
        else { return .failure(refused("AccessDenied", "the Authorization header, x-amz-date or x-amz-content-sha256 is missing or malformed")) }
        if let failure = checkScope(credential, time: time) { return .failure(failure) }
        guard abs(time.epochSeconds - now.epochSeconds) <= maxSkewSeconds else {
            return .failure(refused("RequestTimeTooSkewed", "the difference between the request time and the server's time is too large"))
        }
        return check(signature: signature, signedHeaders: signedHeaders, request: request, host: host, query: query,
                     payloadHash: payloadHash, time: time).map { payloadHash }
    }

    private func verifyPresigned(request: Received, host: String, query: [(name: String, value: String)], now: AmzTime) -> Result<String, S3Error> {
        func value(_ name: String) -> String? { query.first { $0.name == name }?.value }
        guard value("X-Amz-Algorithm") == "AWS4-HMAC-SHA256", let credential = value("X-Amz-Credential"),
              let time = value("X-Amz-Date").flatMap(AmzTime.init(basic:)), let expires = value("X-Amz-Expires").flatMap({ Int64($0) }),
              (1...Int64(SigV4Signer.maxPresignSeconds)).contains(expires),
              let signedHeaders = value("X-Amz-SignedHeaders"), let signature = value("X-Amz-Signature")
        else { return .failure(refused("AuthorizationQueryParametersError", "the presigned URL's X-Amz parameters are missing or malformed")) }
        if let failure = checkScope(credential, time: time) { return .failure(failure) }
        guard now.epochSeconds <= time.epochSeconds + expires else { return .failure(refused("AccessDenied", "Request has expired")) }
        guard time.epochSeconds <= now.epochSeconds + maxSkewSeconds else { return .failure(refused("AccessDenied", "the presigned URL is not valid yet")) }
        let unsigned = query.filter { $0.name != "X-Amz-Signature" }
        return check(signature: signature, signedHeaders: signedHeaders, request: request, host: host, query: unsigned,
                     payloadHash: SigV4Signer.unsignedPayload, time: time).map { SigV4Signer.unsignedPayload }
    }

    private func checkScope(_ credential: String, time: AmzTime) -> S3Error? {
        let parts = credential.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 5, parts[4] == "aws4_request", parts[3] == "s3" else { return refused("AuthorizationHeaderMalformed", "the credential scope is malformed") }
        guard String(parts[0]) == credentials.accessKeyID else { return refused("InvalidAccessKeyId", "the access key id does not exist here") }
        guard String(parts[1]) == time.day else { return refused("AuthorizationHeaderMalformed", "the credential's day is not the request's") }
        guard String(parts[2]) == region else { return refused("AuthorizationHeaderMalformed", "the region is wrong; expecting '\(region)'") }
        return nil
    }

    private func check(signature: String, signedHeaders: String, request: Received, host: String, query: [(name: String, value: String)],
                       payloadHash: String, time: AmzTime) -> Result<Void, S3Error> {
        let names = signedHeaders.split(separator: ";").map(String.init)
        guard names.contains("host"), names.count <= 64 else { return .failure(refused("AccessDenied", "the signed headers must include host")) }
        var headers: [(name: String, value: String)] = []
        for name in names where name != "host" {
            guard let value = request.headers[name] else { return .failure(refused("AccessDenied", "a signed header is missing: \(name)")) }
            headers.append((name, value))
        }
        let signed = SigV4Request(method: request.method, host: host, encodedPath: request.rawPath, query: query, headers: headers)
        let (canonical, canonicalNames) = SigV4Signer.canonicalRequest(signed, payloadHash: payloadHash)
        guard canonicalNames == names.sorted().joined(separator: ";") else { return .failure(refused("AccessDenied", "the signed headers are not in order")) }
        let expected = SigV4Signer(credentials: credentials, region: region).signature(canonicalRequest: canonical, at: time)
        guard Self.constantTimeEqual(expected, signature) else {
            return .failure(refused("SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided"))
        }
        return .success(())
    }

    private func refused(_ code: String, _ message: String) -> S3Error {
        .service(status: code == "AuthorizationHeaderMalformed" || code == "AuthorizationQueryParametersError" ? 400 : 403, code: code, message: message)
    }

    static func constantTimeEqual(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8), y = Array(b.utf8)
        guard x.count == y.count else { return false }
        var difference: UInt8 = 0
        for index in x.indices { difference |= x[index] ^ y[index] }
        return difference == 0
    }
}

extension Substring {
    func trimmingPrefixSpaces() -> Substring {
        var slice = self
        while slice.first == " " { slice.removeFirst() }
        return slice
    }
}
