// Projects, members, tokens, secrets, the audit log (`/v1/projects`, `/v1/tokens`, `/v1/audit`).

package struct CreateProjectBody: Codable, Sendable, Equatable {
    package var name: String
    package var weight: Int?

    package enum CodingKeys: String, CodingKey, CaseIterable { case name, weight }

    package init(from decoder: any Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        weight = try c.decodeIfPresent(Int.self, forKey: .weight)
    }

    package init(name: String, weight: Int? = nil) {
        self.name = name
        self.weight = weight
    }
}

package struct MemberBody: Codable, Sendable, Equatable {
    package var role: String

    package enum CodingKeys: String, CodingKey, CaseIterable { case role }

    package init(from decoder: any Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        role = try c.decode(String.self, forKey: .role)
    }

    package init(role: String) {
        self.role = role
    }
}

package struct CreateTokenBody: Codable, Sendable, Equatable {
    package var name: String
    package var kind: String?
    package var subject: String?
    package var clusterAdmin: Bool?
    package var expiresInSeconds: Int64?

    package enum CodingKeys: String, CodingKey, CaseIterable { case name, kind, subject, clusterAdmin, expiresInSeconds }

    package init(from decoder: any Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        kind = try c.decodeIfPresent(String.self, forKey: .kind)
        subject = try c.decodeIfPresent(String.self, forKey: .subject)
        clusterAdmin = try c.decodeIfPresent(Bool.self, forKey: .clusterAdmin)
        expiresInSeconds = try c.decodeIfPresent(Int64.self, forKey: .expiresInSeconds)
    }

    package init(name: String, kind: String? = nil, subject: String? = nil, clusterAdmin: Bool? = nil, expiresInSeconds: Int64? = nil) {
        self.name = name
        self.kind = kind
        self.subject = subject
        self.clusterAdmin = clusterAdmin
        self.expiresInSeconds = expiresInSeconds
    }
}

package struct MemberWire: Codable, Sendable, Equatable {
    package var subject: String
    package var role: String

    package init(subject: String, role: String) {
        self.subject = subject
        self.role = role
    }
}

package struct UsageWire: Codable, Sendable, Equatable {
    package var gpuSeconds: Int64
    package var cpuSeconds: Int64

    package init(gpuSeconds: Int64, cpuSeconds: Int64) {
        self.gpuSeconds = gpuSeconds
        self.cpuSeconds = cpuSeconds
    }
}

package struct ProjectWire: Codable, Sendable, Equatable {
    package var id: UInt64
    package var name: String
    package var weight: Int
    package var usage: UsageWire
    package var members: [MemberWire]
    package var createdAt: String
    /// The highest priority its members may submit with (`low`, `normal`, `high`).
    package var maxPriority: String?

    package init(id: UInt64, name: String, weight: Int, usage: UsageWire, members: [MemberWire], createdAt: String, maxPriority: String? = nil) {
        self.id = id
        self.name = name
        self.weight = weight
        self.usage = usage
        self.members = members
        self.createdAt = createdAt
        self.maxPriority = maxPriority
    }
}

/// `PATCH /v1/projects/{name}`: what a cluster admin changes of a project.
package struct UpdateProjectBody: Codable, Sendable, Equatable {
    package var weight: Int?
    package var maxPriority: String?

    package enum CodingKeys: String, CodingKey, CaseIterable { case weight, maxPriority }

    package init(from decoder: any Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        weight = try c.decodeIfPresent(Int.self, forKey: .weight)
        maxPriority = try c.decodeIfPresent(String.self, forKey: .maxPriority)
    }

    package init(weight: Int? = nil, maxPriority: String? = nil) {
        self.weight = weight
        self.maxPriority = maxPriority
    }
}

package struct ProjectListWire: Codable, Sendable, Equatable {
    package var items: [ProjectWire]

    package init(items: [ProjectWire]) {
        self.items = items
    }
}

package struct TokenWire: Codable, Sendable, Equatable {
    package var id: UInt64
    package var name: String
    package var kind: String
    package var subject: String
    package var clusterAdmin: Bool
    package var prefix: String
    package var createdAt: String
    package var expiresAt: String?
    package var revokedAt: String?
    /// Only in the answer that created the token.
    package var token: String?

    package init(id: UInt64, name: String, kind: String, subject: String, clusterAdmin: Bool, prefix: String, createdAt: String, expiresAt: String? = nil, revokedAt: String? = nil, token: String? = nil) {
        self.id = id
        self.name = name
        self.kind = kind
        self.subject = subject
        self.clusterAdmin = clusterAdmin
        self.prefix = prefix
        self.createdAt = createdAt
        self.expiresAt = expiresAt
        self.revokedAt = revokedAt
        self.token = token
    }
}

package struct TokenListWire: Codable, Sendable, Equatable {
    package var items: [TokenWire]

    package init(items: [TokenWire]) {
        self.items = items
    }
}

/// One audit record: who did what to which object, when, from where, and the outcome.
package struct AuditRecordWire: Codable, Sendable, Equatable {
    package var sequence: Int64
    package var time: String
    package var subject: String
    package var tokenId: UInt64?
    package var action: String
    package var target: String
    package var remoteAddress: String
    package var status: Int
    package var failure: String?
    package var requestId: String

    package init(sequence: Int64, time: String, subject: String, tokenId: UInt64?, action: String, target: String, remoteAddress: String,
                 status: Int, failure: String?, requestId: String) {
        self.sequence = sequence
        self.time = time
        self.subject = subject
        self.tokenId = tokenId
        self.action = action
        self.target = target
        self.remoteAddress = remoteAddress
        self.status = status
        self.failure = failure
        self.requestId = requestId
    }
}

package struct AuditListWire: Codable, Sendable, Equatable {
    package var items: [AuditRecordWire]
    /// Pass as `after` for the next page; absent on the last one.
    package var next: Int64?

    package init(items: [AuditRecordWire], next: Int64?) {
        self.items = items
        self.next = next
    }
}

/// `PUT /v1/projects/{name}/secrets/{secret}`: the value to store.
package struct SecretBody: Codable, Sendable, Equatable {
    package var value: String

    package enum CodingKeys: String, CodingKey, CaseIterable { case value }

    package init(from decoder: any Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        value = try c.decode(String.self, forKey: .value)
    }

    package init(value: String) { self.value = value }
}

/// A secret of a project's store as the API shows it: never its value.
package struct SecretWire: Codable, Sendable, Equatable {
    package var name: String
    package var updatedAt: String
    package var updatedBy: String

    package init(name: String, updatedAt: String, updatedBy: String) {
        self.name = name
        self.updatedAt = updatedAt
        self.updatedBy = updatedBy
    }
}

package struct SecretListWire: Codable, Sendable, Equatable {
    package var items: [SecretWire]

    package init(items: [SecretWire]) { self.items = items }
}

/// `POST /v1/ui/sessions`: a one-time link (a path on the server) that signs its opener in to
/// the web dashboard.
package struct DashboardLinkWire: Codable, Sendable, Equatable {
    package var path: String
    package var linkExpiresAt: String
    package var sessionExpiresAt: String

    package init(path: String, linkExpiresAt: String, sessionExpiresAt: String) {
        self.path = path
        self.linkExpiresAt = linkExpiresAt
        self.sessionExpiresAt = sessionExpiresAt
    }
}

/// `GET /v1/auth/oidc`: the identity provider this server trusts, for `fastgpu login --oidc`.
package struct OIDCConfigurationWire: Codable, Sendable, Equatable {
    package var issuer: String
    package var clientId: String
    package var claim: String

    package init(issuer: String, clientId: String, claim: String) {
        self.issuer = issuer
        self.clientId = clientId
        self.claim = claim
    }
}

/// `POST /v1/auth/oidc`: an ID token from that provider, exchanged for a session token.
package struct OIDCSignInBody: Codable, Sendable, Equatable {
    package var idToken: String

    package enum CodingKeys: String, CodingKey, CaseIterable { case idToken }

    package init(idToken: String) { self.idToken = idToken }

    package init(from decoder: any Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        idToken = try c.decode(String.self, forKey: .idToken)
    }
}

package struct OIDCSessionWire: Codable, Sendable, Equatable {
    package var token: String
    package var subject: String
    package var clusterAdmin: Bool
    package var expiresAt: String

    package init(token: String, subject: String, clusterAdmin: Bool, expiresAt: String) {
        self.token = token
        self.subject = subject
        self.clusterAdmin = clusterAdmin
        self.expiresAt = expiresAt
    }
}
