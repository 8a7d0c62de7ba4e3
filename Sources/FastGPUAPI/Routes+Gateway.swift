import FastGPUControlPlane
import FastGPUModel
import FastGPUWire
import Foundation
import Hummingbird
import HTTPTypes

extension APIServer {
    /// What a gateway of its own (`fastgpu gateway --server URL`) needs: the routes (long-polled),
    /// a place for its load, and a yes or no on each caller. Cluster admins only.
    func gatewayRoutes(_ route: RouteBuilder) {
        let cp = controlPlane
        let longPolls = self.longPolls

        route(.get, "/v1/gateway/routes") { request, context in
            let principal = try context.requirePrincipal()
            let query = request.uri.queryParameters
            var after: UInt64 = 0
            if let text = nonEmpty(query["after"]) {
                guard let value = UInt64(text) else { throw APIProblem(status: .badRequest, title: "Bad request", detail: "after must be a non-negative integer", field: "after") }
                after = value
            }
            let wait = try nonEmpty(query["wait"]).map { try parseWait($0) } ?? .zero
            let (version, routes) = wait > .zero
                ? try await longPolls.hold(for: principal) { try await cp.gatewayRoutes(after: after, wait: wait, by: principal) }
                : try await cp.gatewayRoutes(after: after, wait: wait, by: principal)
            return try json(GatewayRoutesWire(version: version, services: routes.map { r in
                GatewayServiceWire(name: r.name, project: r.project.rawValue, public: r.isPublic, concurrencyLimit: r.concurrencyLimit,
                                   requestTimeoutMilliseconds: r.requestTimeout.wholeMilliseconds,
                                   replicas: r.replicas.map { GatewayReplicaWire(allocation: $0.allocation.rawValue, host: $0.host, port: $0.port) })
            }))
        }
        route(.post, "/v1/gateway/load") { request, context in
            let principal = try context.requirePrincipal()
            var request = request
            let body = try decode(GatewayLoadBody.self, from: try await body(of: &request))
            if let why = InputText.problem(body.gateway, field: "gateway", maxBytes: 128) {
                throw APIProblem(status: .unprocessableContent, title: "Unprocessable request", detail: why, field: "gateway")
            }
            try await cp.gatewayReport(GatewayReport(gateway: "remote:" + body.gateway, services: body.services.map { service in
                GatewayReport.Service(name: service.name, inFlight: Dictionary(service.replicas.map { (AllocationID($0.allocation), $0.inFlight) }, uniquingKeysWith: +),
                                      held: service.held, arrivals: service.arrivals)
            }), by: principal)
            return Response(status: .noContent)
        }
        route(.post, "/v1/gateway/authorize") { request, context in
            let principal = try context.requirePrincipal()
            var request = request
            let body = try decode(GatewayAuthorizeBody.self, from: try await body(of: &request))
            return try json(GatewayDecisionWire(decision: try await cp.authorizeCall(token: body.token, project: ProjectID(body.project), by: principal)))
        }
    }
}
