import FastGPUControlPlane
import FastGPUModel
import FastGPUWire
import Foundation
import Hummingbird
import HTTPTypes

extension APIServer {
    /// Services: members of the service's project change them; viewers read them.
    func serviceRoutes(_ route: RouteBuilder) {
        let cp = controlPlane
        let gatewayAddress = self.gatewayAddress
        @Sendable func gateway(_ request: Request) -> String? { gatewayAddress?.url(reachedAt: request.head.authority) }

        route(.post, "/v1/services") { request, context in
            let principal = try context.requirePrincipal()
            var request = request
            let body = try decode(ServiceSpecBody.self, from: try await body(of: &request))
            if let why = ServiceName.problem(body.name) {
                throw APIProblem(status: .unprocessableContent, title: "Unprocessable request", detail: why, field: "name")
            }
            let view = try await cp.createService(name: body.name, project: body.project ?? "default", spec: try body.spec(), by: principal)
            var response = try json(Wire.service(view, gateway: gateway(request)), status: .created)
            response.headers[.location] = "/v1/services/\(view.record.name)"
            return response
        }
        route(.get, "/v1/services") { request, context in
            let principal = try context.requirePrincipal()
            let views = try await cp.services(by: principal, project: nonEmpty(request.uri.queryParameters["project"]))
            return try json(ServiceListWire(items: views.map { Wire.service($0, gateway: gateway(request)) }))
        }
        route(.get, "/v1/services/{name}") { request, context in
            let principal = try context.requirePrincipal()
            return try json(Wire.service(try await cp.service(try pathParameter(context, "name"), by: principal), gateway: gateway(request)))
        }
        route(.put, "/v1/services/{name}") { request, context in
            let principal = try context.requirePrincipal()
            var request = request
            let body = try decode(ServiceSpecBody.self, from: try await body(of: &request))
            let name = try pathParameter(context, "name")
            guard body.name == name else {
                throw APIProblem(status: .unprocessableContent, title: "Unprocessable request", detail: "name must be \(name), the service's in the path", field: "name")
            }
            let current = try await cp.service(name, by: principal)
            if let project = body.project, project != current.projectName {
                throw APIProblem(status: .unprocessableContent, title: "Unprocessable request", detail: "a service cannot move to another project", field: "project")
            }
            return try json(Wire.service(try await cp.reviseService(name, spec: try body.spec(), by: principal), gateway: gateway(request)))
        }
        route(.post, "/v1/services/{name}/scale") { request, context in
            let principal = try context.requirePrincipal()
            var request = request
            let body = try decode(ScaleServiceBody.self, from: try await body(of: &request))
            guard body.min != nil || body.max != nil else {
                throw APIProblem(status: .badRequest, title: "Bad request", detail: "give min, max or both", field: "min")
            }
            return try json(Wire.service(try await cp.scaleService(try pathParameter(context, "name"), min: body.min, max: body.max, by: principal)))
        }
        route(.delete, "/v1/services/{name}") { _, context in
            let principal = try context.requirePrincipal()
            return try json(Wire.service(try await cp.deleteService(try pathParameter(context, "name"), by: principal)), status: .accepted)
        }
        route(.get, "/v1/services/{name}/events") { _, context in
            let principal = try context.requirePrincipal()
            let view = try await cp.service(try pathParameter(context, "name"), by: principal)
            return try json(ServiceEventListWire(items: view.record.events.map(Wire.serviceEvent)))
        }
    }
}
