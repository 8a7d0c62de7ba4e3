import FastGPUAPI
import FastGPUControlPlane
import FastGPUModel
import Foundation
import HTTPTypes
import Hummingbird
import Testing

/// Every route of the API against every kind of caller that should not get through: no token,
/// a malformed one, an expired one, a revoked one, a viewer (for writes), a member of another
/// project, a join token, and another node's credential. A violation is a 2xx to a caller the
/// route does not allow, a 401 that should be a 403/404 or the reverse, or any 5xx. The table
/// must name every registered route, so a new endpoint cannot be added without its row.
@Suite("API: the authorization matrix")
struct AuthorizationMatrixTests {
    enum Caller: String, CaseIterable {
        case anonymous, malformed, expired, revoked, viewer, otherProject, joinToken, otherNode
    }

    /// One row: a route, a request on it, and the callers that may succeed.
    struct Row {
        var method: HTTPRequest.Method
        var route: String
        var path: String
        var body: String?
        var allowed: Set<Caller>
        /// An endpoint that does not look at the caller (signing in): every caller gets this status.
        var sameForEveryone: Int? = nil
    }

    @Test func noCallerGetsThroughWhereItShouldNot() async throws {
        let fixture = try await Fixture.make()
        try await fixture.test { api in
            // Project `vision`: a job running on node n1 (allocation 1), a secret; `speech` is another project.
            let viewer = try await api.member("victor", of: "vision", role: "viewer")
            let otherProject = try await api.member("bob", of: "speech", role: "admin")
            let job = try await api.submit(fixture.admin, project: "vision")
            let target = try await api.register("n1", gpus: 2)
            let otherNode = try await api.register("n2", gpus: 2)
            _ = try await api.post("/v1/nodes/\(otherNode.id)/cordon", token: fixture.admin)
            try await fixture.schedule()
            let allocation = try await api.get("/v1/jobs/\(job)", token: fixture.admin).json["allocations"]?[0]?["id"]?.int ?? 0
            #expect(allocation > 0)
            // It runs (as its agent says), and has a step: step 1.
            let epoch = try await api.get("/v1/jobs/\(job)", token: fixture.admin).json["allocations"]?[0]?["epoch"]?.int ?? 0
            let started = try await api.post("/v1/nodes/\(target.id)/allocations/\(allocation)/status", token: target.token, body: #"{"epoch":\#(epoch),"state":"running"}"#)
            #expect(started.status == .noContent, "\(started.detail)")
            let stepReply = try await api.post("/v1/jobs/\(job)/steps", token: fixture.admin, body: #"{"command":["nvidia-smi"]}"#)
            #expect(stepReply.status == .created)
            let step = stepReply.json["id"]?.int ?? 0
            #expect(try await api.call(.put, "/v1/projects/vision/secrets/key", token: fixture.admin, body: #"{"value":"v"}"#).status == .ok)
            #expect(try await api.post("/v1/services", token: fixture.admin, body: #"{"name":"detect","project":"vision","command":["x"],"replicas":{"min":0,"max":2}}"#).status == .created)
            let join = try await api.post("/v1/tokens", token: fixture.admin, body: #"{"name":"join","kind":"join"}"#).json["token"]?.string ?? ""
            let expiring = try await api.post("/v1/tokens", token: fixture.admin, body: #"{"name":"short","subject":"victor","expiresInSeconds":1}"#).json["token"]?.string ?? ""
            let revoked = try await api.post("/v1/tokens", token: fixture.admin, body: #"{"name":"gone","subject":"victor"}"#).json
            _ = try await api.post("/v1/tokens/\(revoked["id"]?.int ?? 0)/revoke", token: fixture.admin)
            fixture.clock.advance(by: .seconds(2))
            let tokens: [Caller: String?] = [
                .anonymous: nil, .malformed: "not-a-token", .expired: expiring, .revoked: revoked["token"]?.string,
                .viewer: viewer, .otherProject: otherProject, .joinToken: join, .otherNode: otherNode.token,
            ]

            let n = target.id
            let users: Set<Caller> = [.viewer, .otherProject]
            let rows: [Row] = [
                Row(method: .get, route: "/healthz", path: "/healthz", allowed: Set(Caller.allCases)),
                Row(method: .get, route: "/readyz", path: "/readyz", allowed: Set(Caller.allCases)),
                Row(method: .get, route: "/metrics", path: "/metrics", allowed: Set(Caller.allCases)),
                Row(method: .get, route: "/openapi.yaml", path: "/openapi.yaml", allowed: Set(Caller.allCases)),
                Row(method: .post, route: "/v1/jobs", path: "/v1/jobs", body: #"{"project":"vision","command":["x"]}"#, allowed: []),
                Row(method: .get, route: "/v1/jobs", path: "/v1/jobs", allowed: users),
                Row(method: .get, route: "/v1/jobs/{id}", path: "/v1/jobs/\(job)", allowed: [.viewer]),
                Row(method: .post, route: "/v1/jobs/{id}/cancel", path: "/v1/jobs/\(job)/cancel", allowed: []),
                Row(method: .get, route: "/v1/jobs/{id}/events", path: "/v1/jobs/\(job)/events", allowed: [.viewer]),
                Row(method: .get, route: "/v1/jobs/{id}/logs", path: "/v1/jobs/\(job)/logs", allowed: [.viewer]),
                Row(method: .get, route: "/v1/jobs/{id}/outputs", path: "/v1/jobs/\(job)/outputs", allowed: [.viewer]),
                Row(method: .post, route: "/v1/jobs/{id}/outputs/retry", path: "/v1/jobs/\(job)/outputs/retry", allowed: []),
                Row(method: .post, route: "/v1/jobs/{id}/steps", path: "/v1/jobs/\(job)/steps", body: #"{"command":["evil"]}"#, allowed: []),
                Row(method: .get, route: "/v1/jobs/{id}/steps", path: "/v1/jobs/\(job)/steps", allowed: [.viewer]),
                Row(method: .get, route: "/v1/jobs/{id}/steps/{step}", path: "/v1/jobs/\(job)/steps/\(step)", allowed: [.viewer]),
                Row(method: .post, route: "/v1/nodes/{id}/allocations/{allocation}/steps/{step}", path: "/v1/nodes/\(n)/allocations/\(allocation)/steps/\(step)",
                    body: #"{"epoch":1,"started":true,"stdoutOffset":0,"stdout":"forged","stderrOffset":0,"stderr":"","exitCode":0}"#, allowed: []),
                Row(method: .get, route: "/v1/queue", path: "/v1/queue", allowed: users),
                Row(method: .get, route: "/v1/nodes", path: "/v1/nodes", allowed: users),
                Row(method: .get, route: "/v1/nodes/{id}", path: "/v1/nodes/\(n)", allowed: users),
                Row(method: .post, route: "/v1/nodes/{id}/cordon", path: "/v1/nodes/\(n)/cordon", allowed: []),
                Row(method: .post, route: "/v1/nodes/{id}/uncordon", path: "/v1/nodes/\(n)/uncordon", allowed: []),
                Row(method: .post, route: "/v1/nodes/{id}/drain", path: "/v1/nodes/\(n)/drain", allowed: []),
                Row(method: .post, route: "/v1/nodes/{id}/replace", path: "/v1/nodes/\(n)/replace", allowed: []),
                // A join token registers a new name; nobody here may take n1's.
                Row(method: .post, route: "/v1/nodes/register", path: "/v1/nodes/register",
                    body: #"{"name":"n1","cpuMillis":1000,"memoryMiB":1024,"gpus":[{"model":"H100-80GB","memoryMiB":81559},{"model":"H100-80GB","memoryMiB":81559}]}"#, allowed: []),
                Row(method: .post, route: "/v1/nodes/{id}/heartbeat", path: "/v1/nodes/\(n)/heartbeat", body: "{}", allowed: []),
                Row(method: .get, route: "/v1/nodes/{id}/assignments", path: "/v1/nodes/\(n)/assignments", allowed: []),
                Row(method: .post, route: "/v1/nodes/{id}/allocations/{allocation}/status", path: "/v1/nodes/\(n)/allocations/\(allocation)/status",
                    body: #"{"epoch":1,"state":"exited","exitCode":0}"#, allowed: []),
                Row(method: .post, route: "/v1/nodes/{id}/allocations/{allocation}/logs", path: "/v1/nodes/\(n)/allocations/\(allocation)/logs",
                    body: #"{"chunks":[{"sequence":0,"stream":"stdout","text":"forged\n"}]}"#, allowed: []),
                Row(method: .post, route: "/v1/nodes/{id}/allocations/{allocation}/outputs", path: "/v1/nodes/\(n)/allocations/\(allocation)/outputs",
                    body: #"{"uploaded":true}"#, allowed: []),
                Row(method: .post, route: "/v1/nodes/{id}/allocations/{allocation}/readiness", path: "/v1/nodes/\(n)/allocations/\(allocation)/readiness",
                    body: #"{"epoch":1,"ready":true,"host":"10.0.0.9","port":8080}"#, allowed: []),
                Row(method: .post, route: "/v1/services", path: "/v1/services", body: #"{"name":"mine","project":"vision","command":["x"]}"#, allowed: []),
                Row(method: .get, route: "/v1/services", path: "/v1/services", allowed: users),
                Row(method: .get, route: "/v1/services/{name}", path: "/v1/services/detect", allowed: [.viewer]),
                Row(method: .put, route: "/v1/services/{name}", path: "/v1/services/detect", body: #"{"name":"detect","command":["evil"]}"#, allowed: []),
                Row(method: .post, route: "/v1/services/{name}/scale", path: "/v1/services/detect/scale", body: #"{"max":9}"#, allowed: []),
                Row(method: .get, route: "/v1/services/{name}/events", path: "/v1/services/detect/events", allowed: [.viewer]),
                Row(method: .delete, route: "/v1/services/{name}", path: "/v1/services/detect", allowed: []),
                // A gateway of its own runs with a cluster-admin token: it sees every project's replicas.
                Row(method: .get, route: "/v1/gateway/routes", path: "/v1/gateway/routes", allowed: []),
                Row(method: .post, route: "/v1/gateway/load", path: "/v1/gateway/load", body: #"{"gateway":"g","services":[{"name":"detect","replicas":[],"held":99,"arrivals":99}]}"#, allowed: []),
                Row(method: .post, route: "/v1/gateway/authorize", path: "/v1/gateway/authorize", body: #"{"token":"fgpu_x","project":1}"#, allowed: []),
                Row(method: .get, route: "/v1/projects", path: "/v1/projects", allowed: users),
                Row(method: .post, route: "/v1/projects", path: "/v1/projects", body: #"{"name":"mine"}"#, allowed: []),
                Row(method: .get, route: "/v1/projects/{name}", path: "/v1/projects/vision", allowed: [.viewer]),
                Row(method: .patch, route: "/v1/projects/{name}", path: "/v1/projects/vision", body: #"{"maxPriority":"high"}"#, allowed: []),
                Row(method: .get, route: "/v1/projects/{name}/secrets", path: "/v1/projects/vision/secrets", allowed: [.viewer]),
                Row(method: .put, route: "/v1/projects/{name}/secrets/{secret}", path: "/v1/projects/vision/secrets/key", body: #"{"value":"stolen"}"#, allowed: []),
                Row(method: .delete, route: "/v1/projects/{name}/secrets/{secret}", path: "/v1/projects/vision/secrets/key", allowed: []),
                Row(method: .put, route: "/v1/projects/{name}/members/{subject}", path: "/v1/projects/vision/members/mallory", body: #"{"role":"admin"}"#, allowed: []),
                Row(method: .delete, route: "/v1/projects/{name}/members/{subject}", path: "/v1/projects/vision/members/victor", allowed: []),
                Row(method: .get, route: "/v1/storage/backends", path: "/v1/storage/backends", allowed: users),
                Row(method: .put, route: "/v1/storage/backends/{name}", path: "/v1/storage/backends/archive",
                    body: #"{"endpoint":"http://10.0.0.1:9000","bucket":"archive","accessKeyID":"AKID","secretAccessKey":"s"}"#, allowed: []),
                Row(method: .delete, route: "/v1/storage/backends/{name}", path: "/v1/storage/backends/archive", allowed: []),
                // Reading a project's objects is for its viewers; writing, for its members.
                Row(method: .post, route: "/v1/storage/presign", path: "/v1/storage/presign", body: #"{"project":"vision","key":"run-1/out.npy"}"#, allowed: [.viewer]),
                Row(method: .post, route: "/v1/storage/presign", path: "/v1/storage/presign",
                    body: #"{"project":"vision","key":"run-1/out.npy","method":"PUT"}"#, allowed: []),
                Row(method: .get, route: "/v1/audit", path: "/v1/audit", allowed: []),
                Row(method: .get, route: "/v1/tokens", path: "/v1/tokens", allowed: users),
                // A one-time dashboard link: for any person, as themselves.
                Row(method: .post, route: "/v1/ui/sessions", path: "/v1/ui/sessions", allowed: users),
                // Single sign-on takes an ID token, not a caller (OIDCTests has it configured; here it is not: 404 for all).
                Row(method: .get, route: "/v1/auth/oidc", path: "/v1/auth/oidc", allowed: [], sameForEveryone: 404),
                Row(method: .post, route: "/v1/auth/oidc", path: "/v1/auth/oidc", body: #"{"idToken":"a.b.c"}"#, allowed: [], sameForEveryone: 404),
                Row(method: .post, route: "/v1/tokens", path: "/v1/tokens", body: #"{"name":"mine"}"#, allowed: users),
                Row(method: .post, route: "/v1/tokens/{id}/revoke", path: "/v1/tokens/1/revoke", allowed: []),
                // Money: prices are public to users, changed by cluster admins; a project's money is its viewers' to read.
                Row(method: .get, route: "/v1/prices", path: "/v1/prices", allowed: users),
                Row(method: .post, route: "/v1/prices", path: "/v1/prices", body: #"{"prices":{"gpu":1}}"#, allowed: []),
                Row(method: .get, route: "/v1/projects/{name}/budget", path: "/v1/projects/vision/budget", allowed: [.viewer]),
                Row(method: .put, route: "/v1/projects/{name}/budget", path: "/v1/projects/vision/budget", body: #"{"limitMicros":999999999}"#, allowed: []),
                Row(method: .delete, route: "/v1/projects/{name}/budget", path: "/v1/projects/vision/budget", allowed: []),
                Row(method: .put, route: "/v1/projects/{name}/package", path: "/v1/projects/vision/package", body: #"{"monthlyFeeMicros":0,"allowanceGPUHours":100000}"#, allowed: []),
                Row(method: .delete, route: "/v1/projects/{name}/package", path: "/v1/projects/vision/package", allowed: []),
                Row(method: .get, route: "/v1/projects/{name}/quota", path: "/v1/projects/vision/quota", allowed: [.viewer]),
                Row(method: .put, route: "/v1/projects/{name}/quota", path: "/v1/projects/vision/quota", body: #"{"guaranteedMilliGPUs":64000}"#, allowed: []),
                Row(method: .delete, route: "/v1/projects/{name}/quota", path: "/v1/projects/vision/quota", allowed: []),
                Row(method: .get, route: "/v1/projects/{name}/credits", path: "/v1/projects/vision/credits", allowed: [.viewer]),
                Row(method: .post, route: "/v1/projects/{name}/credits", path: "/v1/projects/vision/credits", body: #"{"kind":"trial","amountMicros":1000000}"#, allowed: []),
                Row(method: .get, route: "/v1/projects/{name}/invoices", path: "/v1/projects/vision/invoices", allowed: [.viewer]),
                Row(method: .get, route: "/v1/projects/{name}/invoices/{month}", path: "/v1/projects/vision/invoices/2026-12", allowed: [.viewer]),
                Row(method: .get, route: "/v1/projects/{name}/usage", path: "/v1/projects/vision/usage", allowed: [.viewer]),
                Row(method: .post, route: "/v1/jobs/estimate", path: "/v1/jobs/estimate", body: #"{"project":"vision","command":["x"]}"#, allowed: [.viewer]),
            ]

            let registered = Set(fixture.routes().routes.map { "\($0.method.uppercased()) \($0.path)" })
            let covered = Set(rows.map { "\($0.method.rawValue) \($0.route)" })
            #expect(registered.subtracting(covered).sorted() == [], "every route has its row in the matrix")

            var violations: [String] = []
            for row in rows {
                for caller in Caller.allCases {
                    let reply = try await api.call(row.method, row.path, token: tokens[caller] ?? nil, body: row.body)
                    let code = Int(reply.status.code)
                    let credentialless: Set<Caller> = [.anonymous, .malformed, .expired, .revoked]
                    let ok: Bool
                    if let same = row.sameForEveryone {
                        ok = code == same
                    } else if row.allowed.contains(caller) {
                        ok = (200..<300).contains(code)
                    } else if credentialless.contains(caller) {
                        ok = code == 401
                    } else {
                        ok = code == 403 || code == 404 || code == 409
                    }
                    if !ok || code >= 500 { violations.append("\(row.method.rawValue) \(row.path) as \(caller.rawValue): \(code) \(reply.detail)") }
                }
            }
            #expect(violations == [], "\(violations.joined(separator: "\n"))")

            // What the allowed callers got holds nothing of another project's.
            let bobsJobs = try await api.get("/v1/jobs", token: otherProject).json["items"]?.array ?? []
            #expect(bobsJobs.isEmpty)
            #expect(try await api.get("/v1/queue", token: otherProject).json["items"]?.array.count == 0)
            #expect(try await api.get("/v1/projects", token: otherProject).json["items"]?.array.compactMap { $0["name"]?.string } == ["speech"])
            // Nothing the denied callers sent took effect.
            let after = try await api.get("/v1/jobs/\(job)", token: fixture.admin).json
            #expect(after["state"]?.string == "running")
            #expect(try await api.get("/v1/jobs/\(job)/logs", token: fixture.admin).text.isEmpty, "no forged log line")
            let steps = try await api.get("/v1/jobs/\(job)/steps", token: fixture.admin).json["items"]?.array ?? []
            #expect(steps.count == 1 && steps.first?["state"]?.string == "pending" && steps.first?["stdout"]?.string == "", "no step started or forged")
            #expect(try await api.get("/v1/nodes/\(n)", token: fixture.admin).json["state"]?.string == "ready")
            #expect(try await api.get("/v1/projects/vision", token: fixture.admin).json["maxPriority"]?.string == "normal")
            #expect(try await api.get("/v1/projects/vision/secrets", token: fixture.admin).json["items"]?.array.count == 1)
            let service = try await api.get("/v1/services/detect", token: fixture.admin).json
            #expect(service["deleting"]?.bool == false && service["spec"]?["command"]?[0]?.string == "x" && service["spec"]?["replicas"]?["max"]?.int == 2)
            #expect(try await api.get("/v1/services", token: otherProject).json["items"]?.array.count == 0)
            #expect(try await api.get("/v1/nodes/\(n)/assignments", token: target.token).status == .ok, "n1's own credential still works")
        }
    }
}
