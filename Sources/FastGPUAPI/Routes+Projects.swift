import FastGPUControlPlane
import FastGPUModel
import FastGPUStore
import FastGPUWire
import Foundation
import Hummingbird
import HTTPTypes
import NIOCore

extension APIServer {
    /// Projects, their members and their secrets.
    func projectRoutes(_ route: RouteBuilder) {
        let cp = controlPlane
        let clock = self.clock
        let longPolls = self.longPolls
        let limits = self.limits
        _ = (cp, clock, longPolls, limits)

        route(.get, "/v1/projects") { _, context in
            let principal = try context.requirePrincipal()
            return try json(ProjectListWire(items: try await cp.projects(by: principal).map(Wire.project)))
        }
        route(.post, "/v1/projects") { request, context in
            let principal = try context.requirePrincipal()
            var request = request
            let body = try decode(CreateProjectBody.self, from: try await body(of: &request))
            return try json(Wire.project(try await cp.createProject(name: body.name, weight: body.weight ?? 1, by: principal)), status: .created)
        }
        route(.get, "/v1/projects/{name}") { _, context in
            let principal = try context.requirePrincipal()
            return try json(Wire.project(try await cp.project(try pathParameter(context, "name"), by: principal)))
        }
        route(.patch, "/v1/projects/{name}") { request, context in
            let principal = try context.requirePrincipal()
            var request = request
            let body = try decode(UpdateProjectBody.self, from: try await body(of: &request))
            var ceiling: PriorityClass?
            if let name = body.maxPriority {
                guard let parsed = PriorityClass.named(name) else {
                    throw APIProblem(status: .badRequest, title: "Bad request", detail: "maxPriority must be low, normal or high")
                }
                ceiling = parsed
            }
            return try json(Wire.project(try await cp.updateProject(try pathParameter(context, "name"), weight: body.weight, maxPriority: ceiling, by: principal)))
        }
        // A project's secret store: names for members, values only ever to agents.
        route(.get, "/v1/projects/{name}/secrets") { _, context in
            let principal = try context.requirePrincipal()
            return try json(SecretListWire(items: try await cp.secrets(of: try pathParameter(context, "name"), by: principal).map(Wire.secret)))
        }
        route(.put, "/v1/projects/{name}/secrets/{secret}") { request, context in
            let principal = try context.requirePrincipal()
            var request = request
            let body = try decode(SecretBody.self, from: try await body(of: &request))
            let record = try await cp.setSecret(project: try pathParameter(context, "name"), name: try pathParameter(context, "secret"), value: body.value, by: principal)
            guard let record else { throw APIProblem(status: .internalServerError, title: "Internal error", detail: "the secret was not stored") }
            return try json(Wire.secret(record))
        }
        route(.delete, "/v1/projects/{name}/secrets/{secret}") { _, context in
            let principal = try context.requirePrincipal()
            try await cp.setSecret(project: try pathParameter(context, "name"), name: try pathParameter(context, "secret"), value: nil, by: principal)
            return Response(status: .noContent)
        }
        route(.put, "/v1/projects/{name}/members/{subject}") { request, context in
            let principal = try context.requirePrincipal()
            var request = request
            let body = try decode(MemberBody.self, from: try await body(of: &request))
            guard let role = MemberRole(rawValue: body.role) else {
                throw APIProblem(status: .badRequest, title: "Bad request", detail: "role must be admin, member or viewer")
            }
            return try json(Wire.project(try await cp.setMember(project: try pathParameter(context, "name"), subject: try pathParameter(context, "subject"),
                                                              role: role, by: principal)))
        }
        route(.delete, "/v1/projects/{name}/members/{subject}") { _, context in
            let principal = try context.requirePrincipal()
            return try json(Wire.project(try await cp.setMember(project: try pathParameter(context, "name"), subject: try pathParameter(context, "subject"),
                                                              role: nil, by: principal)))
        }
    }
}
