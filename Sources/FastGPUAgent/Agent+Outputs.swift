import AsyncHTTPClient
import FastGPUStorage
import FastGPUWire
import Foundation

/// Job outputs: once an allocation's process has exited (and its GPUs are back with the
/// scheduler), its output directories go to their buckets, file by file, then a `manifest.json`
/// (size and SHA-256 of every file) as the commit marker; the control plane hears how it went.
///
/// The uploads come with the assignments, so a retry or a restart of the agent needs no state
/// of its own: the files stay in the allocation's directory until the upload is settled.
extension Agent {
    func queueUploads(_ uploads: [UploadAssignmentWire]) {
        uploadsListed = Set(uploads.map(\.allocation))
        let listed = Set(uploads.map(Self.uploadKey))
        // Gone from the list: settled by the control plane. A retry comes with a new generation.
        uploadsReported.formIntersection(listed)
        uploadQueue = Dictionary(uploads.filter { !uploadsReported.contains(Self.uploadKey($0)) }.map { ($0.allocation, $0) },
                                 uniquingKeysWith: { first, _ in first })
        if !uploadQueue.isEmpty { uploadWake?.yield() }
    }

    /// How long an ended allocation's directory (its outputs, logs, exit code) stays on the node:
    /// a failed upload can be retried from it until then.
    static let keepEndedAllocations: TimeInterval = 24 * 3600

    /// Removes, at most once an hour, the directories of allocations that ended more than a day
    /// ago and whose outputs are not waiting to be uploaded.
    func sweepAllocationDirectoriesHourly(now: Date = Date()) {
        if let lastSweep, now.timeIntervalSince(lastSweep) < 3600 { return }
        lastSweep = now
        var busy = Set(state?.workloads.keys.map { $0 } ?? [])
        busy.formUnion(uploadsListed)   // the queue is drawn from this list
        if let uploadingNow { busy.insert(uploadingNow) }
        for directory in Self.expiredAllocationDirectories(in: configuration.dataDirectory + "/allocations", keep: Self.keepEndedAllocations,
                                                           now: now, busy: busy) {
            do {
                try FileManager.default.removeItem(atPath: directory)
                logger.info("removed \(directory): its allocation ended more than a day ago")
            } catch {
                logger.warning("cannot remove \(directory): \(error)")
            }
        }
    }

    /// The directories under `root` of allocations that are not `busy` and whose exit code was
    /// written more than `keep` seconds before `now`. One without an exit code (never started,
    /// or still running) is never chosen.
    static func expiredAllocationDirectories(in root: String, keep: TimeInterval, now: Date, busy: Set<UInt64>) -> [String] {
        let files = FileManager.default
        return ((try? files.contentsOfDirectory(atPath: root)) ?? []).sorted().compactMap { name in
            guard let id = UInt64(name), !busy.contains(id),
                  let ended = (try? files.attributesOfItem(atPath: root + "/" + name + "/exit-code"))?[.modificationDate] as? Date,
                  now.timeIntervalSince(ended) > keep else { return nil }
            return root + "/" + name
        }
    }

    /// The `local` backend: the control plane this agent talks to, at `/s3`.
    var localStorageURL: String { configuration.server.trimmingSuffix("/") + "/s3" }

    static func uploadKey(_ upload: UploadAssignmentWire) -> String { "\(upload.allocation):\(upload.generation)" }

    /// Uploads one allocation's outputs at a time, as they are listed.
    func uploadLoop() async throws {
        let (wakeups, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        uploadWake = wake
        let storageHTTP = S3Client.makeHTTPClient()
        for await _ in wakeups {
            if Task.isCancelled { break }
            while let upload = uploadQueue.values.min(by: { $0.allocation < $1.allocation }), !Task.isCancelled {
                uploadQueue[upload.allocation] = nil
                uploadingNow = upload.allocation
                await perform(upload, http: storageHTTP)
                uploadingNow = nil
            }
        }
        try? await storageHTTP.shutdown()
    }

    func perform(_ upload: UploadAssignmentWire, http: HTTPClient) async {
        guard let state else { return }
        let directory = configuration.dataDirectory + "/allocations/\(upload.allocation)"
        var files = 0
        var bytes: Int64 = 0
        var failure: String?
        for output in upload.outputs {
            do {
                let moved = try await self.upload(output, from: directory, taskDirectory: upload.taskDirectory, job: upload.job,
                                                  allocation: upload.allocation, http: http)
                files += moved.files
                bytes += moved.bytes
            } catch {
                failure = "\(output.path) → \(output.uri)\(upload.taskDirectory): \(error)"
                break
            }
        }
        if let failure {
            logger.warning("outputs of allocation \(upload.allocation) could not be uploaded: \(failure)")
        } else {
            logger.info("outputs of allocation \(upload.allocation) uploaded: \(files) files, \(bytes) bytes")
        }
        do {
            try await client.reportOutputs(node: state.nodeID, token: state.token, allocation: upload.allocation, uploaded: failure == nil,
                                           error: failure, files: files, bytes: bytes)
            uploadsReported.insert(Self.uploadKey(upload))
        } catch let refused as AgentClient.Failure where refused.status == 409 {
            // Settled already (the node went down meanwhile, the job was cancelled): nothing to say.
            uploadsReported.insert(Self.uploadKey(upload))
        } catch {
            // Not heard: the next assignments list it again and it is uploaded again (same keys).
            logger.warning("the outputs report of allocation \(upload.allocation) failed: \(error)")
        }
    }

    /// One output directory (or file) into its prefix, then its manifest.
    func upload(_ output: OutputUploadWire, from allocationDirectory: String, taskDirectory: String, job: UInt64, allocation: UInt64,
                http: HTTPClient) async throws -> (files: Int, bytes: Int64) {
        let backend = output.backend
        let endpointURL = backend.endpoint.isEmpty ? localStorageURL : backend.endpoint
        let endpoint = try S3Endpoint(url: endpointURL, region: backend.region, bucket: backend.bucket,
                                      addressing: S3Endpoint.Addressing(rawValue: backend.addressing) ?? .path)
        let s3 = S3Client(endpoint: endpoint, credentials: S3Credentials(accessKeyID: backend.accessKeyID, secretAccessKey: backend.secretAccessKey,
                                                                         sessionToken: backend.sessionToken), http: http)
        let root = try Self.outputRoot(output.path, work: allocationDirectory + "/work")
        let prefix = output.keyPrefix + taskDirectory
        var manifest: [OutputManifestWire.File] = []
        var bytes: Int64 = 0
        for (relative, path) in try Self.regularFiles(under: root) {
            let moved = try await s3.uploadFile(at: path, key: prefix + relative)
            manifest.append(OutputManifestWire.File(path: relative, size: moved.size, sha256: moved.sha256))
            bytes += moved.size
        }
        // Last: a reader that finds the manifest finds every file it names.
        let body = try JSONEncoder().encode(OutputManifestWire(job: job, allocation: allocation, files: manifest))
        try await s3.putObject(prefix + "manifest.json", body: .init(bytes: body), contentType: "application/json")
        return (manifest.count, bytes)
    }

    /// Where an output's path is on this node: in the job's work directory (where its command
    /// runs; a container sees it as `/fastgpu/work`), and nowhere else, symbolic links resolved:
    /// the agent reads as root, the job does not.
    static func outputRoot(_ path: String, work: String) throws -> String {
        let containerWork = "/fastgpu/work"
        let relative: String
        if path == containerWork || path.hasPrefix(containerWork + "/") {
            relative = String(path.dropFirst(containerWork.count))
        } else if path.hasPrefix("/") {
            throw S3Error.invalid("an output's path is in the job's working directory, not \(path)")
        } else {
            relative = "/" + path
        }
        let realWork = URL(fileURLWithPath: work).resolvingSymlinksInPath().path
        let resolved = URL(fileURLWithPath: work + relative).resolvingSymlinksInPath().path
        guard resolved == realWork || resolved.hasPrefix(realWork + "/") else {
            throw S3Error.invalid("\(path) leads out of the job's working directory")
        }
        return resolved
    }

    /// Every regular file under `root` (or `root` itself when it is a file), with its path
    /// relative to `root`, in order. Symbolic links are not followed: a job cannot make its
    /// agent upload what lies outside its directory. A directory that does not exist is empty
    /// (the job wrote nothing there).
    static func regularFiles(under root: String) throws -> [(relative: String, path: String)] {
        let files = FileManager.default
        var isDirectory: ObjCBool = false
        guard files.fileExists(atPath: root, isDirectory: &isDirectory) else { return [] }
        let attributes = try files.attributesOfItem(atPath: root)
        if attributes[.type] as? FileAttributeType == .typeRegular {
            return [((root as NSString).lastPathComponent, root)]
        }
        guard isDirectory.boolValue, attributes[.type] as? FileAttributeType == .typeDirectory else { return [] }
        var found: [(String, String)] = []
        var pending = [""]
        while let relative = pending.popLast() {
            let directory = relative.isEmpty ? root : root + "/" + relative
            for name in try files.contentsOfDirectory(atPath: directory).sorted() {
                let child = relative.isEmpty ? name : relative + "/" + name
                let type = try files.attributesOfItem(atPath: root + "/" + child)[.type] as? FileAttributeType
                if type == .typeDirectory { pending.append(child) } else if type == .typeRegular { found.append((child, root + "/" + child)) }
                guard found.count <= 100_000 else { throw S3Error.invalid("more than 100000 files under \(root)") }
            }
        }
        return found.sorted { $0.0 < $1.0 }
    }
}

extension String {
    func trimmingSuffix(_ suffix: String) -> String { hasSuffix(suffix) ? String(dropLast(suffix.count)) : self }
}
