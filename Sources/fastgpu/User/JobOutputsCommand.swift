import ArgumentParser
import AsyncHTTPClient
import FastGPUClient
import FastGPUWire
import Foundation
import FastGPUStorage
import NIOCore

extension JobsCommand {
    /// `fastgpu jobs outputs`: what a job uploaded, fetched back, or its failed uploads tried again.
    struct Outputs: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "outputs", abstract: "A job's outputs in their bucket: list, download, retry a failed upload.",
            subcommands: [List.self, Get.self, Retry.self], defaultSubcommand: List.self)

        struct List: AsyncParsableCommand {
            static let configuration = CommandConfiguration(commandName: "ls", abstract: "The files of a job's outputs (from their manifests).")
            @OptionGroup var connection: ClientOptions
            @OptionGroup var format: OutputOptions
            @Argument(help: "The job.") var id: UInt64

            func run() async throws {
                let outputs = try await connection.client().jobOutputs(id)
                if format.json { return try Output.json(outputs) }
                for output in outputs.outputs {
                    Output.write("\(output.path) → \(output.uri)  (\(output.when); \(output.complete ? "complete" : outputs.state == "uploading" ? "uploading" : "incomplete"))\n")
                    Output.write(Output.table(["FILE", "SIZE", "SHA256"], output.files.map { [$0.path, String($0.size), String($0.sha256.prefix(16))] }))
                }
                if outputs.outputs.isEmpty { Output.write("job \(id) has no outputs\n") }
            }
        }

        struct Get: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                commandName: "get", abstract: "Download a job's outputs into a directory, checking each file's SHA-256.")
            @OptionGroup var connection: ClientOptions
            @Argument(help: "The job.") var id: UInt64
            @Option(help: ArgumentHelp("Where to put them (default: ./job-ID).", valueName: "dir")) var into: String?

            func run() async throws {
                let outputs = try await connection.client().jobOutputs(id)
                let root = into ?? "job-\(id)"
                let http = HTTPClient(eventLoopGroupProvider: .singleton)
                let outcome: Result<(Int, Int64), any Error>
                do { outcome = .success(try await download(outputs, into: root, http: http)) } catch { outcome = .failure(error) }
                try? await http.shutdown()
                let (files, bytes) = try outcome.get()
                Output.write("\(files) files, \(bytes) bytes in \(root)\n")
            }

            func download(_ outputs: JobOutputsWire, into root: String, http: HTTPClient) async throws -> (Int, Int64) {
                var files = 0
                var bytes: Int64 = 0
                for (index, output) in outputs.outputs.enumerated() {
                    let base = outputs.outputs.count > 1 ? root + "/\(index)-" + (output.path as NSString).lastPathComponent : root
                    for file in output.files {
                        // A manifest names paths under the output; none may climb out of the directory.
                        guard !file.path.hasPrefix("/"), !file.path.split(separator: "/").contains("..") else {
                            throw CommandFailure("the manifest names \(file.path), outside the output; not downloaded")
                        }
                        let target = base + "/" + file.path
                        try FileManager.default.createDirectory(atPath: (target as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
                        let response = try await http.execute(HTTPClientRequest(url: file.url), timeout: .seconds(3600))
                        guard response.status.code < 300 else { throw CommandFailure("\(file.path): the bucket answered \(response.status.code)") }
                        guard FileManager.default.createFile(atPath: target, contents: nil), let out = FileHandle(forWritingAtPath: target) else {
                            throw CommandFailure("cannot write \(target)")
                        }
                        var hasher = SHA256Hasher()
                        defer { try? out.close() }
                        for try await chunk in response.body {
                            let data = Data(chunk.readableBytesView)
                            hasher.update(data)
                            try out.write(contentsOf: data)
                        }
                        guard hasher.hex == file.sha256 else { throw CommandFailure("\(file.path): its SHA-256 is not the manifest's; the download is corrupt") }
                        files += 1
                        bytes += file.size
                    }
                }
                return (files, bytes)
            }
        }

        struct Retry: AsyncParsableCommand {
            static let configuration = CommandConfiguration(commandName: "retry", abstract: "Upload again the outputs that could not be uploaded.")
            @OptionGroup var connection: ClientOptions
            @Argument(help: "The job.") var id: UInt64

            func run() async throws {
                let job = try await connection.client().retryOutputs(id)
                Output.write("job \(job.id) is \(job.state): its agent uploads the outputs again\n")
            }
        }
    }
}
