import AsyncHTTPClient
import Crypto
import FastGPUStorage
import Foundation
import NIOCore
import Testing

/// The S3 client against a real S3-protocol server (moto on loopback): every operation FastGPU
/// uses, the shapes of keys that break naive clients, and a multipart object.
@Suite(.enabled(if: MotoServer.enabled, "moto_server is not installed (pip install 'moto[server]')"))
struct S3RoundTripTests {
    @Test func smallObjectsGoAndComeBackWhole() async throws {
        let s3 = try await MotoServer.client()
        let etag = try await s3.putObject("run-1/metrics.json", body: ByteBuffer(string: "{\"loss\": 0.25}"), contentType: "application/json")
        #expect(!etag.isEmpty)
        #expect(String(buffer: try await s3.getObject("run-1/metrics.json")) == "{\"loss\": 0.25}")
        let head = try #require(try await s3.headObject("run-1/metrics.json"))
        #expect(head.size == 14)
        #expect(try await s3.headObject("run-1/absent") == nil)
    }

    @Test func anEmptyObjectIsAnObject() async throws {
        let s3 = try await MotoServer.client()
        try await s3.putObject("empty", body: ByteBuffer())
        #expect(try await s3.getObject("empty").readableBytes == 0)
        #expect(try #require(try await s3.headObject("empty")).size == 0)
        #expect(try await s3.listAllObjects(prefix: "").map(\.key) == ["empty"])
    }

    @Test(arguments: ["my file.txt", "modèle/模型.onnx", "a+b=c.txt", "odd/~!$&'()*,;:@ .bin", "deep/a/b/c/d/e.txt"])
    func keysWithSpacesUnicodeAndReservedCharactersRoundTrip(key: String) async throws {
        let s3 = try await MotoServer.client()
        try await s3.putObject(key, body: ByteBuffer(string: key))
        #expect(String(buffer: try await s3.getObject(key)) == key)
        #expect(try await s3.listAllObjects(prefix: "").map(\.key) == [key])
        try await s3.deleteObject(key)
        #expect(try await s3.headObject(key) == nil)
    }

    @Test func listingPagesThroughAPrefix() async throws {
        let s3 = try await MotoServer.client()
        for index in 0..<5 { try await s3.putObject("run-2/part-\(index)", body: ByteBuffer(string: "\(index)")) }
        try await s3.putObject("run-20/other", body: ByteBuffer(string: "x"))
        let first = try await s3.listObjects(prefix: "run-2/", maxKeys: 2)
        #expect(first.objects.map(\.key) == ["run-2/part-0", "run-2/part-1"])
        #expect(first.nextContinuationToken != nil)
        let all = try await s3.listAllObjects(prefix: "run-2/")
        #expect(all.map(\.key) == (0..<5).map { "run-2/part-\($0)" })
        await #expect(throws: S3Error.invalid("more than 3 objects under run-2/")) {
            _ = try await s3.listAllObjects(prefix: "run-2/", pageSize: 2, limit: 3)
        }
    }

    @Test func aFortyMiBFileGoesUpInPartsAndComesBackIdentical() async throws {
        let s3 = try await MotoServer.client()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("s3-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        // Random bytes (read, not computed: a debug build's loop over 40 MiB takes seconds of both cores).
        let random = try #require(FileHandle(forReadingAtPath: "/dev/urandom"))
        let bytes = try Self.read(random, count: 40 << 20)
        try random.close()
        let source = directory + "/checkpoint.bin"
        try Data(bytes).write(to: URL(fileURLWithPath: source))
        let expectedSHA = SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined()

        let up = try await s3.uploadFile(at: source, key: "ckpt/checkpoint.bin")
        #expect(up.size == Int64(bytes.count))
        #expect(up.sha256 == expectedSHA)
        // A multipart ETag names its part count: 40 MiB in 16 MiB parts is 3.
        #expect(up.etag.hasSuffix("-3\""))
        #expect(try #require(try await s3.headObject("ckpt/checkpoint.bin")).size == Int64(bytes.count))

        let down = try await s3.downloadFile("ckpt/checkpoint.bin", to: directory + "/back.bin")
        #expect(down.sha256 == expectedSHA)
        #expect(FileManager.default.contentsEqual(atPath: source, andPath: directory + "/back.bin"))
        #expect(!FileManager.default.fileExists(atPath: directory + "/back.bin.partial"))
    }

    @Test func aFailedUploadSaysWhyWithoutItsCredentials() async throws {
        let s3 = try await MotoServer.client()
        let missing = S3Client(endpoint: try S3Endpoint(url: s3.endpoint.url, region: "us-east-1", bucket: "no-such-bucket-here", addressing: .path),
                               credentials: MotoServer.credentials, http: MotoServer.http)
        do {
            try await missing.putObject("x", body: ByteBuffer(string: "x"))
            Issue.record("a PUT into a missing bucket succeeded")
        } catch {
            #expect(error == .service(status: 404, code: "NoSuchBucket", message: "The specified bucket does not exist"))
            #expect(!"\(error)".contains(MotoServer.credentials.secretAccessKey))
        }
        let unreachable = S3Client(endpoint: try S3Endpoint(url: "http://127.0.0.1:1", region: "us-east-1", bucket: "nowhere", addressing: .path),
                                   credentials: MotoServer.credentials, http: MotoServer.http)
        await #expect { try await unreachable.putObject("x", body: ByteBuffer()) } throws: { error in
            (error as? S3Error)?.isRetryable == true
        }
    }

    @Test func aPresignedURLWorksWithoutCredentials() async throws {
        let s3 = try await MotoServer.client()
        let put = try s3.presignedURL("PUT", key: "shared/result.npy", expiresSeconds: 600)
        #expect(!put.contains(MotoServer.credentials.secretAccessKey))
        var request = HTTPClientRequest(url: put)
        request.method = .PUT
        request.body = .bytes(ByteBuffer(string: "array bytes"))
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
        #expect(response.status == .ok)
        let get = try await HTTPClient.shared.execute(HTTPClientRequest(url: try s3.presignedURL("GET", key: "shared/result.npy", expiresSeconds: 600)),
                                                      timeout: .seconds(30))
        #expect(String(buffer: try await get.body.collect(upTo: 1024)) == "array bytes")
    }

    @Test(arguments: ["", "ftp://host", "http://", "http://host/a?b=c", "http://host/../x", "http://user@host", "http://host:70000"])
    func badEndpointsAreRefusedWithAReason(url: String) {
        #expect(throws: S3Error.self) { try S3Endpoint(url: url, region: "us-east-1", bucket: "bucket", addressing: .path) }
    }

    @Test func anEndpointMayLiveUnderAPath() throws {
        let endpoint = try S3Endpoint(url: "http://127.0.0.1:8470/s3/", region: "local", bucket: "results", addressing: .path)
        #expect(endpoint.url == "http://127.0.0.1:8470/s3")
        #expect(endpoint.port == 8470)
    }

    @Test(arguments: ["ab", "Upper", "-lead", "trail-", "has_underscore", String(repeating: "a", count: 64)])
    func badBucketNamesAreRefused(bucket: String) {
        #expect(throws: S3Error.self) { try S3Endpoint(url: "http://127.0.0.1:9000", region: "us-east-1", bucket: bucket, addressing: .path) }
    }

    /// `count` bytes from `file` (a device may give fewer per read).
    static func read(_ file: FileHandle, count: Int) throws -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(count)
        while bytes.count < count, let data = try file.read(upToCount: count - bytes.count), !data.isEmpty { bytes += data }
        return bytes
    }
}
