import FastGPUControlPlane
import FastGPUModel
import FastGPUWire
import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import Mustache
import NIOCore
import Synchronization

/// The web dashboard at `/ui`: pages rendered on the server from mustache templates
/// (`Sources/FastGPUAPI/ui/`), a little plain JavaScript for refreshing and following logs, no
/// build step. Every page reads through the same control-plane calls as the API, with the
/// signed-in person's principal: a member sees their projects' jobs and nothing else.
///
/// Signing in: paste an API token (`POST /ui/login`), open a one-time link from `fastgpu ui`
/// (`POST /v1/ui/sessions`, valid 60 s, once), or single sign-on. Each makes a *session token*:
/// an ordinary user token of the same person, expiring in 12 h (never later than the token that
/// made it), stored and revocable like any other, sent back as an HttpOnly
/// cookie scoped to `/ui` (SameSite=Lax). Signing out revokes it. The API never reads the cookie.
final class Dashboard: Sendable {
    static let cookieName = "fastgpu_session"
    static let sessionLifetime: Duration = .seconds(12 * 3600)
    static let linkLifetime: Duration = .seconds(60)
    static let pageSize = 50
    static let nodesPerPage = 50

    let library: MustacheLibrary
    let assets: [String: (type: String, body: String)]
    /// One-time sign-in links: code → the session token it opens, until when.
    private let links = Mutex<[String: (secret: String, expires: Timestamp)]>([:])
    /// Browser sign-ins sent to the identity provider: state → PKCE verifier, nonce, until when.
    private let signIns = Mutex<[String: (verifier: String, nonce: String, expires: Timestamp)]>([:])
    static let maxPendingSignIns = 10_000

    init() {
        var library = MustacheLibrary()
        var assets: [String: (String, String)] = [:]
        if let directory = Bundle.module.url(forResource: "ui", withExtension: nil),
           let files = try? FileManager.default.contentsOfDirectory(atPath: directory.path) {
            for file in files.sorted() {
                guard let text = try? String(contentsOf: directory.appendingPathComponent(file), encoding: .utf8) else { continue }
                if file.hasSuffix(".mustache") {
                    do { try library.register(text, named: String(file.dropLast(".mustache".count))) } catch {
                        preconditionFailure("ui/\(file) does not parse: \(error)")
                    }
                } else if file.hasSuffix(".css") {
                    assets[file] = ("text/css; charset=utf-8", text)
                } else if file.hasSuffix(".js") {
                    assets[file] = ("text/javascript; charset=utf-8", text)
                }
            }
        }
        self.library = library
        self.assets = assets
    }

    // MARK: Sessions

    static func sessionCookie(_ headers: HTTPFields) -> String? { cookie(named: cookieName, in: headers) }

    /// A path of the dashboard (the only paths the session cookie opens, rate-limited like the API).
    static func isPage(_ path: String) -> Bool { path == "/ui" || path.hasPrefix("/ui/") }

    /// The browser sign-in a provider's answer must belong to: its state, in a cookie of the
    /// browser that started it (someone else's callback link cannot sign this browser in).
    static let signInCookieName = "fastgpu_signin"

    static func cookie(named name: String, in headers: HTTPFields) -> String? {
        for header in headers[values: .cookie] {
            for pair in header.split(separator: ";") {
                let trimmed = pair.trimmingCharacters(in: .whitespaces)
                if trimmed.hasPrefix(name + "=") { return String(trimmed.dropFirst(name.count + 1)) }
            }
        }
        return nil
    }

    /// A session token for the person `principal` is: a user token of theirs, 12 h at most.
    static func openSession(for principal: Principal, controlPlane: ControlPlane, now: Timestamp) async throws -> (secret: String, expires: Timestamp) {
        var expires = now + sessionLifetime
        if let parent = principal.expiresAt { expires = min(expires, parent) }
        let view = try await controlPlane.createToken(name: "dashboard session", kind: .user, subject: principal.subject,
                                                      clusterAdmin: principal.clusterAdmin, expiresAt: expires, by: principal)
        return (view.secret ?? "", expires)
    }

    func link(for secret: String, now: Timestamp) -> String {
        let code = Self.randomURLSafe()
        links.withLock { table in
            table = table.filter { $0.value.expires > now }
            // Links are made by signed-in people only (rate-limited); past this many the oldest go.
            if table.count >= Self.maxPendingSignIns, let oldest = table.min(by: { $0.value.expires < $1.value.expires })?.key { table[oldest] = nil }
            table[code] = (secret, now + Self.linkLifetime)
        }
        return code
    }

    /// The session a link opens, once.
    func redeem(_ code: String, now: Timestamp) -> String? {
        links.withLock { table in
            guard let entry = table.removeValue(forKey: code), entry.expires > now else { return nil }
            return entry.secret
        }
    }

    /// Starts a browser sign-in: the state, nonce and PKCE challenge to send to the provider
    /// (nil when too many are pending: a flood of sign-in starts cannot fill memory).
    func startSignIn(now: Timestamp) -> (state: String, nonce: String, challenge: String)? {
        let state = Self.randomURLSafe(), nonce = Self.randomURLSafe(), verifier = Self.randomURLSafe()
        let stored = signIns.withLock { table -> Bool in
            // (Bounded twice: the rate limit of `/ui` per address, and this cap.)
            table = table.filter { $0.value.expires > now }
            guard table.count < Self.maxPendingSignIns else { return false }
            table[state] = (verifier, nonce, now + .seconds(600))
            return true
        }
        guard stored else { return nil }
        return (state, nonce, IDTokenVerifier.base64URL(Data(SHA256.hash(data: Data(verifier.utf8)))))
    }

    /// The verifier and nonce of a sign-in the provider sent back, once.
    func finishSignIn(state: String, now: Timestamp) -> (verifier: String, nonce: String)? {
        signIns.withLock { table in
            guard let entry = table.removeValue(forKey: state), entry.expires > now else { return nil }
            return (entry.verifier, entry.nonce)
        }
    }

    static func randomURLSafe() -> String {
        var generator = SystemRandomNumberGenerator()
        return IDTokenVerifier.base64URL(Data((0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) }))
    }

    static func cookie(_ secret: String, expires: Timestamp?, now: Timestamp, secure: Bool) -> String {
        let maxAge = expires.map { max(0, $0.milliseconds(since: now) / 1000) } ?? 0
        // Lax, not Strict: a sign-in that comes back from the identity provider (or a link opened
        // from chat) is a navigation another site started, and a Strict cookie would not go with
        // it. Lax still keeps it off other sites' posts and subrequests.
        return "\(cookieName)=\(secret); Path=/ui; Max-Age=\(maxAge); HttpOnly; SameSite=Lax" + (secure ? "; Secure" : "")
    }

    // MARK: Rendering

    func page(_ template: String, title: String, principal: Principal?, section: String, _ values: [String: Any], status: HTTPResponse.Status = .ok) -> Response {
        var context = values.compactMapValues(Self.clean)
        context["title"] = title
        let body = library.render(context, withTemplate: template) ?? "template \(template) is missing"
        var layout: [String: Any] = ["title": title, "body": body, "section_\(section)": true]
        if let principal { layout["user"] = ["subject": principal.subject, "admin": principal.clusterAdmin] }
        return Self.html(library.render(layout, withTemplate: "layout") ?? body, status: status)
    }

    static func html(_ text: String, status: HTTPResponse.Status = .ok) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "text/html; charset=utf-8"
        secure(&headers)
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    /// No inline script or style, no framing, no caching of pages with people's data, no referrer
    /// (a one-time link's code stays on this server).
    static func secure(_ headers: inout HTTPFields) {
        headers[.contentSecurityPolicy] = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
        headers[.xContentTypeOptions] = "nosniff"
        headers[.cacheControl] = "no-store"
        // same-origin, not no-referrer: with no-referrer browsers send `Origin: null` on the
        // pages' own form posts. Other sites still get no referrer (a one-time link's code stays here).
        headers[HTTPField.Name("Referrer-Policy")!] = "same-origin"
        headers[HTTPField.Name("X-Frame-Options")!] = "DENY"
    }

    static func redirect(_ location: String, cookie: String? = nil, alsoCookie: String? = nil) -> Response {
        var headers = HTTPFields()
        headers[.location] = location
        for value in [cookie, alsoCookie].compactMap({ $0 }) { headers.append(HTTPField(name: .setCookie, value: value)) }
        secure(&headers)
        return Response(status: .seeOther, headers: headers)
    }

    /// Absent values taken out (mustache would print an empty optional as `nil`, and take it for true).
    static func clean(_ value: Any) -> Any? {
        let mirror = Mirror(reflecting: value)
        if mirror.displayStyle == .optional {
            guard let wrapped = mirror.children.first?.value else { return nil }
            return clean(wrapped)
        }
        if value is NSNull { return nil }
        if let dictionary = value as? [String: Any] { return dictionary.compactMapValues(clean) }
        if let array = value as? [Any] { return array.compactMap(clean) }
        return value
    }

    /// An Encodable as the plain dictionaries and arrays mustache walks.
    static func values<T: Encodable>(_ value: T) -> Any {
        guard let data = try? JSONEncoder().encode(value), let object = try? JSONSerialization.jsonObject(with: data) else { return [:] as [String: Any] }
        return object
    }
}

extension HTTPField.Name {
    static let contentSecurityPolicy = Self("Content-Security-Policy")!
    static let xContentTypeOptions = Self("X-Content-Type-Options")!
}

/// Short forms for people: `3 min ago`, `2.4 GiB`.
enum Human {
    static func age(_ milliseconds: Int64) -> String {
        let seconds = max(0, milliseconds / 1000)
        if seconds < 60 { return "\(seconds) s" }
        if seconds < 3600 { return "\(seconds / 60) min" }
        if seconds < 86_400 { return "\(seconds / 3600) h \(seconds % 3600 / 60) min" }
        return "\(seconds / 86_400) d \(seconds % 86_400 / 3600) h"
    }

    static func gpus(_ milli: Int) -> String {
        milli % 1000 == 0 ? "\(milli / 1000)" : String(format: "%.2f", Double(milli) / 1000)
    }
}
