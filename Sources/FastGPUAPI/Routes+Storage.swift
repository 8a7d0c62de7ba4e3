import FastGPUControlPlane
import FastGPUModel
import FastGPUStorage
import FastGPUWire
import Foundation
import Hummingbird
import HTTPTypes
import NIOCore

extension APIServer {
    /// Storage backends (cluster admins add them) and presigned URLs for a project's objects.
    func storageRoutes(_ route: RouteBuilder) {
        let cp = controlPlane
        let clock = self.clock
        let scheme = self.scheme

        route(.get, "/v1/storage/backends") { _, context in
            let principal = try context.requirePrincipal()
            return try json(StorageBackendListWire(items: try await cp.storageBackends(by: principal).map(Wire.storageBackend)))
        }
        route(.put, "/v1/storage/backends/{name}") { request, context in
            let principal = try context.requirePrincipal()
            var request = request
            let body = try decode(StorageBackendBody.self, from: try await body(of: &request))
            let view = try await cp.setStorageBackend(
                ControlPlane.StorageBackendRequest(
                    name: try pathParameter(context, "name"), endpoint: body.endpoint, region: body.region, bucket: body.bucket,
                    addressing: body.addressing ?? "path",
                    credentials: S3Credentials(accessKeyID: body.accessKeyID, secretAccessKey: body.secretAccessKey, sessionToken: body.sessionToken),
                    isDefault: body.isDefault ?? false),
                by: principal)
            return try json(Wire.storageBackend(view))
        }
        route(.delete, "/v1/storage/backends/{name}") { _, context in
            let principal = try context.requirePrincipal()
            try await cp.removeStorageBackend(try pathParameter(context, "name"), by: principal)
            return Response(status: .noContent)
        }
        route(.post, "/v1/storage/presign") { request, context in
            let principal = try context.requirePrincipal()
            var request = request
            let body = try decode(PresignBody.self, from: try await body(of: &request))
            guard ["GET", "PUT", "HEAD", "DELETE"].contains(body.method) else {
                throw APIProblem(status: .badRequest, title: "Bad request", detail: "method must be GET, PUT, HEAD or DELETE")
            }
            guard (1...SigV4Signer.maxPresignSeconds).contains(body.expiresSeconds) else {
                throw APIProblem(status: .badRequest, title: "Bad request", detail: "expiresSeconds must be 1 to 604800 (7 days)")
            }
            let object = try await cp.resolveObject(project: body.project, backend: body.backend, key: body.key,
                                                    write: body.method == "PUT" || body.method == "DELETE", by: principal)
            let endpoint = try Self.endpoint(of: object, reachedAt: request.head.authority, scheme: scheme)
            let now = clock.now()
            let url = try S3Client.presignedURL(body.method, key: object.key, endpoint: endpoint, credentials: object.credentials,
                                                expiresSeconds: body.expiresSeconds, at: AmzTime(epochSeconds: now.millisecondsSinceEpoch / 1000))
            let relative = String(object.key.dropFirst(object.prefix.count))
            return try json(PresignWire(url: url, method: body.method, backend: object.backend, bucketKey: object.key,
                                        uri: "s3://\(object.backend)/\(relative)",
                                        expiresAt: Wire.time(Timestamp(millisecondsSinceEpoch: now.millisecondsSinceEpoch + Int64(body.expiresSeconds) * 1000))))
        }
    }
}

extension APIServer {
    /// Where a caller reaches `object`'s backend: its endpoint, or for `local` this server as the
    /// caller reached it (`authority`), at `/s3`.
    static func endpoint(of object: ResolvedObject, reachedAt authority: String?, scheme: String) throws -> S3Endpoint {
        if let remote = object.endpoint { return remote }
        guard let authority else { throw APIProblem(status: .badRequest, title: "Bad request", detail: "the request names no Host") }
        do {
            return try S3Endpoint(url: "\(scheme)://\(authority)/s3", region: object.region, bucket: object.bucket, addressing: .path)
        } catch {
            throw APIProblem(status: .badRequest, title: "Bad request", detail: "the Host header is not one this server can sign for")
        }
    }
}

extension Wire {
    static func upload(_ upload: UploadAssignment) -> UploadAssignmentWire {
        UploadAssignmentWire(allocation: upload.allocation.rawValue, job: upload.job.rawValue,
                             taskDirectory: upload.taskCount > 1 ? "task-\(upload.task.group).\(upload.task.index)/" : "", generation: upload.generation,
                             outputs: upload.outputs.map { output in
                                 OutputUploadWire(path: output.target.path, uri: output.target.uri, keyPrefix: output.target.keyPrefix,
                                                  backend: backendAccess(output.backend))
                             })
    }

    static func backendAccess(_ object: ResolvedObject) -> BackendAccessWire {
        BackendAccessWire(name: object.backend, endpoint: object.endpoint?.url ?? "", region: object.region, bucket: object.bucket,
                          addressing: object.addressing.rawValue, accessKeyID: object.credentials.accessKeyID,
                          secretAccessKey: object.credentials.secretAccessKey, sessionToken: object.credentials.sessionToken)
    }

    static func storageBackend(_ view: StorageBackendView) -> StorageBackendWire {
        StorageBackendWire(name: view.name, kind: view.kind, endpoint: view.endpoint, region: view.region, bucket: view.bucket,
                           addressing: view.addressing, isDefault: view.isDefault, createdAt: time(view.createdAt), createdBy: view.createdBy)
    }
}
