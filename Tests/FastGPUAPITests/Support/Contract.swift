import FastGPUAPI
import Foundation
import Testing
import Yams

/// A JSON value, decoded without Foundation's number bridging (so `true` is never `1`).
enum JSONValue: Decodable, Equatable, CustomStringConvertible {
    case null
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let i = try? c.decode(Int64.self) { self = .int(i) }
        else if let d = try? c.decode(Double.self) { self = .double(d) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([JSONValue].self) { self = .array(a) }
        else { self = .object(try c.decode([String: JSONValue].self)) }
    }

    static func parse(_ text: String) -> JSONValue? { try? JSONDecoder().decode(JSONValue.self, from: Data(text.utf8)) }

    subscript(key: String) -> JSONValue? { if case .object(let o) = self { o[key] } else { nil } }
    subscript(index: Int) -> JSONValue? { if case .array(let a) = self, a.indices.contains(index) { a[index] } else { nil } }
    var string: String? { if case .string(let s) = self { s } else { nil } }
    var int: Int64? { if case .int(let i) = self { i } else { nil } }
    var bool: Bool? { if case .bool(let b) = self { b } else { nil } }
    var array: [JSONValue] { if case .array(let a) = self { a } else { [] } }
    var keys: Set<String> { if case .object(let o) = self { Set(o.keys) } else { [] } }

    var description: String {
        switch self {
        case .null: "null"
        case .bool(let b): "\(b)"
        case .int(let i): "\(i)"
        case .double(let d): "\(d)"
        case .string(let s): "\"\(s)\""
        case .array(let a): "[\(a.map(\.description).joined(separator: ","))]"
        case .object(let o): "{\(o.sorted { $0.key < $1.key }.map { "\"\($0.key)\":\($0.value)" }.joined(separator: ","))}"
        }
    }
}

/// The OpenAPI document, and checks of requests and responses against it: every reply any API
/// test receives is validated here, so a route that answers something its document does not
/// describe fails the suite.
final class Contract: Sendable {
    static let shared = Contract()

    nonisolated(unsafe) let document: [String: Any]
    let operations: [(method: String, template: String, pattern: [Substring])]

    init() {
        let text = APIServer.openAPIDocument
        document = (try? Yams.load(yaml: text) as? [String: Any]) ?? [:]
        var operations: [(String, String, [Substring])] = []
        for (path, item) in (document["paths"] as? [String: Any]) ?? [:] {
            for method in ((item as? [String: Any]) ?? [:]).keys where ["get", "post", "put", "delete", "patch"].contains(method) {
                operations.append((method, path, path.split(separator: "/")))
            }
        }
        self.operations = operations
    }

    /// The document's template for a concrete path (`/v1/jobs/7` → `/v1/jobs/{id}`); literal
    /// segments win over parameters (`/v1/nodes/register` is not `/v1/nodes/{id}`).
    func template(method: String, path: String) -> String? {
        let parts = path.split(separator: "?")[0].split(separator: "/")
        let matches = operations.filter { op in
            op.method == method && op.pattern.count == parts.count
                && zip(op.pattern, parts).allSatisfy { $0.hasPrefix("{") || $0 == $1 }
        }
        return matches.max { $0.pattern.filter { !$0.hasPrefix("{") }.count < $1.pattern.filter { !$0.hasPrefix("{") }.count }?.template
    }

    func operation(method: String, template: String) -> [String: Any]? {
        ((document["paths"] as? [String: Any])?[template] as? [String: Any])?[method] as? [String: Any]
    }

    func resolve(_ node: [String: Any]) -> [String: Any] {
        guard let ref = node["$ref"] as? String, ref.hasPrefix("#/") else { return node }
        var current: Any = document
        for part in ref.dropFirst(2).split(separator: "/") { current = (current as? [String: Any])?[String(part)] ?? [:] }
        return resolve(current as? [String: Any] ?? [:])
    }

    /// Problems with a reply, empty when it matches the document.
    func check(method: String, path: String, status: Int, contentType: String?, body: String, requestBody: String?) -> [String] {
        guard let template = template(method: method, path: path), let operation = operation(method: method, template: template) else {
            return ["\(method.uppercased()) \(path) is not in openapi.yaml"]
        }
        let where_ = "\(method.uppercased()) \(template) → \(status)"
        var problems: [String] = []
        if (200..<300).contains(status), let requestBody, !requestBody.isEmpty,
           let schema = ((resolve(operation["requestBody"] as? [String: Any] ?? [:])["content"] as? [String: Any])?["application/json"] as? [String: Any])?["schema"] as? [String: Any],
           let value = JSONValue.parse(requestBody) {
            problems += validate(value, against: schema, at: "request").map { "\(where_): \($0)" }
        }
        guard let response = (operation["responses"] as? [String: Any])?[String(status)] as? [String: Any] else {
            return problems + ["\(where_): status \(status) is not documented"]
        }
        let resolved = resolve(response)
        guard let content = resolved["content"] as? [String: Any] else {
            return problems + (body.isEmpty ? [] : ["\(where_): documented without a body, answered \(body.prefix(80))"])
        }
        let type = contentType?.split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
        guard let media = content[type] as? [String: Any] else {
            return problems + ["\(where_): content type \(type) is not documented (\(content.keys.sorted()))"]
        }
        guard let schema = media["schema"] as? [String: Any], type.contains("json") else { return problems }
        let documents = type == "application/x-ndjson" ? body.split(separator: "\n").map(String.init) : [body]
        for text in documents {
            guard let value = JSONValue.parse(text) else { problems.append("\(where_): not JSON: \(text.prefix(80))"); continue }
            problems += validate(value, against: schema, at: "body").map { "\(where_): \($0)" }
        }
        return problems
    }

    /// A subset of JSON Schema: $ref, type, required, properties, additionalProperties, items,
    /// enum, minimum, maximum, minItems.
    func validate(_ value: JSONValue, against raw: [String: Any], at path: String) -> [String] {
        let schema = resolve(raw)
        var problems: [String] = []
        if let values = schema["enum"] as? [Any] {
            let allowed = values.map { "\($0)" }
            if let s = value.string, !allowed.contains(s) { problems.append("\(path): \(s) is not one of \(allowed)") }
        }
        switch schema["type"] as? String {
        case "object"?:
            guard case .object(let object) = value else { return ["\(path): expected an object, got \(value)"] }
            for key in (schema["required"] as? [String]) ?? [] where object[key] == nil { problems.append("\(path).\(key) is required") }
            let properties = (schema["properties"] as? [String: Any]) ?? [:]
            for (key, member) in object {
                if let property = properties[key] as? [String: Any] {
                    problems += validate(member, against: property, at: "\(path).\(key)")
                } else if let additional = schema["additionalProperties"] as? [String: Any] {
                    problems += validate(member, against: additional, at: "\(path).\(key)")
                } else if (schema["additionalProperties"] as? Bool) == false {
                    problems.append("\(path).\(key) is not in the schema")
                }
            }
        case "array"?:
            guard case .array(let items) = value else { return ["\(path): expected an array, got \(value)"] }
            if let min = schema["minItems"] as? Int, items.count < min { problems.append("\(path): fewer than \(min) items") }
            if let itemSchema = schema["items"] as? [String: Any] {
                for (i, item) in items.enumerated() { problems += validate(item, against: itemSchema, at: "\(path)[\(i)]") }
            }
        case "string"?:
            if value.string == nil { problems.append("\(path): expected a string, got \(value)") }
        case "integer"?:
            guard let i = value.int else { return ["\(path): expected an integer, got \(value)"] }
            if let min = schema["minimum"] as? Int, i < min { problems.append("\(path): \(i) < minimum \(min)") }
            if let max = schema["maximum"] as? Int, i > max { problems.append("\(path): \(i) > maximum \(max)") }
        case "boolean"?:
            if value.bool == nil { problems.append("\(path): expected a boolean, got \(value)") }
        default:
            break
        }
        return problems
    }
}
