import FastGPUControlPlane
import FastGPUModel
import FastGPUWire
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

// The web dashboard's routes (see `Dashboard`), and the API call that makes a one-time sign-in link.
extension APIServer {
    func dashboardRoutes(_ route: RouteBuilder) {
        let cp = controlPlane
        let clock = self.clock
        let dashboard = Dashboard()
        let oidc = self.oidc
        // Cookies only over TLS where people reach the server over it: directly, or through a proxy
        // that terminates it (it says so with X-Forwarded-Proto; a forged one only makes the cookie stricter).
        let tlsAlways = scheme == "https" || (oidc?.settings.publicURL?.hasPrefix("https://") ?? false)
        @Sendable func secure(_ request: Request) -> Bool {
            tlsAlways || request.headers[HTTPField.Name("X-Forwarded-Proto")!] == "https"
        }
        typealias Handler = @Sendable (Request, APIRequestContext) async throws -> Response

        /// A page for a signed-in person: without a session, the sign-in page; an error, a page that says it.
        func page(_ section: String, _ body: @escaping @Sendable (Request, APIRequestContext, Principal) async throws -> Response) -> Handler {
            { request, context in
                guard let principal = context.principal, principal.kind == .user else {
                    let why = context.authenticationFailure.map { $0 == .expired ? "expired" : "signin" } ?? "signin"
                    return Dashboard.redirect("/ui/login?why=\(why)")
                }
                do {
                    return try await body(request, context, principal)
                } catch {
                    let (status, title, detail, _) = ProblemMiddleware.classify(error, requestID: context.requestID, logger: nil)
                    return dashboard.page("error", title: title, principal: principal, section: section,
                                          ["status": Int(status.code), "detail": detail, "requestId": context.requestID], status: status)
                }
            }
        }

        /// A form may only be posted from these pages: SameSite cookies already hold a session
        /// back from other sites, and this refuses what a browser says came from elsewhere.
        @Sendable func sameOrigin(_ request: Request) -> Bool {
            // Browsers say where a request comes from (Sec-Fetch-Site); older ones, only Origin.
            if let site = request.headers[HTTPField.Name("Sec-Fetch-Site")!] { return site == "same-origin" || site == "none" }
            guard let origin = request.headers[HTTPField.Name("Origin")!] else { return true }
            guard let host = request.head.authority else { return false }
            return origin == "http://\(host)" || origin == "https://\(host)"
        }

        route.page(.get, "/ui/static/{file}") { _, context in
            let name = try pathParameter(context, "file")
            guard let asset = dashboard.assets[name] else { throw APIProblem(status: .notFound, title: "Not found", detail: "no such file") }
            var headers = HTTPFields()
            headers[.contentType] = asset.type
            headers[.cacheControl] = "max-age=300"
            headers[.xContentTypeOptions] = "nosniff"
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: asset.body)))
        }

        // MARK: Signing in and out

        route.page(.get, "/ui/login") { request, context in
            let query = request.uri.queryParameters
            let now = clock.now()
            if let code = nonEmpty(query["code"]) {
                guard code.count <= 64, let secret = dashboard.redeem(code, now: now) else {
                    return dashboard.page("login", title: "Sign in", principal: nil, section: "login",
                                          ["message": "That sign-in link was used already or has expired (links last 60 s). Run `fastgpu ui` again."],
                                          status: .unauthorized)
                }
                let expires = try? cp.tokens.authenticate(secret, now: now).map(\.expiresAt).get()
                return Dashboard.redirect("/ui", cookie: Dashboard.cookie(secret, expires: expires, now: now, secure: secure(request)))
            }
            if let principal = context.principal, principal.kind == .user { return Dashboard.redirect("/ui") }
            let message: String? = switch nonEmpty(query["why"]) {
            case "expired"?: "Your session has ended. Sign in again."
            case "out"?: "Signed out."
            default: nil
            }
            return dashboard.page("login", title: "Sign in", principal: nil, section: "login", ["message": message as Any, "sso": oidc != nil])
        }
        route.page(.post, "/ui/login") { request, context in
            guard sameOrigin(request) else { throw APIProblem(status: .forbidden, title: "Forbidden", detail: "sign in from this server's own page") }
            let form = Self.form(try await request.body.collect(upTo: 8192))
            let now = clock.now()
            guard let token = form["token"], case .success(let principal) = cp.tokens.authenticate(token, now: now), principal.kind == .user else {
                return dashboard.page("login", title: "Sign in", principal: nil, section: "login",
                                      ["message": "That token is not valid: paste an API token of yours (fgpu_…), or ask your admin for one."],
                                      status: .unauthorized)
            }
            let (secret, expires) = try await Dashboard.openSession(for: principal, controlPlane: cp, now: now)
            return Dashboard.redirect("/ui", cookie: Dashboard.cookie(secret, expires: expires, now: now, secure: secure(request)))
        }
        route.page(.post, "/ui/logout") { request, context in
            guard sameOrigin(request) else { throw APIProblem(status: .forbidden, title: "Forbidden", detail: "sign out from this server's own page") }
            if let principal = context.principal, principal.kind == .user { _ = try? await cp.revokeToken(principal.tokenID, by: principal) }
            return Dashboard.redirect("/ui/login?why=out", cookie: Dashboard.cookie("", expires: nil, now: clock.now(), secure: secure(request)))
        }
        route(.post, "/v1/ui/sessions") { _, context in
            let principal = try context.requirePrincipal()
            guard principal.kind == .user else { throw ControlPlaneError.forbidden("only people sign in to the dashboard") }
            let now = clock.now()
            let (secret, expires) = try await Dashboard.openSession(for: principal, controlPlane: cp, now: now)
            let code = dashboard.link(for: secret, now: now)
            return try json(DashboardLinkWire(path: "/ui/login?code=\(code)", linkExpiresAt: Wire.time(now + Dashboard.linkLifetime),
                                              sessionExpiresAt: Wire.time(expires)), status: .created)
        }

        // MARK: Single sign-on

        route(.get, "/v1/auth/oidc") { _, _ in
            guard let oidc else { throw APIProblem(status: .notFound, title: "Not found", detail: "single sign-on is not configured on this server") }
            let settings = oidc.settings
            return try json(OIDCConfigurationWire(issuer: settings.issuer, clientId: settings.clientID, claim: settings.claim))
        }
        route(.post, "/v1/auth/oidc") { request, _ in
            guard let oidc else { throw APIProblem(status: .notFound, title: "Not found", detail: "single sign-on is not configured on this server") }
            var request = request
            let body = try decode(OIDCSignInBody.self, from: try await body(of: &request))
            let now = clock.now()
            let subject: String
            do {
                subject = try await oidc.verify(body.idToken, nowSeconds: now.millisecondsSinceEpoch / 1000)
            } catch let refusal as IDTokenRefusal {
                throw APIProblem(status: .unauthorized, title: "Unauthorized", detail: refusal.description)
            } catch let failure as OIDCFailure {
                throw failure.unreachable ? APIProblem(status: .serviceUnavailable, title: "Unavailable", detail: "the identity provider: \(failure.description)")
                    : APIProblem(status: .unauthorized, title: "Unauthorized", detail: failure.description)
            }
            let settings = oidc.settings
            let view = try await cp.signIn(subject: subject, clusterAdmin: settings.admins.contains(subject), expiresAt: now + settings.sessionLifetime,
                                           via: settings.issuer)
            return try json(OIDCSessionWire(token: view.secret ?? "", subject: subject, clusterAdmin: view.record.clusterAdmin,
                                            expiresAt: view.record.expiresAt.map(Wire.time) ?? ""), status: .created)
        }
        route.page(.get, "/ui/login/oidc") { request, _ in
            guard let oidc else { return Dashboard.redirect("/ui/login") }
            let now = clock.now()
            guard let started = dashboard.startSignIn(now: now) else {
                throw APIProblem(status: .serviceUnavailable, title: "Unavailable", detail: "too many sign-ins in progress; try again in a minute")
            }
            let discovery = try await oidc.discovery()
            let redirect = Self.callback(oidc.settings, request: request, scheme: secure(request) ? "https" : "http")
            let query = OIDCHTTP.formEncoded(["response_type": "code", "client_id": oidc.settings.clientID, "redirect_uri": redirect,
                                              "scope": "openid email profile", "state": started.state, "nonce": started.nonce,
                                              "code_challenge": started.challenge, "code_challenge_method": "S256"])
            let separator = discovery.authorization_endpoint.contains("?") ? "&" : "?"
            let bind = "\(Dashboard.signInCookieName)=\(started.state); Path=/ui/login/oidc; Max-Age=600; HttpOnly; SameSite=Lax"
                + (secure(request) ? "; Secure" : "")
            return Dashboard.redirect(discovery.authorization_endpoint + separator + query, cookie: bind)
        }
        route.page(.get, "/ui/login/oidc/callback") { request, _ in
            guard let oidc else { return Dashboard.redirect("/ui/login") }
            let query = request.uri.queryParameters
            let now = clock.now()
            func refuse(_ message: String) -> Response {
                dashboard.page("login", title: "Sign in", principal: nil, section: "login", ["message": message, "sso": true], status: .unauthorized)
            }
            if let error = nonEmpty(query["error"]) {
                return refuse("The identity provider refused the sign-in: \(nonEmpty(query["error_description"]) ?? error)")
            }
            guard let code = nonEmpty(query["code"]), code.count <= 2048, let state = nonEmpty(query["state"]), state.count <= 128 else {
                return refuse("That sign-in is unknown or took over 10 minutes: start again.")
            }
            guard Dashboard.cookie(named: Dashboard.signInCookieName, in: request.headers) == state else {
                return refuse("That sign-in was started in another browser: start again here.")
            }
            guard let pending = dashboard.finishSignIn(state: state, now: now) else {
                return refuse("That sign-in is unknown or took over 10 minutes: start again.")
            }
            do {
                let redirect = Self.callback(oidc.settings, request: request, scheme: secure(request) ? "https" : "http")
                let idToken = try await oidc.exchange(code: code, verifier: pending.verifier, redirectURI: redirect)
                let subject = try await oidc.verify(idToken, nowSeconds: now.millisecondsSinceEpoch / 1000, nonce: pending.nonce)
                let settings = oidc.settings
                let view = try await cp.signIn(subject: subject, clusterAdmin: settings.admins.contains(subject), expiresAt: now + settings.sessionLifetime,
                                               via: settings.issuer)
                return Dashboard.redirect("/ui", cookie: Dashboard.cookie(view.secret ?? "", expires: view.record.expiresAt, now: now, secure: secure(request)),
                                          alsoCookie: "\(Dashboard.signInCookieName)=; Path=/ui/login/oidc; Max-Age=0; HttpOnly; SameSite=Lax")
            } catch let refusal as IDTokenRefusal {
                return refuse("Signing in failed: \(refusal.description).")
            } catch let failure as OIDCFailure {
                return refuse("Signing in failed: \(failure.description).")
            } catch let error as ControlPlaneError {
                return refuse("Signing in failed: \(ProblemMiddleware.classify(error, requestID: "", logger: nil).2).")
            } catch {
                return refuse("Signing in failed: the identity provider could not be reached (\(error)).")
            }
        }

        // MARK: Pages

        route.page(.get, "/ui", page("overview") { _, _, principal in
            let now = clock.now()
            let nodes = try await cp.nodes(by: principal)
            var models: [String: (nodes: Set<UInt64>, gpus: Int, allocatedMilli: Int, unhealthy: Int, utilization: Int, readings: Int)] = [:]
            for view in nodes where view.node.state != .down {
                for gpu in view.node.gpus {
                    var entry = models[gpu.model] ?? ([], 0, 0, 0, 0, 0)
                    entry.nodes.insert(view.node.id.rawValue)
                    entry.gpus += 1
                    entry.allocatedMilli += 1000 - gpu.freeMilli
                    if !gpu.isHealthy { entry.unhealthy += 1 }
                    if let reading = view.telemetry[gpu.index]?.utilizationPercent { entry.utilization += reading; entry.readings += 1 }
                    models[gpu.model] = entry
                }
            }
            let capacity = models.sorted { $0.key < $1.key }.map { model, entry -> [String: Any] in
                ["model": model, "nodes": entry.nodes.count, "gpus": entry.gpus, "allocated": Human.gpus(entry.allocatedMilli),
                 "free": Human.gpus(entry.gpus * 1000 - entry.allocatedMilli), "unhealthy": entry.unhealthy,
                 "percent": entry.gpus == 0 ? 0 : entry.allocatedMilli / entry.gpus / 10,
                 "utilization": entry.readings == 0 ? "–" : "\(entry.utilization / entry.readings) %"]
            }
            let counts = await cp.jobCounts(by: principal)
            let states = JobState.allCases.map { ["state": $0.rawValue, "count": counts[$0] ?? 0] as [String: Any] }
            let queue = try cp.queue(by: principal, project: nil)
            let waiting = queue.prefix(20).map { entry, view -> [String: Any] in
                let reason = Wire.reason(entry.reason, now: now)
                return ["id": view.job.id.rawValue, "name": view.job.name, "project": view.projectName,
                        "position": entry.position, "gpus": Human.gpus(view.job.milliGPUs), "waited": Human.age(now.milliseconds(since: view.job.waitingSince)),
                        "reason": reason?.message ?? "waiting for the next scheduling pass",
                        "estimatedStart": entry.estimatedStart.map(Wire.time) as Any, "learned": entry.estimatedStartLearned]
            }
            return dashboard.page("overview", title: "Overview", principal: principal, section: "overview", [
                "capacity": capacity, "states": states, "queue": waiting, "queueLength": queue.count, "more": (queue.count > waiting.count ? queue.count - waiting.count : nil) as Any,
                "nodes": nodes.count, "nodesDown": nodes.filter { $0.node.state == .down }.count,
            ])
        })

        route.page(.get, "/ui/jobs", page("jobs") { request, _, principal in
            let query = request.uri.queryParameters
            let now = clock.now()
            var states: Set<JobState> = []
            let stateText = nonEmpty(query["state"])
            if let stateText {
                guard let state = JobState(rawValue: stateText) else { throw APIProblem(status: .badRequest, title: "Bad request", detail: "no job state \(stateText)") }
                states = [state]
            }
            let project = nonEmpty(query["project"])
            if let project { _ = try await cp.project(project, by: principal) }
            let after = try nonEmpty(query["after"]).map { text throws -> JobID in
                guard let id = JobID(parsing: text) else { throw APIProblem(status: .badRequest, title: "Bad request", detail: "after must be a job id") }
                return id
            }
            let page = try cp.jobs(by: principal, project: project, states: states, after: after, limit: Dashboard.pageSize)
            let rows = page.jobs.map { view -> [String: Any] in
                var row: [String: Any] = ["id": view.job.id.rawValue, "name": view.job.name, "project": view.projectName,
                                          "state": view.job.state.rawValue, "gpus": Human.gpus(view.job.milliGPUs), "submitter": view.job.submitter,
                                          "submittedAt": Wire.time(view.job.submitTime), "age": Human.age(now.milliseconds(since: view.job.submitTime))]
                if let finished = view.finishedAt { row["finishedAt"] = Wire.time(finished) }
                if let place = view.queue {
                    row["position"] = place.position
                    if let start = place.estimatedStart { row["estimatedStart"] = Wire.time(start) }
                    row["learned"] = place.estimatedStartLearned
                }
                return row
            }
            var filters = "state=\(stateText ?? "")&project=\(project ?? "")"
            filters = filters.addingPercentEncoding(withAllowedCharacters: .urlQueryAllowed) ?? ""
            let projects = try await cp.projects(by: principal).map { ["name": $0.record.name, "selected": $0.record.name == project] as [String: Any] }
            return dashboard.page("jobs", title: "Jobs", principal: principal, section: "jobs", [
                "jobs": rows, "empty": rows.isEmpty, "projects": projects,
                "states": JobState.allCases.map { ["state": $0.rawValue, "selected": $0.rawValue == stateText] as [String: Any] },
                "next": page.next.map { "/ui/jobs?\(filters)&after=\($0.rawValue)" } as Any,
                "first": (after == nil ? nil : "/ui/jobs?\(filters)") as Any,
            ])
        })

        route.page(.get, "/ui/jobs/{id}", page("jobs") { _, context, principal in
            let id = try jobID(context)
            let now = clock.now()
            let view = try await cp.jobWithHistory(id, by: principal)
            var job = Dashboard.values(Wire.job(view, now: now)) as? [String: Any] ?? [:]
            job["command"] = view.launch.command.joined(separator: " ")
            job["age"] = Human.age(now.milliseconds(since: view.job.submitTime))
            job["pending"] = view.job.state == .pending
            let events = try await cp.events(of: id, by: principal, after: 0, limit: 200)
            let (nodes, projects) = await cp.names(of: events.map(\.event))
            let names = EventNames(nodes: nodes, projects: projects)
            return dashboard.page("job", title: "Job \(id.rawValue)", principal: principal, section: "jobs", [
                "job": job, "events": events.map { Dashboard.values(Wire.event($0, names: names)) },
                "finished": view.job.state.isFinished,
            ])
        })

        route.page(.get, "/ui/jobs/{id}/logs") { request, context in
            // What the log-following script asks for: lines after a position, JSON.
            guard let principal = context.principal, principal.kind == .user else {
                throw APIProblem(status: .unauthorized, title: "Unauthorized", detail: "your session has ended: sign in again")
            }
            let id = try jobID(context)
            var after: Int64 = 0
            if let text = nonEmpty(request.uri.queryParameters["after"]) {
                guard let value = Int64(text), value >= 0 else { throw APIProblem(status: .badRequest, title: "Bad request", detail: "after must be a position") }
                after = value
            }
            let (chunks, finished) = try await cp.logs(of: id, by: principal, after: after, limit: 500)
            let lines = chunks.map { LogLineWire(position: $0.position, allocation: $0.chunk.allocationID.rawValue, sequence: $0.chunk.sequence,
                                                 stream: $0.chunk.stream.rawValue, time: Wire.time($0.chunk.time), text: $0.chunk.text) }
            var response = try json(DashboardLogsWire(lines: lines, next: chunks.last?.position ?? after, finished: finished))
            Dashboard.secure(&response.headers)
            return response
        }

        route.page(.get, "/ui/nodes", page("nodes") { request, _, principal in
            let now = clock.now()
            let all = try await cp.nodes(by: principal).sorted { $0.node.name < $1.node.name }
            let pageNumber = max(1, min(1_000_000, Int(nonEmpty(request.uri.queryParameters["page"]) ?? "1") ?? 1))
            let shown = all.dropFirst((pageNumber - 1) * Dashboard.nodesPerPage).prefix(Dashboard.nodesPerPage)
            let rows = shown.map { view -> [String: Any] in
                let gpus = view.node.gpus.map { gpu -> [String: Any] in
                    let reading = view.telemetry[gpu.index]
                    var row: [String: Any] = ["index": gpu.index, "model": gpu.model, "healthy": gpu.isHealthy,
                                              "allocated": Human.gpus(1000 - gpu.freeMilli), "busy": gpu.freeMilli < 1000]
                    if case .unhealthy(let why) = gpu.health { row["reason"] = why }
                    if let value = reading?.utilizationPercent { row["utilization"] = value }
                    if let value = reading?.memoryUsedMiB { row["memoryUsed"] = String(format: "%.1f", Double(value) / 1024) }
                    row["memory"] = String(format: "%.0f", Double(gpu.memoryMiB) / 1024)
                    if let value = reading?.powerWatts { row["power"] = Int(value.rounded()) }
                    if let value = reading?.temperatureCelsius { row["temperature"] = value }
                    if let value = reading?.xidErrors, value > 0 { row["xid"] = value }
                    if reading?.simulated == true { row["simulated"] = true }
                    if let since = view.idleSince[gpu.index] { row["idleFor"] = Human.age(now.milliseconds(since: since)) }
                    return row
                }
                return ["name": view.node.name, "state": view.node.state.rawValue, "ready": view.node.state == .ready, "gpus": gpus,
                        "heartbeat": view.lastHeartbeatAt.map { Human.age(now.milliseconds(since: $0)) + " ago" } ?? "never",
                        "labels": view.node.labels.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")]
            }
            let pages = max(1, (all.count + Dashboard.nodesPerPage - 1) / Dashboard.nodesPerPage)
            return dashboard.page("nodes", title: "Nodes", principal: principal, section: "nodes", [
                "nodes": rows, "count": all.count, "page": pageNumber, "pages": pages,
                "previous": (pageNumber > 1 ? "/ui/nodes?page=\(pageNumber - 1)" : nil) as Any,
                "next": (pageNumber < pages ? "/ui/nodes?page=\(pageNumber + 1)" : nil) as Any,
            ])
        })

        let gatewayAddress = self.gatewayAddress
        route.page(.get, "/ui/services", page("services") { request, _, principal in
            let views = try await cp.services(by: principal, project: nil)
            let gateway = gatewayAddress?.url(reachedAt: request.head.authority)
            let rows = views.map { view -> [String: Any] in
                var service = Dashboard.values(Wire.service(view, gateway: gateway)) as? [String: Any] ?? [:]
                service["command"] = view.record.spec.command.joined(separator: " ")
                return service
            }
            return dashboard.page("services", title: "Services", principal: principal, section: "services", ["services": rows, "empty": rows.isEmpty])
        })

        route.page(.get, "/ui/projects", page("projects") { _, _, principal in
            let stats = await cp.stats()
            let visible = try await cp.projects(by: principal)
            var rows: [[String: Any]] = []
            for view in visible {
                let name = view.record.name
                let quota = try await cp.quota(project: name, by: principal)
                let stat = stats.projects.first { $0.name == name }
                let spend = stats.spend.first { $0.project == name }
                rows.append([
                    "name": name, "weight": view.record.weight,
                    "members": view.members.map { ["subject": $0.subject, "role": $0.role.rawValue] },
                    "guarantees": zip(quota.quota?.guarantees ?? [], quota.guaranteedInUse).map {
                        ["model": $0.gpuModel ?? "any", "gpus": Human.gpus($0.milliGPUs), "inUse": Human.gpus($1)] as [String: Any]
                    },
                    "borrowingLimit": quota.quota?.borrowingLimitMilliGPUs.map(Human.gpus) as Any,
                    "allocated": Human.gpus(stat?.allocatedMilli ?? 0), "pending": stat?.pendingJobs ?? 0,
                    "gpuHours": String(format: "%.1f", Double(view.record.usage.milliGPUMilliseconds) / 1000 / 3_600_000),
                    "spent": spend.map { Money.text($0.spentMicros) } as Any,
                    "budget": spend?.limitMicros.map(Money.text) as Any,
                ])
            }
            return dashboard.page("projects", title: "Projects", principal: principal, section: "projects", ["projects": rows, "empty": rows.isEmpty])
        })
    }

    /// Where the provider sends a browser back: the configured public URL, else this request's host.
    static func callback(_ settings: OIDCSettings, request: Request, scheme: String) -> String {
        let base = settings.publicURL ?? "\(scheme)://\(request.head.authority ?? "127.0.0.1")"
        return (base.hasSuffix("/") ? String(base.dropLast()) : base) + "/ui/login/oidc/callback"
    }

    /// `application/x-www-form-urlencoded` fields.
    static func form(_ buffer: ByteBuffer) -> [String: String] {
        var fields: [String: String] = [:]
        for pair in String(buffer: buffer).split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard let name = parts.first?.removingPercentEncoding else { continue }
            let value = parts.count > 1 ? String(parts[1]).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? "" : ""
            fields[name] = value
        }
        return fields
    }
}

struct DashboardLogsWire: Codable, Sendable {
    var lines: [LogLineWire]
    var next: Int64
    var finished: Bool
}
