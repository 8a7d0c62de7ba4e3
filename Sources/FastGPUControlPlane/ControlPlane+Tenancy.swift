public import FastGPUModel
public import FastGPUScheduler
public import FastGPUStore

// Projects, members, tokens and project secrets: who may do what, and the credentials that say so.
extension ControlPlane {
    // MARK: - Secrets

    /// The names of a project's secrets, for its members.
    public func secrets(of projectName: String, by principal: Principal) throws -> [SecretView] {
        projectSecrets.names(of: try visibleProject(projectName, by: principal))
    }

    /// Sets (or, with nil, removes) a secret of a project's store: project admins.
    @discardableResult
    public func setSecret(project projectName: String, name: String, value: String?, by principal: Principal) async throws -> SecretView? {
        try checkWritable()
        let id = try visibleProject(projectName, by: principal)
        guard let role = role(of: principal, in: id), role >= .admin else { throw ControlPlaneError.forbidden("only a project admin may change its secrets") }
        let now = clock.now()
        var stored: SecretRecord?
        if let value {
            let record = try projectSecrets.set(name, to: value, in: id, by: principal.subject, now: now)
            pending.direct.append(.saveSecret(record))
            stored = record
        } else {
            try projectSecrets.remove(name, from: id)
            pending.direct.append(.removeSecret(id, name: name))
        }
        self.record(.secretChanged(id, name: name, removed: value == nil), at: now, by: principal.subject)
        try await awaitDurable()
        return stored.map(ProjectSecrets.view)
    }

    /// The job, if the caller may see it; a job of another project is "not found", not "forbidden".

    // MARK: - Projects, members, tokens

    public struct ProjectView: Hashable, Sendable {
        public var record: ProjectRecord
        public var members: [MemberRecord]
    }

    public func projects(by principal: Principal) throws -> [ProjectView] {
        try requireUser(principal)
        return projects.values.sorted { $0.id < $1.id }.filter { role(of: principal, in: $0.id) != nil }.map(projectView)
    }

    public func project(_ name: String, by principal: Principal) throws -> ProjectView {
        let id = try visibleProject(name, by: principal)
        return projectView(projects[id]!)
    }

    func projectView(_ record: ProjectRecord) -> ProjectView {
        var record = record
        if let account = state.projects[record.id] { record.usage = account.usage; record.weight = account.weight }
        let list = (members[record.id] ?? [:]).map { MemberRecord(projectID: record.id, subject: $0.key, role: $0.value) }.sorted { $0.subject < $1.subject }
        return ProjectView(record: record, members: list)
    }

    public func createProject(name: String, weight: Int, by principal: Principal) async throws -> ProjectView {
        try checkWritable()
        try requireClusterAdmin(principal)
        guard Self.isValidName(name) else { throw ControlPlaneError.invalid("a project name is 1 to 63 lowercase letters, digits and dashes") }
        guard projectIDs[name] == nil else { throw ControlPlaneError.conflict("project \(name) already exists") }
        guard (1...1_000_000).contains(weight) else { throw ControlPlaneError.invalid("weight must be 1 to 1000000") }
        let record = createProjectRecord(name: name, weight: weight, now: clock.now())
        try await awaitDurable()
        return projectView(record)
    }

    /// Changes a project's fair-share weight or priority ceiling (cluster admins).
    public func updateProject(_ name: String, weight: Int?, maxPriority: PriorityClass?, by principal: Principal) async throws -> ProjectView {
        try checkWritable()
        try requireClusterAdmin(principal)
        guard let id = projectIDs[name], var record = projects[id] else { throw ControlPlaneError.notFound("project \(name) not found") }
        let now = clock.now()
        if let weight {
            guard (1...1_000_000).contains(weight) else { throw ControlPlaneError.invalid("weight must be 1 to 1000000") }
            try apply(.setProject(id, weight: weight), now: now, by: principal.subject)
            record.weight = weight
        }
        if let maxPriority { record.maxPriority = maxPriority.name }
        projects[id] = record
        pending.projects.insert(id)
        self.record(.projectChanged(id, weight: record.weight, maxPriority: record.maxPriority), at: now, by: principal.subject)
        try await awaitDurable()
        return projectView(record)
    }

    /// A project's quota and what it holds now: within its guarantee, and in all (milli-GPUs).
    public struct QuotaView: Hashable, Sendable {
        public var project: String
        public var quota: Quota?
        public var guaranteedInUseMilliGPUs: Int
        /// Per guarantee (parallel to `quota.guarantees`), the covered work it holds.
        public var guaranteedInUse: [Int]
        public var inUseMilliGPUs: Int
    }

    public func quota(project name: String, by principal: Principal) throws -> QuotaView {
        let id = try visibleProject(name, by: principal)
        let use = state.quotaUse(of: id)
        let quota = state.projects[id]?.quota
        let held = zip(quota?.guarantees ?? [], use.covered).map { min($0.milliGPUs, $1) }
        return QuotaView(project: name, quota: quota, guaranteedInUseMilliGPUs: held.reduce(0, +), guaranteedInUse: held, inUseMilliGPUs: use.total)
    }

    /// Sets or clears a project's quota (cluster admins: guarantees divide the pool). Work already
    /// running keeps its standing; new placements follow the new quota.
    public func setQuota(project name: String, _ quota: Quota?, by principal: Principal) async throws -> QuotaView {
        try checkWritable()
        try requireClusterAdmin(principal)
        let id = try visibleProject(name, by: principal)
        if let quota, let why = Quota.validate(quota) { throw ControlPlaneError.invalid(why) }
        try apply(.setQuota(id, quota), now: clock.now(), by: principal.subject)
        wake()
        try await awaitDurable()
        return try self.quota(project: name, by: principal)
    }

    public func setMember(project name: String, subject: String, role newRole: MemberRole?, by principal: Principal) async throws -> ProjectView {
        try checkWritable()
        let id = try visibleProject(name, by: principal)
        guard let role = role(of: principal, in: id), role >= .admin else { throw ControlPlaneError.forbidden("only a project admin may change members") }
        if let why = InputText.problem(subject, field: "a member's subject", maxBytes: 128) { throw ControlPlaneError.invalid(why) }
        if let newRole {
            setMember(project: id, subject: subject, role: newRole)
        } else {
            members[id]?[subject] = nil
            pending.direct.append(.removeMember(id, subject: subject))
            pending.membersChanged = true
        }
        try await awaitDurable()
        return projectView(projects[id]!)
    }

    public struct TokenView: Hashable, Sendable {
        public var record: TokenRecord
        /// Present only in the answer that created the token.
        public var secret: String?
    }

    /// Creates a token. A cluster admin may create any; a user may create user tokens for
    /// itself, never with more rights than its own.
    public func createToken(name: String, kind: TokenKind, subject: String?, clusterAdmin: Bool, expiresAt: Timestamp?, by principal: Principal) async throws -> TokenView {
        try checkWritable()
        try requireUser(principal)
        let subject = subject ?? principal.subject
        if let why = InputText.problem(subject, field: "a token's subject", maxBytes: 128) { throw ControlPlaneError.invalid(why) }
        guard kind != .node else { throw ControlPlaneError.invalid("node credentials are issued at registration") }
        if !principal.clusterAdmin {
            guard kind == .user, subject == principal.subject, !clusterAdmin else {
                throw ControlPlaneError.forbidden("only a cluster admin may create tokens for others, join tokens or admin tokens")
            }
        }
        let now = clock.now()
        var expiresAt = expiresAt
        if let expiresAt, expiresAt <= now { throw ControlPlaneError.invalid("expiry is in the past") }
        if let parent = principal.expiresAt {
            // A token minted with a token that expires expires no later: a leaked short-lived
            // token cannot be turned into a permanent one.
            if let asked = expiresAt, asked > parent {
                throw ControlPlaneError.invalid("a token cannot outlive the token that creates it; ask for an expiry no later than that token's")
            }
            expiresAt = expiresAt ?? parent
        }
        if let why = InputText.problem(name, field: "a token's name", maxBytes: 128) { throw ControlPlaneError.invalid(why) }
        let secret = issueToken(name: name, kind: kind, subject: subject, clusterAdmin: clusterAdmin, nodeID: nil, expiresAt: expiresAt, now: now)
        try await awaitDurable()
        let record = tokenRecords.values.first { $0.secretHash == TokenSecret.hash(secret) }!
        return TokenView(record: record, secret: secret)
    }

    /// A session token for a person the identity provider vouched for (single sign-on): a user
    /// token of `subject`, a cluster admin's if the server lists them so. Refused for a subject no
    /// project has as a member (and who is no admin): they could see nothing.
    public func signIn(subject: String, clusterAdmin: Bool, expiresAt: Timestamp, via provider: String) async throws -> TokenView {
        try checkWritable()
        if let why = InputText.problem(subject, field: "the signed-in subject", maxBytes: 128) { throw ControlPlaneError.invalid(why) }
        guard clusterAdmin || members.values.contains(where: { $0[subject] != nil }) else {
            throw ControlPlaneError.forbidden("\(subject) is a member of no project here: ask a project admin to add them (fastgpu projects add-member)")
        }
        let now = clock.now()
        guard expiresAt > now else { throw ControlPlaneError.invalid("expiry is in the past") }
        let name = "sign-in via \(provider)"
        let secret = issueToken(name: name.utf8.count <= 128 ? name : "single sign-on", kind: .user,
                                subject: subject, clusterAdmin: clusterAdmin, nodeID: nil, expiresAt: expiresAt, now: now)
        try await awaitDurable()
        let record = tokenRecords.values.first { $0.secretHash == TokenSecret.hash(secret) }!
        return TokenView(record: record, secret: secret)
    }

    public func listTokens(by principal: Principal) throws -> [TokenView] {
        try requireUser(principal)
        return tokenRecords.values.sorted { $0.id < $1.id }
            .filter { principal.clusterAdmin || ($0.subject == principal.subject && $0.kind == .user) }
            .map { TokenView(record: $0, secret: nil) }
    }

    /// Revokes a token; the next request with it is refused.
    public func revokeToken(_ id: UInt64, by principal: Principal) async throws -> TokenView {
        try checkWritable()
        try requireUser(principal)
        guard var record = tokenRecords[id], principal.clusterAdmin || (record.subject == principal.subject && record.kind == .user) else {
            throw ControlPlaneError.notFound("token \(id) not found")
        }
        if record.revokedAt == nil {
            record.revokedAt = clock.now()
            tokenRecords[id] = record
            pending.direct.append(.saveToken(record))
            // Refused from now on, even before the store has it: revoking errs on the safe side.
            tokens.put(record)
        }
        try await awaitDurable()
        return TokenView(record: record, secret: nil)
    }

    func createProjectRecord(name: String, weight: Int, now: Timestamp) -> ProjectRecord {
        let id = ProjectID(nextProjectID)
        nextProjectID += 1
        let record = ProjectRecord(id: id, name: name, weight: weight, createdAt: now)
        projects[id] = record
        projectIDs[name] = id
        try? apply(.setProject(id, weight: weight), now: now)
        pending.projects.insert(id)
        pending.membersChanged = true
        return record
    }

    func setMember(project: ProjectID, subject: String, role: MemberRole) {
        members[project, default: [:]][subject] = role
        pending.direct.append(.saveMember(MemberRecord(projectID: project, subject: subject, role: role)))
        pending.membersChanged = true
    }

    func issueToken(name: String, kind: TokenKind, subject: String, clusterAdmin: Bool, nodeID: NodeID?, expiresAt: Timestamp?, now: Timestamp) -> String {
        let secret = TokenSecret.generate()
        let record = TokenRecord(id: nextTokenID, name: name, secretHash: TokenSecret.hash(secret), displayPrefix: TokenSecret.displayPrefix(secret),
                                 kind: kind, subject: subject, clusterAdmin: clusterAdmin, nodeID: nodeID, createdAt: now, expiresAt: expiresAt)
        nextTokenID += 1
        tokenRecords[record.id] = record
        pending.direct.append(.saveToken(record))
        pending.tokensToPublish.append(record)
        return secret
    }

    /// The node label an agent sets to the address its peers reach it at.
    public static let addressLabel = "fastgpu.io/address"

    static func isValidName(_ name: String) -> Bool {
        !name.isEmpty && name.count <= 63 && name.utf8.allSatisfy { ($0 >= 0x61 && $0 <= 0x7a) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2d }
            && name.first != "-"
    }

    static func idempotencySlot(_ subject: String, _ key: String) -> String { "\(subject)\u{0}\(key)" }
}
