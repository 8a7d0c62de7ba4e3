/// A member's role in a project: what its tokens may do there.
public enum MemberRole: String, Hashable, Sendable, Codable, CaseIterable, Comparable {
    /// Reads the project's objects.
    case viewer
    /// Also submits and cancels jobs.
    case member
    /// Also manages the project's members.
    case admin

    private var rank: Int { switch self { case .viewer: 0; case .member: 1; case .admin: 2 } }
    public static func < (lhs: MemberRole, rhs: MemberRole) -> Bool { lhs.rank < rhs.rank }
}

/// What a token is for.
public enum TokenKind: String, Hashable, Sendable, Codable {
    /// A person's (or a service account's) API token; its rights come from memberships.
    case user
    /// Lets an agent register a node.
    case join
    /// A node's own credential, issued at registration.
    case node
}
