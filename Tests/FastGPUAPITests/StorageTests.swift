import AsyncHTTPClient
import FastGPUAPI
import FastGPUControlPlane
import FastGPUModel
import FastGPUStorage
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing

@Suite("API: storage backends, presigned URLs and the local backend")
struct StorageTests {
    static let secretKey = "wJalrXUtnFEMI-never-in-the-clear-K7MDENG"
    static let accessKey = "AKIASTORAGETESTKEY01"
    static let http = S3Client.makeHTTPClient(connectTimeout: .seconds(2))

    @Test func backendsAreForClusterAdminsAndTheirCredentialsNeverComeBack() async throws {
        let fixture = try await Fixture.make()
        try await fixture.test { api in
            let alice = try await api.member("alice", of: "vision", role: "admin")
            let body = #"{"endpoint":"https://s3.eu-west-1.amazonaws.com","region":"eu-west-1","bucket":"team-results","addressing":"virtual-host","accessKeyID":"\#(Self.accessKey)","secretAccessKey":"\#(Self.secretKey)","default":true}"#
            #expect(try await api.call(.put, "/v1/storage/backends/results", token: alice, body: body).status == .forbidden)
            let added = try await api.call(.put, "/v1/storage/backends/results", token: fixture.admin, body: body)
            #expect(added.status == .ok, "\(added.text)")
            #expect(added.json["default"]?.bool == true)
            let listed = try await api.get("/v1/storage/backends", token: alice)
            #expect(listed.json["items"]?.array.compactMap { $0["name"]?.string } == ["local", "results"])
            #expect(listed.json["items"]?[0]?["default"]?.bool == false, "the new default took the mark from local")
            for reply in [added, listed, try await api.get("/v1/audit?limit=1000", token: fixture.admin)] {
                #expect(!reply.text.contains(Self.secretKey) && !reply.text.contains(Self.accessKey))
            }
            // Bad input is refused with the field's reason, and nothing is stored.
            for (bad, reason) in [
                (#"{"endpoint":"ftp://x","bucket":"ok-bucket","accessKeyID":"a","secretAccessKey":"b"}"#, "endpoint"),
                (#"{"endpoint":"http://x","bucket":"Bad_Bucket","accessKeyID":"a","secretAccessKey":"b"}"#, "bucket"),
                (#"{"endpoint":"http://x","bucket":"ok-bucket","addressing":"sideways","accessKeyID":"a","secretAccessKey":"b"}"#, "addressing"),
                (#"{"endpoint":"http://x","bucket":"ok-bucket","accessKeyID":"","secretAccessKey":"b"}"#, "accessKeyID"),
                (#"{"endpoint":"http://x","bucket":"ok-bucket","accessKeyID":"a","secretAccessKey":"b","extra":1}"#, "extra"),
            ] {
                let reply = try await api.call(.put, "/v1/storage/backends/other", token: fixture.admin, body: bad)
                #expect(reply.status == .badRequest || reply.status == .unprocessableContent, "\(bad)")
                #expect(reply.detail.contains(reason), "\(reply.detail)")
            }
            #expect(try await api.call(.put, "/v1/storage/backends/local", token: fixture.admin, body: body).status == .unprocessableContent)
            #expect(try await api.call(.delete, "/v1/storage/backends/local", token: fixture.admin).status == .unprocessableContent)
        }
        #expect(!SecretTests.database(fixture).contains(Self.secretKey), "the database holds the credentials sealed")
        #expect(!SecretTests.database(fixture).contains(Self.accessKey))
        // A restart with the same key opens them again: presigning still works.
        let restarted = try await fixture.restarted()
        try await restarted.test { api in
            let reply = try await api.post("/v1/storage/presign", token: fixture.admin, body: #"{"project":"default","key":"a.txt"}"#)
            #expect(reply.status == .ok, "\(reply.text)")
            #expect(reply.json["url"]?.string?.hasPrefix("https://team-results.s3.eu-west-1.amazonaws.com/default/a.txt?") == true)
            #expect(reply.json["url"]?.string?.contains("X-Amz-Credential=\(Self.accessKey)") == true)
            #expect(reply.text.contains(Self.secretKey) == false)
        }
    }

    @Test func aProjectPresignsOnlyInsideItsOwnPrefix() async throws {
        let fixture = try await Fixture.make()
        try await fixture.test { api in
            let alice = try await api.member("alice", of: "vision", role: "member")
            _ = try await api.member("bob", of: "speech", role: "admin")
            let victor = try await api.member("victor", of: "vision", role: "viewer")
            let mine = try await api.post("/v1/storage/presign", token: alice, body: #"{"project":"vision","key":"run-1/out.npy","method":"PUT"}"#)
            #expect(mine.status == .ok, "\(mine.text)")
            #expect(mine.json["bucketKey"]?.string == "vision/run-1/out.npy")
            #expect(mine.json["uri"]?.string == "s3://local/run-1/out.npy")
            #expect(mine.json["url"]?.string?.hasPrefix("http://localhost/s3/fastgpu-local/vision/run-1/out.npy?") == true)
            // Alice belongs to one project: it is the one meant when she names none.
            #expect(try await api.post("/v1/storage/presign", token: alice, body: #"{"key":"x"}"#).json["bucketKey"]?.string == "vision/x")
            // Another project is not found; a key that climbs out of the prefix is refused.
            #expect(try await api.post("/v1/storage/presign", token: alice, body: #"{"project":"speech","key":"x"}"#).status == .notFound)
            for key in ["../speech/x", "/speech/x", "a//b", "a/./b", "a\\b"] {
                let encoded = String(decoding: try JSONEncoder().encode(key), as: UTF8.self)
                let reply = try await api.post("/v1/storage/presign", token: alice, body: "{\"project\":\"vision\",\"key\":\(encoded)}")
                #expect(reply.status == .unprocessableContent, "\(key): \(reply.status)")
            }
            #expect(try await api.post("/v1/storage/presign", token: victor, body: #"{"project":"vision","key":"x","method":"PUT"}"#).status == .forbidden)
            #expect(try await api.post("/v1/storage/presign", token: victor, body: #"{"project":"vision","key":"x"}"#).status == .ok)
            for bad in [#"{"key":"x","method":"POST"}"#, #"{"key":"x","expiresSeconds":0}"#, #"{"key":"x","expiresSeconds":604801}"#, #"{"key":"x","backend":"nope"}"#] {
                let status = try await api.post("/v1/storage/presign", token: alice, body: bad).status
                #expect(status == .badRequest || status == .notFound, "\(bad): \(status)")
            }
        }
    }

    /// The local backend's `/s3` speaks enough S3 for FastGPU's own client, end to end over a
    /// real socket: the same round trips the moto suite runs, and its signature checks.
    @Test func theLocalBackendSpeaksS3AndChecksEverySignature() async throws {
        let fixture = try await Fixture.make()
        let credentials = try #require(await fixture.controlPlane.localStorageCredentials())
        let clock = fixture.clock
        let server = APIServer(controlPlane: fixture.controlPlane, metrics: APIMetrics(), limits: .unlimited, clock: clock,
                               localStorage: fixture.localStorage)
        let app = Application(router: server.makeRouter().router)
        try await app.test(.live) { client in
            let port = try #require(client.port)
            let now: @Sendable () -> AmzTime = { AmzTime(epochSeconds: clock.now().millisecondsSinceEpoch / 1000) }
            let endpoint = try S3Endpoint(url: "http://127.0.0.1:\(port)/s3", region: "local", bucket: LocalObjectStore.bucket, addressing: .path)
            let s3 = S3Client(endpoint: endpoint, credentials: credentials, http: Self.http, now: now)

            try await s3.putObject("vision/metrics.json", body: ByteBuffer(string: "{\"loss\":0.5}"), contentType: "application/json")
            #expect(String(buffer: try await s3.getObject("vision/metrics.json")) == "{\"loss\":0.5}")
            #expect(try await s3.headObject("vision/metrics.json")?.size == 12)
            #expect(try await s3.headObject("vision/absent") == nil)
            try await s3.putObject("vision/empty", body: ByteBuffer())
            #expect(try await s3.getObject("vision/empty").readableBytes == 0)
            for key in ["vision/my file.txt", "vision/modèle/模型.onnx", "vision/a+b=c.txt", "vision/../escape"] {
                try await s3.putObject(key, body: ByteBuffer(string: key))
                #expect(String(buffer: try await s3.getObject(key)) == key)
            }
            let listed = try await s3.listAllObjects(prefix: "vision/", pageSize: 2)
            #expect(listed.map(\.key) == ["vision/../escape", "vision/a+b=c.txt", "vision/empty", "vision/metrics.json", "vision/modèle/模型.onnx", "vision/my file.txt"])
            try await s3.deleteObject("vision/../escape")
            #expect(try await s3.headObject("vision/../escape") == nil)

            // A multipart upload in three parts comes back identical.
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("local-s3-\(UUID().uuidString)").path
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let random = try #require(FileHandle(forReadingAtPath: "/dev/urandom"))
            let bytes = try Self.read(random, count: 11 << 20)
            try random.close()
            try Data(bytes).write(to: URL(fileURLWithPath: directory + "/ckpt.bin"))
            var options = S3TransferOptions()
            options.partSizeBytes = 5 << 20
            let up = try await s3.uploadFile(at: directory + "/ckpt.bin", key: "vision/ckpt.bin", options: options)
            #expect(up.etag.hasSuffix("-3\""))
            let down = try await s3.downloadFile("vision/ckpt.bin", to: directory + "/back.bin")
            #expect(down.sha256 == up.sha256 && down.size == Int64(bytes.count))

            // Wrong key, unsigned, stale: refused, and nothing written.
            let forged = S3Client(endpoint: endpoint, credentials: S3Credentials(accessKeyID: credentials.accessKeyID, secretAccessKey: "guess"), http: Self.http, now: now)
            await #expect(throws: S3Error.service(status: 403, code: "SignatureDoesNotMatch",
                                                  message: "The request signature we calculated does not match the signature you provided")) {
                try await forged.putObject("vision/forged", body: ByteBuffer(string: "x"))
            }
            let stale = S3Client(endpoint: endpoint, credentials: credentials, http: Self.http, now: { AmzTime(epochSeconds: now().epochSeconds - 3600) })
            await #expect { try await stale.putObject("vision/stale", body: ByteBuffer(string: "x")) } throws: { error in
                (error as? S3Error).map { if case .service(403, "RequestTimeTooSkewed", _) = $0 { true } else { false } } ?? false
            }
            var unsigned = HTTPClientRequest(url: "http://127.0.0.1:\(port)/s3/\(LocalObjectStore.bucket)/vision/metrics.json")
            unsigned.method = .GET
            #expect(try await Self.http.execute(unsigned, timeout: .seconds(10)).status.code == 403)
            #expect(try await s3.headObject("vision/forged") == nil)

            // A presigned URL from the API: good for its object until it expires, for nothing else.
            let alice = try await Self.member(client, fixture: fixture)
            let presigned = try await client.execute(uri: "/v1/storage/presign", method: .post,
                                                     headers: [.authorization: "Bearer \(alice)", .contentType: "application/json"],
                                                     body: ByteBuffer(string: #"{"project":"vision","key":"shared/result.npy","method":"PUT","expiresSeconds":60}"#))
            let url = try #require(JSONValue.parse(String(buffer: presigned.body))?["url"]?.string)
            // The URL names the server as the caller reached it (the test client says `localhost`).
            #expect(url.hasPrefix("http://localhost/s3/fastgpu-local/vision/shared/result.npy?"), "\(url)")
            let direct = url.replacingOccurrences(of: "http://localhost/", with: "http://127.0.0.1:\(port)/")
            func put(_ target: String, host: String = "localhost") async throws -> UInt {
                var request = HTTPClientRequest(url: target)
                request.method = .PUT
                request.headers.replaceOrAdd(name: "Host", value: host)
                request.body = .bytes(ByteBuffer(string: "array bytes"))
                return try await Self.http.execute(request, timeout: .seconds(10)).status.code
            }
            #expect(try await put(direct) == 200)
            #expect(String(buffer: try await s3.getObject("vision/shared/result.npy")) == "array bytes")
            #expect(try await put(direct.replacingOccurrences(of: "/vision/shared/", with: "/speech/shared/")) == 403, "the URL names one object")
            clock.advance(by: .seconds(61))
            #expect(try await put(direct) == 403, "an expired URL")
        }
    }

    @Test func abandonedUploadsAndTemporaryFilesGoAfterADay() async throws {
        let fixture = try await Fixture.make()
        let store = fixture.localStorage
        let bucket = LocalObjectStore.bucket
        let old = try store.createUpload(bucket: bucket, key: "vision/old.bin", contentType: nil)
        let recent = try store.createUpload(bucket: bucket, key: "vision/new.bin", contentType: nil)
        let now = Date()
        try FileManager.default.setAttributes([.modificationDate: now.addingTimeInterval(-2 * 86400)],
                                              ofItemAtPath: store.root + "/\(bucket)/uploads/\(old)")
        #expect(store.sweepAbandoned(in: bucket, now: now) == ["uploads/\(old)"])
        await #expect(throws: S3Error.self) { _ = try await store.putPart(bucket: bucket, key: "vision/old.bin", uploadID: old, number: 1,
                                                                           body: Self.oneChunk("x"), expectedSHA256: nil) }
        #expect(try await store.putPart(bucket: bucket, key: "vision/new.bin", uploadID: recent, number: 1,
                                        body: Self.oneChunk("x"), expectedSHA256: nil) == "\"9dd4e461268c8034f5c8564e155c67a6\"")
    }

    static func oneChunk(_ text: String) -> AsyncStream<ByteBuffer> {
        AsyncStream { continuation in
            continuation.yield(ByteBuffer(string: text))
            continuation.finish()
        }
    }

    static func member(_ client: some TestClientProtocol, fixture: Fixture) async throws -> String {
        let admin: HTTPFields = [.authorization: "Bearer \(fixture.admin)", .contentType: "application/json"]
        _ = try await client.execute(uri: "/v1/projects", method: .post, headers: admin, body: ByteBuffer(string: #"{"name":"vision"}"#))
        _ = try await client.execute(uri: "/v1/projects/vision/members/alice", method: .put, headers: admin, body: ByteBuffer(string: #"{"role":"member"}"#))
        let token = try await client.execute(uri: "/v1/tokens", method: .post, headers: admin, body: ByteBuffer(string: #"{"name":"alice","subject":"alice"}"#))
        return try #require(JSONValue.parse(String(buffer: token.body))?["token"]?.string)
    }

    /// `count` bytes from `file` (a device may give fewer per read).
    static func read(_ file: FileHandle, count: Int) throws -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(count)
        while bytes.count < count, let data = try file.read(upToCount: count - bytes.count), !data.isEmpty { bytes += data }
        return bytes
    }
}
