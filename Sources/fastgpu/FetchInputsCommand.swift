import ArgumentParser
import AsyncHTTPClient
import FastGPUStorage
import FastGPUWire
import Foundation

/// Run by the agent's wrapper before a job's command: downloads the job's inputs (an object, or
/// every object under a prefix) into its working directory, owned by the job's user. What it
/// says goes to the job's stderr; a failure fails the job before it starts.
struct FetchInputsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "fetch-inputs", abstract: "(internal) download a job's inputs before it starts.",
                                                    shouldDisplay: false)

    @Option(help: "The inputs (JSON, with the backends' keys).") var spec: String
    @Option(help: "The job's working directory.") var into: String
    @Option(help: "The job's user, who will own the files.") var uid: UInt32?

    func run() async throws {
        guard let data = FileManager.default.contents(atPath: spec),
              let inputs = try? JSONDecoder().decode([InputDownloadWire].self, from: data) else {
            throw CommandFailure("fastgpu: the job's inputs cannot be read")
        }
        let http = S3Client.makeHTTPClient()
        let outcome: Result<Void, any Error>
        do { try await fetch(inputs, http: http); outcome = .success(()) } catch { outcome = .failure(error) }
        try? await http.shutdown()
        try outcome.get()
    }

    func fetch(_ inputs: [InputDownloadWire], http: HTTPClient) async throws {
        let work = URL(fileURLWithPath: into).resolvingSymlinksInPath().path
        for input in inputs {
            let backend = input.backend
            let s3: S3Client
            do {
                let endpoint = try S3Endpoint(url: backend.endpoint, region: backend.region, bucket: backend.bucket,
                                              addressing: S3Endpoint.Addressing(rawValue: backend.addressing) ?? .path)
                s3 = S3Client(endpoint: endpoint, credentials: S3Credentials(accessKeyID: backend.accessKeyID, secretAccessKey: backend.secretAccessKey,
                                                                             sessionToken: backend.sessionToken), http: http)
            } catch {
                throw CommandFailure("fastgpu: cannot download \(input.uri): \(error)")
            }
            let target = try Self.place(input.path, in: work)
            var files = 0
            var bytes: Int64 = 0
            do {
                if input.key.hasSuffix("/") {
                    for object in try await s3.listAllObjects(prefix: input.key) where !object.key.hasSuffix("/") {
                        let relative = String(object.key.dropFirst(input.key.count))
                        guard !relative.split(separator: "/").contains(".."), !relative.hasPrefix("/") else { continue }
                        let path = try Self.place(relative, in: target)
                        try makeParent(of: path, in: work)
                        bytes += try await s3.downloadFile(object.key, to: path).size
                        files += 1
                    }
                } else {
                    try makeParent(of: target, in: work)
                    bytes += try await s3.downloadFile(input.key, to: target).size
                    files = 1
                }
            } catch {
                throw CommandFailure("fastgpu: cannot download \(input.uri): \(error)")
            }
            try own(target)
            FileHandle.standardError.write(Data("fastgpu: downloaded \(input.uri) to \(input.path) (\(files) file\(files == 1 ? "" : "s"), \(bytes) bytes)\n".utf8))
        }
    }

    /// `path` under `directory`, refused when it would leave it (a container's `/fastgpu/work/…` is the work directory).
    static func place(_ path: String, in directory: String) throws -> String {
        let relative = path.hasPrefix("/fastgpu/work") ? String(path.dropFirst("/fastgpu/work".count)) : path
        let joined = (directory + "/" + relative).replacingOccurrences(of: "//", with: "/")
        let resolved = URL(fileURLWithPath: joined).resolvingSymlinksInPath().path
        guard resolved == directory || resolved.hasPrefix(directory + "/") else { throw CommandFailure("fastgpu: \(path) leads out of the job's working directory") }
        return resolved
    }

    /// Creates the directories above `path` (inside `work`), owned by the job's user.
    func makeParent(of path: String, in work: String) throws {
        var parent = (path as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true)
        while parent.hasPrefix(work + "/") {
            if let uid { _ = chown(parent, uid, uid) }
            parent = (parent as NSString).deletingLastPathComponent
        }
    }

    /// Gives what was downloaded to the job's user: a file, or a directory and all in it.
    func own(_ path: String) throws {
        guard let uid else { return }
        _ = chown(path, uid, uid)
        guard let children = FileManager.default.enumerator(atPath: path) else { return }
        for case let child as String in children { _ = chown(path + "/" + child, uid, uid) }
    }
}
