@preconcurrency import Crypto
import FastGPUAPI
import FastGPUControlPlane
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Synchronization
import Testing
import _CryptoExtras

/// An OpenID Connect provider of the test's own: a key pair, a discovery document, a JWKS, the
/// device authorization and token endpoints, and an authorize endpoint that approves at once.
final class TestIdentityProvider: Sendable {
    let key: _RSA.Signing.PrivateKey
    let otherKey: _RSA.Signing.PrivateKey
    let ecKey = P256.Signing.PrivateKey()
    let issuer = Mutex("")
    /// What the authorize endpoint saw (nonce, PKCE challenge), by code; device polls so far.
    let codes = Mutex<[String: (nonce: String, challenge: String, subject: String)]>([:])
    let devicePolls = Mutex(0)
    let deviceSubject = Mutex("mia@example.com")
    /// The provider's clock, in seconds: the server's (a hand-moved clock), so that its tokens are fresh there.
    let nowSeconds = Mutex<Int64>(0)

    init() throws {
        key = try _RSA.Signing.PrivateKey(keySize: .bits2048)
        otherKey = try _RSA.Signing.PrivateKey(keySize: .bits2048)
    }

    var jwks: JSONWebKeySet {
        let primitives = try! key.publicKey.getKeyPrimitives()
        let point = ecKey.publicKey.rawRepresentation
        return JSONWebKeySet(keys: [
            JSONWebKey(kty: "RSA", kid: "rsa-1", alg: "RS256", use: "sig", n: IDTokenVerifier.base64URL(primitives.modulus),
                       e: IDTokenVerifier.base64URL(primitives.publicExponent)),
            JSONWebKey(kty: "EC", kid: "ec-1", alg: "ES256", use: "sig", crv: "P-256", x: IDTokenVerifier.base64URL(point.prefix(32)),
                       y: IDTokenVerifier.base64URL(point.suffix(32))),
        ])
    }

    /// A signed ID token: claims with defaults a valid token has, overridden by `claims`.
    func token(_ claims: [String: Any] = [:], alg: String = "RS256", kid: String = "rsa-1", signer: _RSA.Signing.PrivateKey? = nil, now: Int64) -> String {
        var payload: [String: Any] = ["iss": issuer.withLock { $0 }, "aud": "fastgpu", "sub": "u-1", "email": "mia@example.com", "email_verified": true,
                                      "iat": now, "exp": now + 300]
        for (name, value) in claims { payload[name] = value }
        payload = payload.filter { !($0.value is NSNull) }
        let header = IDTokenVerifier.base64URL(try! JSONSerialization.data(withJSONObject: ["alg": alg, "kid": kid, "typ": "JWT"]))
        let body = IDTokenVerifier.base64URL(try! JSONSerialization.data(withJSONObject: payload))
        let input = Data("\(header).\(body)".utf8)
        let signature: Data
        switch alg {
        case "ES256": signature = try! ecKey.signature(for: input).rawRepresentation
        case "RS256": signature = try! (signer ?? key).signature(for: input, padding: .insecurePKCS1v1_5).rawRepresentation
        default: signature = Data(HMAC<SHA256>.authenticationCode(for: input, using: SymmetricKey(data: Data("secret".utf8))))
        }
        return "\(header).\(body).\(IDTokenVerifier.base64URL(signature))"
    }

    func router() -> Router<BasicRequestContext> {
        let router = Router()
        router.get("/.well-known/openid-configuration") { _, _ in
            let base = self.issuer.withLock { $0 }
            return Self.json(["issuer": base, "authorization_endpoint": base + "/authorize", "token_endpoint": base + "/token", "jwks_uri": base + "/jwks",
                              "device_authorization_endpoint": base + "/device"])
        }
        router.get("/jwks") { _, _ in Self.json(try JSONSerialization.jsonObject(with: JSONEncoder().encode(self.jwks))) }
        router.post("/device") { _, _ in
            Self.json(["device_code": "device-1", "user_code": "WDJB-MJHT", "verification_uri": self.issuer.withLock { $0 } + "/activate",
                       "expires_in": 600, "interval": 1])
        }
        router.get("/authorize") { request, _ in
            let query = request.uri.queryParameters
            let code = "code-\(UInt64.random(in: 0...UInt64.max))"
            self.codes.withLock { $0[code] = (String(query["nonce"] ?? ""), String(query["code_challenge"] ?? ""), "mia@example.com") }
            var headers = HTTPFields()
            headers[.location] = "\(query["redirect_uri"] ?? "")?code=\(code)&state=\(query["state"] ?? "")"
            return Response(status: .found, headers: headers)
        }
        router.post("/token") { request, _ in
            let form = Self.form(String(buffer: try await request.body.collect(upTo: 65536)))
            let now = self.nowSeconds.withLock { $0 }
            switch form["grant_type"] {
            case "urn:ietf:params:oauth:grant-type:device_code"?:
                guard form["device_code"] == "device-1", form["client_id"] == "fastgpu" else { return Self.json(["error": "invalid_grant"], status: .badRequest) }
                let polls = self.devicePolls.withLock { $0 += 1; return $0 }
                if polls == 1 { return Self.json(["error": "authorization_pending"], status: .badRequest) }
                return Self.json(["id_token": self.token(["email": self.deviceSubject.withLock { $0 }], now: now), "token_type": "Bearer"])
            case "authorization_code"?:
                guard let code = form["code"], let issued = self.codes.withLock({ $0.removeValue(forKey: code) }),
                      let verifier = form["code_verifier"],
                      IDTokenVerifier.base64URL(Data(SHA256.hash(data: Data(verifier.utf8)))) == issued.challenge else {
                    return Self.json(["error": "invalid_grant", "error_description": "unknown code or PKCE verifier"], status: .badRequest)
                }
                return Self.json(["id_token": self.token(["nonce": issued.nonce, "email": issued.subject], now: now), "token_type": "Bearer"])
            default:
                return Self.json(["error": "unsupported_grant_type"], status: .badRequest)
            }
        }
        return router
    }

    static func json(_ object: Any, status: HTTPResponse.Status = .ok) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "application/json"
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: try! JSONSerialization.data(withJSONObject: object))))
    }

    static func form(_ text: String) -> [String: String] {
        var fields: [String: String] = [:]
        for pair in text.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1)
            fields[String(parts[0])] = parts.count > 1 ? String(parts[1]).removingPercentEncoding : ""
        }
        return fields
    }
}

@Suite struct OIDCTests {
    /// The provider on a real port, a server that trusts it, and `body` with both.
    static func withProvider(admins: Set<String> = [], _ body: @Sendable (TestIdentityProvider, Fixture, API, Int) async throws -> Void) async throws {
        let provider = try TestIdentityProvider()
        let app = Application(router: provider.router())
        try await app.test(.live) { client in
            let port = try #require(client.port)
            provider.issuer.withLock { $0 = "http://127.0.0.1:\(port)" }
            let fixture = try await Fixture.make()
            provider.nowSeconds.withLock { $0 = Self.now(fixture) }
            var settings = OIDCSettings(issuer: "http://127.0.0.1:\(port)", clientID: "fastgpu", admins: admins, publicURL: "https://gpus.example.com")
            // The suite runs beside tests that block threads on processes: a loaded machine is not a slow provider.
            settings.requestTimeout = .seconds(300)
            let server = APIServer(controlPlane: fixture.controlPlane, metrics: APIMetrics(), limits: .unlimited, clock: fixture.clock,
                                   oidc: OIDCProvider(settings: settings))
            try await fixture.test(server: server) { api in
                #expect(try await api.post("/v1/projects", token: fixture.admin, body: #"{"name":"vision"}"#).status == .created)
                #expect(try await api.call(.put, "/v1/projects/vision/members/mia@example.com", token: fixture.admin, body: #"{"role":"member"}"#).status == .ok)
                try await body(provider, fixture, api, port)
            }
        }
    }

    static func now(_ fixture: Fixture) -> Int64 { fixture.clock.now().millisecondsSinceEpoch / 1000 }

    @Test func aValidIDTokenSignsAMemberInAndTheTokenItGetsWorks() async throws {
        try await Self.withProvider { provider, fixture, api, port in
            let configuration = try await api.get("/v1/auth/oidc", token: nil).json
            #expect(configuration["issuer"]?.string == "http://127.0.0.1:\(port)" && configuration["clientId"]?.string == "fastgpu")
            let idToken = provider.token(now: Self.now(fixture))
            let reply = try await api.post("/v1/auth/oidc", token: nil, body: #"{"idToken":"\#(idToken)"}"#)
            #expect(reply.status == .created, "\(reply.text)")
            #expect(reply.json["subject"]?.string == "mia@example.com" && reply.json["clusterAdmin"]?.bool == false)
            let token = try #require(reply.json["token"]?.string)
            // The same ID token again opens nothing.
            let replay = try await api.post("/v1/auth/oidc", token: nil, body: #"{"idToken":"\#(idToken)"}"#)
            #expect(replay.status == .unauthorized && replay.detail.contains("used already"), "\(replay.detail)")
            let projects = try await api.get("/v1/projects", token: token).json["items"]
            #expect(projects?[0]?["name"]?.string == "vision" && projects?[1] == nil, "mia sees her project only")
            // ES256 keys sign too.
            let ec = try await api.post("/v1/auth/oidc", token: nil, body: #"{"idToken":"\#(provider.token(alg: "ES256", kid: "ec-1", now: Self.now(fixture)))"}"#)
            #expect(ec.status == .created, "\(ec.text)")
        }
    }

    @Test func expiredWrongAudienceWrongIssuerAndForeignKeysAreRefusedWithTheirReason() async throws {
        try await Self.withProvider { provider, fixture, api, port in
            let now = Self.now(fixture)
            let cases: [(String, String)] = [
                (provider.token(["exp": now - 3600, "iat": now - 7200], now: now), "expired"),
                (provider.token(["aud": "someone-else"], now: now), "not for this server's client fastgpu"),
                (provider.token(["aud": ["fastgpu", "other"], "azp": "other"], now: now), "not for this server's client"),
                (provider.token(["iss": "https://evil.example.com"], now: now), "issued by https://evil.example.com"),
                (provider.token(signer: provider.otherKey, now: now), "signature does not verify"),
                (provider.token(kid: "rotated-away", now: now), "does not list"),
                (provider.token(alg: "HS256", now: now), "only RS256 and ES256"),
                (provider.token(["iat": now + 3600, "exp": now + 7200], now: now), "not valid yet"),
                (provider.token(["email": NSNull()], now: now), "no 'email' claim"),
                (provider.token(["email_verified": false], now: now), "not verified the email"),
                ("not.a-token", "malformed"),
            ]
            for (token, reason) in cases {
                let reply = try await api.post("/v1/auth/oidc", token: nil, body: #"{"idToken":"\#(token)"}"#)
                #expect(reply.status == .unauthorized && reply.detail.contains(reason), "\(reason): \(reply.status) \(reply.detail)")
            }
            // A token with no signature at all (`alg: none`) is refused before anything else.
            let header = IDTokenVerifier.base64URL(Data(#"{"alg":"none"}"#.utf8))
            let body = IDTokenVerifier.base64URL(Data(#"{"iss":"http://127.0.0.1:\#(port)","aud":"fastgpu","email":"mia@example.com","exp":\#(now + 300)}"#.utf8))
            let none = try await api.post("/v1/auth/oidc", token: nil, body: #"{"idToken":"\#(header).\#(body)."}"#)
            #expect(none.status == .unauthorized && none.detail.contains("signed with none"), "\(none.detail)")
            // A person the provider knows but no project has: refused, with what to do.
            let stranger = try await api.post("/v1/auth/oidc", token: nil, body: #"{"idToken":"\#(provider.token(["email": "eve@example.com"], now: now))"}"#)
            #expect(stranger.status == .forbidden && stranger.detail.contains("member of no project"), "\(stranger.detail)")
        }
    }

    @Test func listedSubjectsSignInAsClusterAdmins() async throws {
        try await Self.withProvider(admins: ["ops@example.com"]) { provider, fixture, api, _ in
            let reply = try await api.post("/v1/auth/oidc", token: nil, body: #"{"idToken":"\#(provider.token(["email": "ops@example.com"], now: Self.now(fixture)))"}"#)
            #expect(reply.status == .created && reply.json["clusterAdmin"]?.bool == true, "\(reply.text)")
        }
    }

    /// `fastgpu login --oidc`'s part: the device flow against the provider, then the exchange.
    @Test func theDeviceFlowGetsAnIDTokenTheServerExchanges() async throws {
        try await Self.withProvider { provider, _, api, port in
            let discovery: OIDCDiscovery = try await OIDCHTTP.getJSON("http://127.0.0.1:\(port)/.well-known/openid-configuration", timeout: .seconds(300))
            let prompts = Mutex<[String]>([])
            let idToken = try await OIDCDeviceFlow(discovery: discovery, clientID: "fastgpu", requestTimeout: .seconds(300)).idToken(
                show: { prompt in prompts.withLock { $0.append("\(prompt.verificationURI) \(prompt.userCode)") } }, sleep: { _ in })
            #expect(prompts.withLock { $0 } == ["http://127.0.0.1:\(port)/activate WDJB-MJHT"])
            #expect(provider.devicePolls.withLock { $0 } == 2, "polled past authorization_pending")
            let reply = try await api.post("/v1/auth/oidc", token: nil, body: #"{"idToken":"\#(idToken)"}"#)
            #expect(reply.status == .created, "\(reply.text)")
        }
    }

    /// The dashboard's sign-in: to the provider with state, nonce and a PKCE challenge, back with
    /// a code the server exchanges (proving the verifier), then a session cookie.
    @Test func theDashboardSignsInThroughTheProviderWithPKCE() async throws {
        try await Self.withProvider { _, _, api, port in
            let login = try await api.get("/ui/login", token: nil)
            #expect(login.text.contains(#"href="/ui/login/oidc""#))
            let start = try await api.get("/ui/login/oidc", token: nil)
            #expect(start.status == .seeOther)
            let location = try #require(start.headers[.location])
            #expect(location.hasPrefix("http://127.0.0.1:\(port)/authorize?"))
            let query = try #require(URLComponents(string: location)?.queryItems)
            func item(_ name: String) -> String? { query.first { $0.name == name }?.value }
            #expect(item("redirect_uri") == "https://gpus.example.com/ui/login/oidc/callback" && item("code_challenge_method") == "S256")
            #expect(item("client_id") == "fastgpu" && item("nonce") != nil && (item("state")?.count ?? 0) >= 32)
            // The provider approves and sends the browser back.
            let back = try await Self.redirectLocation(location)
            let callback = try #require(URLComponents(string: back))
            let path = "/ui/login/oidc/callback?" + (callback.percentEncodedQuery ?? "")
            // The state is bound to the browser that started: another browser's callback is refused.
            let bound = try #require(start.headers[.setCookie])
            #expect(bound.hasPrefix("fastgpu_signin=\(item("state") ?? "-");") && bound.contains("HttpOnly") && bound.contains("Path=/ui/login/oidc"))
            let elsewhere = try await api.get(path, token: nil)
            #expect(elsewhere.status == .unauthorized && elsewhere.text.contains("another browser"))
            let browser = ["Cookie": String(bound.prefix { $0 != ";" })]
            let done = try await api.call(.get, path, token: nil, headers: browser)
            #expect(done.status == .seeOther && done.headers[.location] == "/ui", "\(done.status) \(done.text.prefix(500))")
            let cookie = try #require(done.headers[values: .setCookie].first { $0.hasPrefix("fastgpu_session=") })
            #expect(cookie.hasPrefix("fastgpu_session=fgpu_") && cookie.contains("HttpOnly") && cookie.contains("Secure"))
            // The same answer again is refused: a state opens one session.
            let again = try await api.call(.get, path, token: nil, headers: browser)
            #expect(again.status == .unauthorized && again.text.contains("unknown"))
        }
    }

    /// Where the provider sends the browser (its answer's Location, not followed).
    static func redirectLocation(_ url: String) async throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["curl", "-s", "-o", "/dev/null", "-w", "%{redirect_url}", url]
        let out = Pipe()
        process.standardOutput = out
        try process.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return String(decoding: data, as: UTF8.self)
    }
}
