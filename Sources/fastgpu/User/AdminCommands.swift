import ArgumentParser
import FastGPUAPI
import FastGPUClient
import FastGPUWire
import Foundation

struct LoginCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "login",
        abstract: "Check a server URL and token, and save them for the next commands.",
        discussion: "Saved to ~/.config/fastgpu/config.json (FASTGPU_CONFIG to change), readable only by you."
    )

    @Option(help: "The FastGPU server's URL.") var server = CLIConfig.localServer
    @Option(help: "An API token (or --token-file, or FASTGPU_TOKEN).") var token: String?
    @Option(help: "A file holding the token, such as DATA-DIR/admin-token.") var tokenFile: String?
    @Option(help: "The project to use when none is named.") var project: String?
    @Option(help: "PEM file of the CA that signed an https server's certificate; saved with the login.") var caFile: String?
    @Option(help: ArgumentHelp("Sign in with single sign-on instead of a token: approve a code in a browser (device authorization). The issuer defaults to the one the server trusts.",
                               valueName: "issuer"))
    var oidc: String?
    @Flag(help: "Sign in with the single sign-on the server trusts (as --oidc, naming no issuer).") var sso = false

    func run() async throws {
        if oidc != nil || sso { return try await signInWithOIDC() }
        var secret = token ?? ProcessInfo.processInfo.environment["FASTGPU_TOKEN"]
        if let tokenFile {
            guard let data = FileManager.default.contents(atPath: tokenFile) else { throw CommandFailure("cannot read \(tokenFile)") }
            secret = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        }
        if secret == nil, server == CLIConfig.localServer { secret = CLIConfig.localAdminToken() }
        guard let secret, !secret.isEmpty else { throw CommandFailure("give --token TOKEN or --token-file FILE") }
        let caPath = caFile.map { URL(fileURLWithPath: $0).standardizedFileURL.path }
        let client = try await ClientOptions.parse(["--server", server, "--token", secret] + (caPath.map { ["--ca-file", $0] } ?? [])).client()
        // Any authenticated read proves the URL and the token.
        let projects = try await client.projects()
        if let project, !projects.items.contains(where: { $0.name == project }) {
            throw CommandFailure("project '\(project)' does not exist or is not yours; yours: \(projects.items.map(\.name).joined(separator: ", "))")
        }
        try CLIConfig(server: client.servers.description, token: secret, project: project, caFile: caPath).save()
        Output.write("logged in to \(client.server); projects: \(projects.items.map(\.name).joined(separator: ", ")); saved to \(CLIConfig.path)\n")
    }
}

extension LoginCommand {
    /// `--oidc`: the server names its provider and client; the provider's device flow gives an
    /// ID token; the server exchanges it for a session token, which is saved like any login.
    func signInWithOIDC() async throws {
        let caPath = caFile.map { URL(fileURLWithPath: $0).standardizedFileURL.path }
        let anonymous = try await ClientOptions.parse(["--server", server, "--token", "none"] + (caPath.map { ["--ca-file", $0] } ?? [])).client()
        let configuration: OIDCConfigurationWire
        do { configuration = try await anonymous.oidcConfiguration() } catch {
            throw CommandFailure("\(server) offers no single sign-on (\(error)); log in with --token")
        }
        if let oidc, !oidc.isEmpty, oidc.trimmingCharacters(in: CharacterSet(charactersIn: "/")) != configuration.issuer.trimmingCharacters(in: CharacterSet(charactersIn: "/")) {
            throw CommandFailure("\(server) trusts \(configuration.issuer), not \(oidc)")
        }
        let discovery: OIDCDiscovery
        do { discovery = try await OIDCHTTP.getJSON(configuration.issuer + "/.well-known/openid-configuration") } catch {
            throw CommandFailure("cannot read \(configuration.issuer)'s OpenID configuration: \(error)")
        }
        let idToken: String
        do {
            idToken = try await OIDCDeviceFlow(discovery: discovery, clientID: configuration.clientId).idToken(show: { prompt in
                Output.error("To sign in, open \(prompt.verificationURIComplete ?? prompt.verificationURI) and enter the code \(prompt.userCode) (valid \(prompt.expiresIn / 60) min).\n")
            })
        } catch let failure as OIDCFailure { throw CommandFailure(failure.description) }
        let session: OIDCSessionWire
        do { session = try await anonymous.oidcSignIn(idToken: idToken) } catch { throw CommandFailure("the server refused the sign-in: \(error)") }
        let client = try await ClientOptions.parse(["--server", server, "--token", session.token] + (caPath.map { ["--ca-file", $0] } ?? [])).client()
        let projects = try await client.projects()
        try CLIConfig(server: client.servers.description, token: session.token, project: project, caFile: caPath).save()
        Output.write("signed in to \(client.server) as \(session.subject)\(session.clusterAdmin ? " (cluster admin)" : "") until \(session.expiresAt); projects: \(projects.items.map(\.name).joined(separator: ", ")); saved to \(CLIConfig.path)\n")
    }
}

/// A node as people name it: its id (`3`, `node-3`) or its name.
func resolveNode(_ text: String, client: FastGPUClient) async throws -> UInt64 {
    let digits = text.hasPrefix("node-") ? String(text.dropFirst(5)) : text
    if let id = UInt64(digits) { return id }
    let nodes = try await client.nodes()
    guard let node = nodes.items.first(where: { $0.name == text }) else { throw CommandFailure("no node named '\(text)'") }
    return node.id
}

struct NodesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "nodes",
        abstract: "The GPU servers of the pool: list, inspect, cordon, drain.",
        subcommands: [List.self, Show.self, SetState.self, Uncordon.self, Drain.self, Replace.self],
        defaultSubcommand: List.self
    )

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "ls", abstract: "Every node with its state and free GPUs.")
        @OptionGroup var connection: ClientOptions
        @OptionGroup var format: OutputOptions

        func run() async throws {
            let nodes = try await connection.client().nodes()
            if format.json { return try Output.json(nodes) }
            Output.write(Output.table(["ID", "NAME", "STATE", "GPUS FREE", "MODEL", "CPU", "MEMORY", "JOBS", "HEARTBEAT"], nodes.items.map { node in
                let free = node.gpus.filter { $0.usage == "free" && $0.healthy }.count
                let unhealthy = node.gpus.filter { !$0.healthy }.count
                let models = Set(node.gpus.map(\.model)).sorted().joined(separator: ",")
                return [String(node.id), node.name, node.state, "\(free)/\(node.gpus.count)" + (unhealthy > 0 ? " (\(unhealthy) unhealthy)" : ""),
                        models.isEmpty ? "-" : models, "\((node.cpuMillis - node.allocatedCpuMillis) / 1000)/\(node.cpuMillis / 1000)",
                        "\((node.memoryMiB - node.allocatedMemoryMiB) / 1024)/\(node.memoryMiB / 1024) GiB", String(node.allocations.count),
                        node.lastHeartbeatAt.map { WireTime.age($0) } ?? "-"]
            }))
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "show", abstract: "One node: its GPUs, their health and use.")
        @OptionGroup var connection: ClientOptions
        @OptionGroup var format: OutputOptions
        @Argument(help: "The node's id or name.") var node: String

        func run() async throws {
            let client = try await connection.client()
            let node = try await client.node(try await resolveNode(self.node, client: client))
            if format.json { return try Output.json(node) }
            var text = """
                Node \(node.id)  \(node.name)
                  state        \(node.state)
                  cpu          \(node.allocatedCpuMillis / 1000)/\(node.cpuMillis / 1000) cores allocated
                  memory       \(node.allocatedMemoryMiB)/\(node.memoryMiB) MiB allocated
                  registered   \(node.registeredAt)
                  heartbeat    \(node.lastHeartbeatAt.map { "\($0) (\(WireTime.age($0)))" } ?? "never")
                  allocations  \(node.allocations.isEmpty ? "-" : node.allocations.map(String.init).joined(separator: ", "))

                """
            if !node.labels.isEmpty { text += "  labels       " + node.labels.keys.sorted().map { "\($0)=\(node.labels[$0]!)" }.joined(separator: " ") + "\n" }
            text += "\nGPUs:\n" + Output.table(["INDEX", "MODEL", "MEMORY", "ISLAND", "USE", "FREE", "POWER", "ENERGY", "HEALTH", "UUID"], node.gpus.map { gpu in
                [String(gpu.index), gpu.model + (gpu.migEnabled ? " (MIG)" : ""), "\(gpu.memoryMiB) MiB", gpu.island.map(String.init) ?? "-", gpu.usage,
                 String(format: "%.3g", Double(gpu.freeMilli) / 1000), gpu.powerWatts.map { String(format: "%.0f W", $0) } ?? "-",
                 gpu.energyJoules.map { String(format: "%.1f kWh", $0 / 3_600_000) } ?? "-",
                 gpu.healthy ? "ok" : "unhealthy: " + (gpu.healthReason ?? "?"), gpu.uuid]
            })
            Output.write(text)
        }
    }

    /// `cordon`: no new work; what runs stays.
    struct SetState: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "cordon", abstract: "Place no new work on a node; what runs there stays.")
        @OptionGroup var connection: ClientOptions
        @Argument(help: "The node's id or name.") var node: String

        func run() async throws { try await change(connection, node, "cordon") }
    }

    struct Uncordon: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "uncordon", abstract: "Let a cordoned or drained node take work again.")
        @OptionGroup var connection: ClientOptions
        @Argument(help: "The node's id or name.") var node: String

        func run() async throws { try await change(connection, node, "uncordon") }
    }

    struct Drain: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "drain", abstract: "Place no new work on a node and let what runs there finish.")
        @OptionGroup var connection: ClientOptions
        @Argument(help: "The node's id or name.") var node: String

        func run() async throws { try await change(connection, node, "drain") }
    }

    struct Replace: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "replace",
            abstract: "Let another machine take a node's name: revoke its credential and requeue its work.",
            discussion: "The node's agent is refused from its next request on; the next agent that registers the name with a join token gets the node.")
        @OptionGroup var connection: ClientOptions
        @Argument(help: "The node's id or name.") var node: String

        func run() async throws { try await change(connection, node, "replace") }
    }

    static func change(_ connection: ClientOptions, _ node: String, _ action: String) async throws {
        let client = try await connection.client()
        let result = try await client.setNodeState(try await resolveNode(node, client: client), action: action)
        Output.write("node \(result.id) (\(result.name)): \(result.state)\n")
    }
}

struct ProjectsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "projects",
        abstract: "Projects (teams), their members and roles.",
        subcommands: [List.self, Show.self, Create.self, Set.self, AddMember.self, RemoveMember.self],
        defaultSubcommand: List.self
    )

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "ls", abstract: "The projects you can see.")
        @OptionGroup var connection: ClientOptions
        @OptionGroup var format: OutputOptions

        func run() async throws {
            let projects = try await connection.client().projects()
            if format.json { return try Output.json(projects) }
            Output.write(Output.table(["NAME", "WEIGHT", "GPU HOURS", "CPU HOURS", "MEMBERS", "CREATED"], projects.items.map { p in
                [p.name, String(p.weight), String(format: "%.1f", Double(p.usage.gpuSeconds) / 3600), String(format: "%.1f", Double(p.usage.cpuSeconds) / 3600),
                 String(p.members.count), WireTime.age(p.createdAt)]
            }))
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "show", abstract: "One project with its members.")
        @OptionGroup var connection: ClientOptions
        @OptionGroup var format: OutputOptions
        @Argument(help: "The project's name.") var name: String

        func run() async throws {
            let project = try await connection.client().project(name)
            if format.json { return try Output.json(project) }
            Output.write("Project \(project.name)  weight \(project.weight)  used \(String(format: "%.1f", Double(project.usage.gpuSeconds) / 3600)) GPU hours\n\n"
                + Output.table(["MEMBER", "ROLE"], project.members.map { [$0.subject, $0.role] }))
        }
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "create", abstract: "A new project (cluster admins).")
        @OptionGroup var connection: ClientOptions
        @Argument(help: "The project's name.") var name: String
        @Option(help: "Its fair-share weight.") var weight: Int?

        func run() async throws {
            let project = try await connection.client().createProject(CreateProjectBody(name: name, weight: weight))
            Output.write("project \(project.name) created (weight \(project.weight))\n")
        }
    }

    struct Set: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "set", abstract: "Change a project's weight or the highest priority its members may use (cluster admins).",
            discussion: "A job at a higher priority preempts lower ones, other projects' included: --max-priority high lets this project do that.")
        @OptionGroup var connection: ClientOptions
        @Argument(help: "The project's name.") var name: String
        @Option(help: "Its fair-share weight (1 to 1000000).") var weight: Int?
        @Option(help: "low, normal or high.") var maxPriority: String?

        func run() async throws {
            if let maxPriority, !["low", "normal", "high"].contains(maxPriority) {
                throw CommandFailure("--max-priority must be low, normal or high, not '\(maxPriority)'")
            }
            guard weight != nil || maxPriority != nil else { throw CommandFailure("nothing to change: give --weight or --max-priority") }
            let project = try await connection.client().updateProject(name, UpdateProjectBody(weight: weight, maxPriority: maxPriority))
            Output.write("project \(project.name): weight \(project.weight), max priority \(project.maxPriority ?? "normal")\n")
        }
    }

    struct AddMember: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "add-member", abstract: "Give someone a role in a project (or change it).")
        @OptionGroup var connection: ClientOptions
        @Argument(help: "The project.") var project: String
        @Argument(help: "The member (a token's subject).") var subject: String
        @Option(help: "admin, member or viewer.") var role = "member"

        func run() async throws {
            guard ["admin", "member", "viewer"].contains(role) else { throw CommandFailure("--role must be admin, member or viewer, not '\(role)'") }
            let result = try await connection.client().setMember(project: project, subject: subject, role: role)
            Output.write("\(subject) is \(role) of \(result.name)\n")
        }
    }

    struct RemoveMember: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "remove-member", abstract: "Take someone out of a project.")
        @OptionGroup var connection: ClientOptions
        @Argument(help: "The project.") var project: String
        @Argument(help: "The member.") var subject: String

        func run() async throws {
            let result = try await connection.client().removeMember(project: project, subject: subject)
            Output.write("\(subject) is no longer in \(result.name)\n")
        }
    }
}

struct TokensCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokens",
        abstract: "API tokens: for people, and join tokens for new nodes.",
        subcommands: [List.self, Create.self, Revoke.self],
        defaultSubcommand: List.self
    )

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "ls", abstract: "Tokens (their prefixes; secrets are never shown again).")
        @OptionGroup var connection: ClientOptions
        @OptionGroup var format: OutputOptions

        func run() async throws {
            let tokens = try await connection.client().tokens()
            if format.json { return try Output.json(tokens) }
            Output.write(Output.table(["ID", "NAME", "KIND", "SUBJECT", "PREFIX", "CREATED", "EXPIRES", "STATE"], tokens.items.map { t in
                [String(t.id), t.name, t.kind + (t.clusterAdmin ? " (admin)" : ""), t.subject, t.prefix + "…", WireTime.age(t.createdAt),
                 WireTime.until(t.expiresAt) ?? "never", t.revokedAt == nil ? "active" : "revoked"]
            }))
        }
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "create", abstract: "A new token; its secret is printed once.")
        @OptionGroup var connection: ClientOptions
        @Argument(help: "What the token is for.") var name: String
        @Option(help: "user (a person or program) or join (registers nodes).") var kind = "user"
        @Option(help: "Whom a user token acts as (default: its name).") var subject: String?
        @Flag(help: "The token may administer the whole cluster.") var clusterAdmin = false
        @Option(help: ArgumentHelp("Expire after this long (30d, 12h).", valueName: "duration")) var expiresIn: String?

        func run() async throws {
            guard ["user", "join"].contains(kind) else { throw CommandFailure("--kind must be user or join, not '\(kind)'") }
            let seconds = try expiresIn.map { try JobSpec.parseSeconds($0, flag: "--expires-in") }
            let token = try await connection.client().createToken(CreateTokenBody(name: name, kind: kind, subject: subject ?? (kind == "user" ? name : nil),
                                                                                  clusterAdmin: clusterAdmin ? true : nil, expiresInSeconds: seconds))
            Output.write("\(token.token ?? "")\n")
            Output.error("token \(token.id) (\(token.kind), subject \(token.subject)) created; the secret above is not shown again\n")
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "revoke", abstract: "Revoke a token; it is refused from the next request on.")
        @OptionGroup var connection: ClientOptions
        @Argument(help: "The token's id.") var id: UInt64

        func run() async throws {
            let token = try await connection.client().revokeToken(id)
            Output.write("token \(token.id) (\(token.name)) revoked\n")
        }
    }
}

/// `fastgpu ui`: a link that signs you in to the web dashboard.
struct UICommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ui",
        abstract: "Print a link to the web dashboard that signs you in (once, within 60 s; the session lasts 12 h).")
    @OptionGroup var connection: ClientOptions

    func run() async throws {
        let client = try await connection.client()
        let link = try await client.dashboardLink()
        let server = ServerList(connection.server ?? ProcessInfo.processInfo.environment["FASTGPU_SERVER"] ?? CLIConfig.load().server ?? CLIConfig.localServer)
            .urls.first ?? CLIConfig.localServer
        Output.write("\(server)\(link.path)\n")
        Output.error("open it within 60 s (it works once); the session lasts until \(link.sessionExpiresAt)\n")
    }
}

/// `fastgpu audit`: the newest audit records (cluster admins).
struct AuditCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit",
        abstract: "Who did what: mutating requests and refused credentials, oldest first (cluster admins).")
    @OptionGroup var connection: ClientOptions
    @OptionGroup var format: OutputOptions
    @Option(help: "Only this subject's records (a token's subject, or node:NAME).") var subject: String?
    @Option(help: "Records after this sequence number.") var after: Int64 = 0
    @Option(help: "At most this many records (1 to 1000).") var limit = 100

    func run() async throws {
        guard (1...1000).contains(limit), after >= 0 else { throw CommandFailure("--limit must be 1 to 1000 and --after not negative") }
        let page = try await connection.client().audit(after: after, limit: limit, subject: subject)
        if format.json { return try Output.json(page) }
        Output.write(Output.table(["SEQ", "TIME", "WHO", "ACTION", "TARGET", "FROM", "STATUS"], page.items.map { r in
            [String(r.sequence), r.time, r.subject.isEmpty ? "(\(r.failure ?? "anonymous"))" : r.subject, r.action, r.target, r.remoteAddress, String(r.status)]
        }))
        if let next = page.next { Output.write("more: fastgpu audit --after \(next)\n") }
    }
}

/// `fastgpu secrets`: a project's secret store. Values go in, never come out.
struct SecretsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "secrets",
        abstract: "A project's secrets: stored encrypted, used by jobs with --secret-ref, never shown again.",
        subcommands: [List.self, Set.self, Remove.self],
        defaultSubcommand: List.self)

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "ls", abstract: "The names of a project's secrets.")
        @OptionGroup var connection: ClientOptions
        @OptionGroup var format: OutputOptions
        @Argument(help: "The project.") var project: String

        func run() async throws {
            let secrets = try await connection.client().secrets(project: project)
            if format.json { return try Output.json(secrets) }
            Output.write(Output.table(["NAME", "UPDATED", "BY"], secrets.items.map { [$0.name, WireTime.age($0.updatedAt), $0.updatedBy] }))
        }
    }

    struct Set: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "set", abstract: "Store a secret (project admins); its value is read from standard input.",
            discussion: "printf %s \"$HF_TOKEN\" | fastgpu secrets set vision hf-token   # then: fastgpu run --secret-ref HF_TOKEN=hf-token ...")
        @OptionGroup var connection: ClientOptions
        @Argument(help: "The project.") var project: String
        @Argument(help: "The secret's name.") var name: String

        func run() async throws {
            // From standard input, never from an argument: arguments show in ps and shell history.
            let data = FileHandle.standardInput.readDataToEndOfFile()
            guard data.count <= 64 * 1024 else { throw CommandFailure("a secret is at most 64 KiB") }
            var value = String(decoding: data, as: UTF8.self)
            if value.hasSuffix("\n") { value.removeLast() }
            guard !value.isEmpty else { throw CommandFailure("no value on standard input: printf %s \"$VALUE\" | fastgpu secrets set \(project) \(name)") }
            let secret = try await connection.client().setSecret(project: project, name: name, value: value)
            Output.write("secret \(secret.name) of \(project) stored\n")
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "rm", abstract: "Remove a secret (jobs already submitted keep their copy).")
        @OptionGroup var connection: ClientOptions
        @Argument(help: "The project.") var project: String
        @Argument(help: "The secret's name.") var name: String

        func run() async throws {
            try await connection.client().removeSecret(project: project, name: name)
            Output.write("secret \(name) of \(project) removed\n")
        }
    }
}
