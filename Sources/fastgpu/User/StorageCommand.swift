import ArgumentParser
import AsyncHTTPClient
import FastGPUClient
import FastGPUWire
import Foundation
import NIOCore

/// `fastgpu storage`: buckets results go to, and objects of a project's prefix moved by
/// presigned URL (the CLI never holds a backend's credentials).
struct StorageCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "storage",
        abstract: "Storage backends (S3-compatible buckets, and the server's own `local`) and a project's objects in them.",
        subcommands: [List.self, Add.self, Remove.self, Presign.self, Copy.self],
        defaultSubcommand: List.self)

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "ls", abstract: "The storage backends (never their credentials).")
        @OptionGroup var connection: ClientOptions
        @OptionGroup var format: OutputOptions

        func run() async throws {
            let backends = try await connection.client().storageBackends()
            if format.json { return try Output.json(backends) }
            Output.write(Output.table(["NAME", "KIND", "ENDPOINT", "BUCKET", "DEFAULT"], backends.items.map {
                [$0.name, $0.kind, $0.endpoint.isEmpty ? "(this server, /s3)" : $0.endpoint, $0.bucket, $0.isDefault ? "yes" : ""]
            }))
        }
    }

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "add", abstract: "Add or replace an S3-compatible backend (cluster admins).",
            discussion: """
                The keys come from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN), never from \
                arguments (arguments show in ps and shell history). The server seals them at once.
                  AWS_ACCESS_KEY_ID=… AWS_SECRET_ACCESS_KEY=… fastgpu storage add results \\
                    --endpoint https://s3.eu-west-1.amazonaws.com --region eu-west-1 --bucket team-results --virtual-host --default
                """)
        @OptionGroup var connection: ClientOptions
        @Argument(help: "The backend's name (lower-case letters, digits, '-').") var name: String
        @Option(help: ArgumentHelp("http(s)://HOST[:PORT][/PATH]", valueName: "url")) var endpoint: String
        @Option(help: "The bucket.") var bucket: String
        @Option(help: "The region signatures name.") var region = "us-east-1"
        @Flag(help: "Address the bucket in the host name (AWS, OSS) instead of the path (MinIO, Ceph).") var virtualHost = false
        @Flag(name: .customLong("default"), help: "Use it when a request names no backend.") var isDefault = false

        func run() async throws {
            let environment = ProcessInfo.processInfo.environment
            guard let keyID = environment["AWS_ACCESS_KEY_ID"], let secret = environment["AWS_SECRET_ACCESS_KEY"] else {
                throw CommandFailure("set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY for the backend's keys")
            }
            let backend = try await connection.client().setStorageBackend(name, StorageBackendBody(
                endpoint: endpoint, region: region, bucket: bucket, addressing: virtualHost ? "virtual-host" : "path",
                accessKeyID: keyID, secretAccessKey: secret, sessionToken: environment["AWS_SESSION_TOKEN"], isDefault: isDefault))
            Output.write("storage backend \(backend.name) stored (\(backend.bucket) at \(backend.endpoint))\n")
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "rm", abstract: "Remove a backend (its bucket's objects stay).")
        @OptionGroup var connection: ClientOptions
        @Argument(help: "The backend.") var name: String

        func run() async throws {
            try await connection.client().removeStorageBackend(name)
            Output.write("storage backend \(name) removed\n")
        }
    }

    struct Presign: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "presign", abstract: "A URL for one object of the project's prefix that works without credentials.")
        @OptionGroup var connection: ClientOptions
        @OptionGroup var format: OutputOptions
        @Argument(help: "The key, under the project's prefix.") var key: String
        @Option(help: "The project whose prefix the key is under (default: the saved one, else `default`).") var project: String?
        @Option(help: "The backend (the default, when left out).") var backend: String?
        @Option(help: "GET, PUT, HEAD or DELETE.") var method = "GET"
        @Option(help: "Seconds the URL works (1 to 604800).") var expires = 900

        func run() async throws {
            let signed = try await connection.client().presign(PresignBody(project: project ?? ClientOptions.project(nil), backend: backend, key: key,
                                                                         method: method.uppercased(), expiresSeconds: expires))
            if format.json { return try Output.json(signed) }
            Output.write(signed.url + "\n")
        }
    }

    struct Copy: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "cp", abstract: "Copy a file to or from the project's prefix: one side is s3://BACKEND/KEY.",
            discussion: """
                fastgpu storage cp model.onnx s3://local/models/model.onnx
                fastgpu storage cp s3://local/run-1/out.npy ./out.npy
                Objects move by presigned URL in one request (at most 5 GiB).
                """)
        @OptionGroup var connection: ClientOptions
        @Argument(help: "From.") var source: String
        @Argument(help: "To.") var destination: String
        @Option(help: "The project whose prefix the key is under (default: the saved one, else `default`).") var project: String?

        static func parse(_ uri: String) -> (backend: String, key: String)? {
            guard uri.hasPrefix("s3://") else { return nil }
            let rest = uri.dropFirst(5)
            guard let slash = rest.firstIndex(of: "/"), slash != rest.startIndex, rest.index(after: slash) != rest.endIndex else { return nil }
            return (String(rest[..<slash]), String(rest[rest.index(after: slash)...]))
        }

        func run() async throws {
            let upload: Bool
            let object: (backend: String, key: String)
            switch (Self.parse(source), Self.parse(destination)) {
            case (nil, let to?): upload = true; object = to
            case (let from?, nil): upload = false; object = from
            default: throw CommandFailure("one side is s3://BACKEND/KEY and the other a local file")
            }
            let local = upload ? source : destination
            let signed = try await connection.client().presign(PresignBody(project: project ?? ClientOptions.project(nil), backend: object.backend, key: object.key,
                                                                         method: upload ? "PUT" : "GET", expiresSeconds: 3600))
            let http = HTTPClient(eventLoopGroupProvider: .singleton)
            let outcome: Result<Int64, any Error>
            do { outcome = .success(try await transfer(http, url: signed.url, upload: upload, local: local)) } catch { outcome = .failure(error) }
            try? await http.shutdown()
            let bytes = try outcome.get()
            Output.write(upload ? "\(local) → \(signed.uri) (\(bytes) bytes)\n" : "\(signed.uri) → \(local) (\(bytes) bytes)\n")
        }

        func transfer(_ http: HTTPClient, url: String, upload: Bool, local: String) async throws -> Int64 {
            if upload {
                guard let file = FileHandle(forReadingAtPath: local) else { throw CommandFailure("cannot read \(local)") }
                defer { try? file.close() }
                let size = try file.seekToEnd()
                guard size <= 5 << 30 else { throw CommandFailure("\(local) is over 5 GiB; one presigned PUT moves at most 5 GiB") }
                try file.seek(toOffset: 0)
                var request = HTTPClientRequest(url: url)
                request.method = .PUT
                request.body = .stream(FileChunks(path: local), length: .known(Int64(size)))
                let response = try await http.execute(request, timeout: .seconds(3600))
                guard response.status.code < 300 else {
                    throw CommandFailure("the upload was refused: \(response.status.code) \(String(buffer: try await response.body.collect(upTo: 4096)).prefix(300))")
                }
                return Int64(size)
            }
            let response = try await http.execute(HTTPClientRequest(url: url), timeout: .seconds(3600))
            guard response.status.code < 300 else {
                throw CommandFailure("the download was refused: \(response.status.code) \(String(buffer: try await response.body.collect(upTo: 4096)).prefix(300))")
            }
            let partial = local + ".partial"
            guard FileManager.default.createFile(atPath: partial, contents: nil), let out = FileHandle(forWritingAtPath: partial) else {
                throw CommandFailure("cannot write \(local)")
            }
            var size: Int64 = 0
            do {
                defer { try? out.close() }
                for try await chunk in response.body {
                    size += Int64(chunk.readableBytes)
                    try out.write(contentsOf: Data(chunk.readableBytesView))
                }
            } catch {
                try? FileManager.default.removeItem(atPath: partial)
                throw error
            }
            try? FileManager.default.removeItem(atPath: local)
            try FileManager.default.moveItem(atPath: partial, toPath: local)
            return size
        }
    }
}

/// A file read a MiB at a time, only as fast as the request sends it.
struct FileChunks: AsyncSequence, Sendable {
    typealias Element = ByteBuffer
    let path: String

    struct AsyncIterator: AsyncIteratorProtocol {
        let file: FileHandle?

        mutating func next() async throws -> ByteBuffer? {
            guard let file, let data = try file.read(upToCount: 1 << 20), !data.isEmpty else {
                try? file?.close()
                return nil
            }
            return ByteBuffer(bytes: data)
        }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(file: FileHandle(forReadingAtPath: path)) }
}
