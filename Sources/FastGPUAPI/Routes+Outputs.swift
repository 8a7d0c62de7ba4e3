import AsyncHTTPClient
import FastGPUControlPlane
import FastGPUModel
import FastGPUStorage
import FastGPUWire
import Foundation
import Hummingbird
import HTTPTypes
import NIOCore

/// A job's outputs: what is in the bucket (read from the manifests the agents wrote last), and
/// a retry of uploads that failed.
extension APIServer {
    /// Reads buckets for the outputs listing; lives as long as the process.
    static let storageHTTP = S3Client.makeHTTPClient()
    static let maxListedFiles = 10_000

    func outputRoutes(_ route: RouteBuilder) {
        let cp = controlPlane
        let clock = self.clock
        let scheme = self.scheme
        let localStorage = self.localStorage

        route(.get, "/v1/jobs/{id}/outputs") { request, context in
            let principal = try context.requirePrincipal()
            let (job, outputs) = try await cp.outputTargets(of: try jobID(context), by: principal)
            let now = AmzTime(epochSeconds: clock.now().millisecondsSinceEpoch / 1000)
            var listed: [JobOutputWire] = []
            var budget = Self.maxListedFiles
            for output in outputs {
                let endpoint = try Self.endpoint(of: output.backend, reachedAt: request.head.authority ?? "localhost", scheme: scheme)
                let manifests: [(directory: String, manifest: OutputManifestWire)]
                do {
                    manifests = try await Self.manifests(under: output.target.keyPrefix, backend: output.backend, local: localStorage)
                } catch {
                    throw APIProblem(status: .badGateway, title: "Storage unreachable",
                                     detail: "the outputs of \(output.target.uri) could not be read from backend \(output.target.backend): \(error)")
                }
                var files: [OutputFileWire] = []
                for (directory, manifest) in manifests {
                    for file in manifest.files.prefix(budget) {
                        let key = output.target.keyPrefix + directory + file.path
                        let url = (try? S3Client.presignedURL("GET", key: key, endpoint: endpoint, credentials: output.backend.credentials,
                                                              expiresSeconds: 900, at: now)) ?? ""
                        files.append(OutputFileWire(path: directory + file.path, size: file.size, sha256: file.sha256, url: url))
                    }
                    budget -= min(budget, manifest.files.count)
                }
                // Whole once no upload is pending or failed and a manifest (written last) is in.
                listed.append(JobOutputWire(path: output.target.path, uri: output.target.uri, when: output.target.when.rawValue,
                                            complete: job.pendingUploads.isEmpty && job.failedUploads.isEmpty && !manifests.isEmpty,
                                            files: files))
            }
            return try json(JobOutputsWire(job: job.id.rawValue, state: job.state.rawValue, outputs: listed))
        }
        route(.post, "/v1/jobs/{id}/outputs/retry") { _, context in
            let principal = try context.requirePrincipal()
            let view = try await cp.retryUploads(of: try jobID(context), by: principal)
            return try json(Wire.job(view, now: clock.now()))
        }
    }

    /// Every `manifest.json` under `prefix` (one per task that uploaded), with the directory it
    /// sits in relative to `prefix`.
    static func manifests(under prefix: String, backend: ResolvedObject, local: LocalObjectStore?) async throws -> [(directory: String, manifest: OutputManifestWire)] {
        var keys: [String] = []
        var read: (String) async throws -> ByteBuffer
        if backend.endpoint == nil {
            guard let local else { return [] }
            // One pass: every page of the local bucket's listing reads all of its descriptions.
            keys = local.list(bucket: backend.bucket, prefix: prefix, startAfter: nil, maxKeys: .max).objects.map(\.key).filter { $0.hasSuffix("manifest.json") }
            read = { key in
                guard let object = local.object(bucket: backend.bucket, key: key), let data = FileManager.default.contents(atPath: object.path) else {
                    throw S3Error.service(status: 404, code: "NoSuchKey", message: "")
                }
                return ByteBuffer(bytes: data)
            }
        } else {
            let s3 = S3Client(endpoint: backend.endpoint!, credentials: backend.credentials, http: storageHTTP)
            keys = try await s3.listAllObjects(prefix: prefix).map(\.key).filter { $0.hasSuffix("manifest.json") }
            read = { key in try await s3.getObject(key, maxBytes: 16 << 20) }
        }
        var found: [(directory: String, manifest: OutputManifestWire)] = []
        for key in keys.sorted() {
            let directory = String(key.dropFirst(prefix.count).dropLast("manifest.json".count))
            // Only the manifests FastGPU writes: at the output's root, or one task directory down.
            guard directory.isEmpty || (directory.hasPrefix("task-") && directory.filter({ $0 == "/" }).count == 1) else { continue }
            let body = try await read(key)
            guard let manifest = try? JSONDecoder().decode(OutputManifestWire.self, from: Data(body.readableBytesView)) else { continue }
            found.append((directory, manifest))
        }
        return found
    }
}
