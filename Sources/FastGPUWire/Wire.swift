// The v1 wire format, shared by the API server, the agent and the `fastgpu` command-line tool:
// one definition of every request and reply body of `openapi.yaml`, so that the server and its
// clients cannot drift apart. No domain types here: the API maps between these structs and the
// control plane's values at its edge.
//
// Request bodies decode strictly: an unknown field (a typo, or a server-owned field such as
// `state`, `epoch` or `node`) is refused by name instead of being silently dropped, and `null` is
// refused instead of being read as "absent". Replies decode leniently, so that a newer server may
// add fields without breaking older clients.

package struct WireError: Error, CustomStringConvertible {
    package var description: String
    package init(description: String) { self.description = description }
}

package struct AnyKey: CodingKey {
    package var stringValue: String
    package var intValue: Int? { nil }
    package init?(stringValue: String) { self.stringValue = stringValue }
    package init?(intValue: Int) { nil }
}

extension Decoder {
    /// A keyed container that first refuses any key the type does not declare.
    package func strictContainer<Key: CodingKey & CaseIterable>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        let any = try container(keyedBy: AnyKey.self)
        let allowed = Set(Key.allCases.map(\.stringValue))
        if let unknown = any.allKeys.map(\.stringValue).sorted().first(where: { !allowed.contains($0) }) {
            let path = (codingPath.map(\.stringValue) + [unknown]).joined(separator: ".")
            throw WireError(description: "field '\(path)' is not accepted")
        }
        // null is not "absent": a field is either left out or given a value.
        if let null = try any.allKeys.sorted(by: { $0.stringValue < $1.stringValue }).first(where: { try any.decodeNil(forKey: $0) }) {
            let path = (codingPath.map(\.stringValue) + [null.stringValue]).joined(separator: ".")
            throw WireError(description: "field '\(path)' must not be null; leave it out instead")
        }
        return try container(keyedBy: type)
    }
}

package struct ProblemWire: Codable, Sendable, Equatable {
    package var type: String
    package var title: String
    package var status: Int
    package var detail: String
    package var requestId: String
    /// The request field the problem is about (`replicas.min`), when it is about one.
    package var field: String?

    package init(type: String, title: String, status: Int, detail: String, requestId: String, field: String? = nil) {
        self.field = field
        self.type = type
        self.title = title
        self.status = status
        self.detail = detail
        self.requestId = requestId
    }
}
