import FastGPUControlPlane
import FastGPUModel
import FastGPUStore
import FastGPUWire
import Foundation
import Hummingbird
import HTTPTypes
import NIOCore

extension APIServer {
    /// Tokens, and the audit log (cluster admins).
    func tokenRoutes(_ route: RouteBuilder) {
        let cp = controlPlane
        let clock = self.clock
        let longPolls = self.longPolls
        let limits = self.limits
        _ = (cp, clock, longPolls, limits)

        route(.get, "/v1/audit") { request, context in
            let principal = try context.requirePrincipal()
            let query = request.uri.queryParameters
            guard let after = Int64(nonEmpty(query["after"]) ?? "0"), after >= 0 else {
                throw APIProblem(status: .badRequest, title: "Bad request", detail: "after must be an audit sequence number")
            }
            guard let limit = Int(nonEmpty(query["limit"]) ?? "100"), (1...1000).contains(limit) else {
                throw APIProblem(status: .badRequest, title: "Bad request", detail: "limit must be 1 to 1000")
            }
            let subject = nonEmpty(query["subject"])
            if let subject, subject.utf8.count > 128 { throw APIProblem(status: .badRequest, title: "Bad request", detail: "subject is at most 128 bytes") }
            let records = try await cp.audit.records(after: after, limit: limit, subject: subject, by: principal)
            return try json(AuditListWire(items: records.map(Wire.audit), next: records.count == limit ? records.last?.sequence : nil))
        }

        // Tokens.
        route(.get, "/v1/tokens") { _, context in
            let principal = try context.requirePrincipal()
            return try json(TokenListWire(items: try await cp.listTokens(by: principal).map(Wire.token)))
        }
        route(.post, "/v1/tokens") { request, context in
            let principal = try context.requirePrincipal()
            var request = request
            let body = try decode(CreateTokenBody.self, from: try await body(of: &request))
            let kind: TokenKind
            switch body.kind ?? "user" {
            case "user": kind = .user
            case "join": kind = .join
            case let other: throw APIProblem(status: .badRequest, title: "Bad request", detail: "kind must be user or join, not \(other)")
            }
            if let seconds = body.expiresInSeconds, seconds <= 0 || seconds > Limits.seconds {
                throw APIProblem(status: .badRequest, title: "Bad request", detail: "expiresInSeconds must be 1 to \(Limits.seconds)")
            }
            let expiry = body.expiresInSeconds.map { clock.now() + .seconds($0) }
            let view = try await cp.createToken(name: body.name, kind: kind, subject: body.subject, clusterAdmin: body.clusterAdmin ?? false,
                                                expiresAt: expiry, by: principal)
            return try json(Wire.token(view), status: .created)
        }
        route(.post, "/v1/tokens/{id}/revoke") { _, context in
            let principal = try context.requirePrincipal()
            guard let id = UInt64(try context.parameters.require("id")) else {
                throw APIProblem(status: .badRequest, title: "Bad request", detail: "token id must be an integer")
            }
            return try json(Wire.token(try await cp.revokeToken(id, by: principal)))
        }
    }
}
