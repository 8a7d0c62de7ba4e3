import FastGPUStorage
import Foundation
import Testing

/// Signature V4 checked against botocore's output at a fixed time and AWS's own published S3
/// examples (`Fixtures/`, made by `scripts/storage/make-sigv4-vectors.py`).
@Suite struct SigV4Tests {
    struct Vectors: Decodable {
        struct Case: Decodable {
            var name: String
            var method: String
            var url: String
            var headers: [String: String]?
            var body: String?
            var canonicalRequest: String?
            var stringToSign: String?
            var authorization: String?
            var presignedURL: String?
            var presignExpiresSeconds: Int?
        }
        var accessKeyID: String
        var secretAccessKey: String
        var region: String
        var time: String
        var presignExpiresSeconds: Int?
        var cases: [Case]
    }

    static func load(_ name: String) throws -> Vectors {
        let url = try #require(Bundle.module.url(forResource: "Fixtures/\(name)", withExtension: "json"))
        return try JSONDecoder().decode(Vectors.self, from: Data(contentsOf: url))
    }

    /// `http://host:port/path?query` cut into what the signer takes.
    static func request(_ vector: Vectors.Case) throws -> SigV4Request {
        let afterScheme = try #require(vector.url.range(of: "://")).upperBound
        let rest = vector.url[afterScheme...]
        let pathStart = rest.firstIndex(of: "/") ?? rest.endIndex
        let host = String(rest[..<pathStart])
        let pathAndQuery = rest[pathStart...]
        let queryStart = pathAndQuery.firstIndex(of: "?")
        let path = String(pathAndQuery[..<(queryStart ?? pathAndQuery.endIndex)])
        let query = try #require(SigV4Signer.parseQuery(queryStart.map { pathAndQuery[pathAndQuery.index(after: $0)...] } ?? ""))
        let headers = (vector.headers ?? [:]).sorted { $0.key < $1.key }.map { (name: $0.key, value: $0.value) }
        return SigV4Request(method: vector.method, host: host, encodedPath: path, query: query, headers: headers)
    }

    static func signer(_ vectors: Vectors) -> SigV4Signer {
        SigV4Signer(credentials: S3Credentials(accessKeyID: vectors.accessKeyID, secretAccessKey: vectors.secretAccessKey), region: vectors.region)
    }

    static func queryPairs(ofURL url: String) -> [String] {
        guard let mark = url.firstIndex(of: "?") else { return [] }
        return url[url.index(after: mark)...].split(separator: "&").map(String.init).sorted()
    }

    @Test(arguments: try load("sigv4-botocore").cases.map(\.name))
    func headerSignatureMatchesBotocore(name: String) throws {
        let vectors = try Self.load("sigv4-botocore")
        let vector = try #require(vectors.cases.first { $0.name == name })
        let time = try #require(AmzTime(basic: vectors.time))
        let request = try Self.request(vector)
        let payloadHash = SigV4Signer.sha256Hex(Array((vector.body ?? "").utf8))
        let signer = Self.signer(vectors)

        var withDate = request
        withDate.headers += [("x-amz-content-sha256", payloadHash), ("x-amz-date", time.basic)]
        let (canonical, _) = SigV4Signer.canonicalRequest(withDate, payloadHash: payloadHash)
        #expect(canonical == vector.canonicalRequest)
        #expect(signer.stringToSign(canonicalRequest: canonical, at: time) == vector.stringToSign)
        let added = signer.signedHeaders(for: request, payloadHash: payloadHash, at: time)
        #expect(added.first { $0.name == "Authorization" }?.value == vector.authorization)
    }

    @Test(arguments: try load("sigv4-botocore").cases.map(\.name).filter { $0 != "repeated-query-keys" })
    func presignedURLMatchesBotocore(name: String) throws {
        // botocore's presigned URL for `b=2&a=2&a=1&c` drops a value of the repeated key (it
        // builds the query as a dictionary), so that case is checked by its header signature only.
        let vectors = try Self.load("sigv4-botocore")
        let vector = try #require(vectors.cases.first { $0.name == name })
        let time = try #require(AmzTime(basic: vectors.time))
        let request = try Self.request(vector)
        let added = Self.signer(vectors).presignedQuery(for: request, expiresSeconds: try #require(vectors.presignExpiresSeconds), at: time)
        let expected = try #require(vector.presignedURL)
        let ours = (request.query + added).map { SigV4Signer.uriEncode($0.name, keepSlash: false) + "=" + SigV4Signer.uriEncode($0.value, keepSlash: false) }
        // botocore writes a bare `uploads` as `uploads=`, and so do we: compare the pairs.
        #expect(ours.sorted() == Self.queryPairs(ofURL: expected).map { $0.contains("=") ? $0 : $0 + "=" })
        #expect(expected.hasPrefix("http://\(request.host)\(request.encodedPath)?"))
    }

    @Test func awsPublishedExamples() throws {
        let vectors = try Self.load("sigv4-aws-examples")
        let time = try #require(AmzTime(basic: vectors.time))
        let signer = Self.signer(vectors)

        let get = try #require(vectors.cases.first { $0.name == "get-object-with-range" })
        let added = signer.signedHeaders(for: try Self.request(get), payloadHash: SigV4Signer.emptyPayloadHash, at: time)
        #expect(added.first { $0.name == "Authorization" }?.value == get.authorization)

        let presigned = try #require(vectors.cases.first { $0.name == "presigned-get" })
        let request = try Self.request(presigned)
        let query = signer.presignedQuery(for: request, expiresSeconds: try #require(presigned.presignExpiresSeconds), at: time)
        let url = "https://\(request.host)\(request.encodedPath)?"
            + query.map { SigV4Signer.uriEncode($0.name, keepSlash: false) + "=" + SigV4Signer.uriEncode($0.value, keepSlash: false) }.joined(separator: "&")
        #expect(url == presigned.presignedURL)
    }

    @Test(arguments: [
        ("19700101T000000Z", Int64(0)),
        ("20130524T000000Z", Int64(1_369_353_600)),
        ("20240229T235959Z", Int64(1_709_251_199)),
        ("20261203T123456Z", Int64(1_796_301_296)),
        ("21000301T000000Z", Int64(4_107_542_400)),
    ])
    func amzTimeReadsAndWritesUTC(text: String, seconds: Int64) throws {
        #expect(AmzTime(epochSeconds: seconds).basic == text)
        #expect(try #require(AmzTime(basic: text)).epochSeconds == seconds)
    }

    @Test(arguments: ["", "2026120T123456Z", "20261303T000000Z", "20261203 123456Z", "20261203T12345aZ"])
    func amzTimeRefusesWhatIsNotOne(text: String) {
        #expect(AmzTime(basic: text) == nil)
    }

    @Test func keysAreEncodedAsS3WantsThem() {
        #expect(SigV4Signer.uriEncode("run-1/my file+a=b~c.npy", keepSlash: true) == "run-1/my%20file%2Ba%3Db~c.npy")
        #expect(SigV4Signer.uriEncode("modèle/模型", keepSlash: false) == "mod%C3%A8le%2F%E6%A8%A1%E5%9E%8B")
        #expect(SigV4Signer.percentDecode("mod%C3%A8le%2F%E6%A8%A1%E5%9E%8B") == "modèle/模型")
        #expect(SigV4Signer.percentDecode("bad%2") == nil)
        #expect(SigV4Signer.percentDecode("%FF") == nil)
    }

    @Test func credentialsNeverPrintTheirSecret() {
        let credentials = S3Credentials(accessKeyID: "AKID", secretAccessKey: "very-secret")
        #expect(!"\(credentials)".contains("very-secret"))
        #expect(!String(reflecting: credentials).contains("very-secret"))
    }
}
