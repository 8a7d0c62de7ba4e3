import AsyncHTTPClient
import Crypto
import Foundation
import NIOCore
import NIOHTTP1

/// Single sign-on settings of a server (`fastgpu server --oidc-issuer … --oidc-client-id …`).
public struct OIDCSettings: Sendable {
    public var issuer: String
    public var clientID: String
    /// For the dashboard's code exchange, where the provider wants a confidential client.
    public var clientSecret: String?
    /// The claim whose value is the member's subject (`email`, `preferred_username`, `sub`).
    public var claim: String
    /// Subjects who sign in as cluster admins.
    public var admins: Set<String>
    /// How long a session from a sign-in lasts.
    public var sessionLifetime: Duration
    /// Where people reach this server (`https://gpus.example.com`): the dashboard's redirect
    /// URI is this plus `/ui/login/oidc/callback`. Nil: taken from the request's Host.
    public var publicURL: String?
    /// How long one call to the provider (discovery, keys, code exchange) may take.
    public var requestTimeout: Duration = .seconds(10)

    public init(issuer: String, clientID: String, clientSecret: String? = nil, claim: String = "email", admins: Set<String> = [],
                sessionLifetime: Duration = .seconds(12 * 3600), publicURL: String? = nil) {
        self.issuer = issuer.hasSuffix("/") ? String(issuer.dropLast()) : issuer
        self.clientID = clientID
        self.clientSecret = clientSecret
        self.claim = claim
        self.admins = admins
        self.sessionLifetime = sessionLifetime
        self.publicURL = publicURL
    }
}

/// What a provider says about itself at `ISSUER/.well-known/openid-configuration`.
public struct OIDCDiscovery: Codable, Sendable, Hashable {
    public var issuer: String
    public var authorization_endpoint: String
    public var token_endpoint: String
    public var jwks_uri: String
    public var device_authorization_endpoint: String?
}

public struct OIDCFailure: Error, CustomStringConvertible, Sendable {
    public var description: String
    /// The provider did not answer (not: it answered no).
    public var unreachable = false
    public init(_ description: String, unreachable: Bool = false) {
        self.description = description
        self.unreachable = unreachable
    }
}

/// The identity provider as this server uses it: its discovery document and keys, fetched on
/// first use and kept; the keys fetched again (at most every 30 s) when a token names one the
/// cached set lacks, as happens when the provider rotates its keys.
public actor OIDCProvider {
    public nonisolated let settings: OIDCSettings
    private var discovered: OIDCDiscovery?
    private var keys = JSONWebKeySet(keys: [])
    private var keysFetched: ContinuousClock.Instant?
    /// ID tokens already exchanged (their SHA-256, until they expire): one token opens one session.
    private var used: [String: Int64] = [:]
    static let maxRemembered = 100_000

    public init(settings: OIDCSettings) { self.settings = settings }

    public func discovery() async throws -> OIDCDiscovery {
        if let discovered { return discovered }
        let document: OIDCDiscovery = try await OIDCHTTP.getJSON(settings.issuer + "/.well-known/openid-configuration", timeout: settings.requestTimeout)
        let issuer = document.issuer.hasSuffix("/") ? String(document.issuer.dropLast()) : document.issuer
        guard issuer == settings.issuer else {
            throw OIDCFailure("the provider at \(settings.issuer) says its issuer is \(document.issuer)")
        }
        discovered = document
        return document
    }

    /// The subject a verified ID token maps to (the value of the configured claim).
    public func verify(_ token: String, nowSeconds: Int64, nonce: String? = nil) async throws -> String {
        if keysFetched == nil { try await refreshKeys() }
        let issuer = try await issuerAsWritten()
        var claims = verifyNow(token, issuer: issuer, nowSeconds: nowSeconds, nonce: nonce)
        if case .failure(.unknownKey) = claims, let fetched = keysFetched, ContinuousClock.now - fetched > .seconds(30) {
            // A rotated key: fetch the set again (not more often than every 30 s) and try once more.
            try await refreshKeys()
            claims = verifyNow(token, issuer: issuer, nowSeconds: nowSeconds, nonce: nonce)
        }
        return try remember(token, claims: claims.get(), nowSeconds: nowSeconds)
    }

    private func verifyNow(_ token: String, issuer: String, nowSeconds: Int64, nonce: String?) -> Result<[String: Any], IDTokenRefusal> {
        do { return .success(try IDTokenVerifier.verify(token, keys: keys, issuer: issuer, audience: settings.clientID, nowSeconds: nowSeconds, nonce: nonce)) } catch {
            return .failure(error)
        }
    }

    /// The subject of verified claims, once per token.
    private func remember(_ token: String, claims: [String: Any], nowSeconds: Int64) throws -> String {
        guard let subject = claims[settings.claim] as? String, !subject.isEmpty else { throw IDTokenRefusal.missingClaim(settings.claim) }
        if settings.claim == "email", claims["email_verified"] as? Bool == false {
            throw OIDCFailure("the provider has not verified the email address \(subject)")
        }
        // A stolen or logged ID token cannot mint sessions over and over.
        let digest = SHA256.hash(data: Data(token.utf8)).map { String(format: "%02x", $0) }.joined()
        if used.count >= Self.maxRemembered { used = used.filter { $0.value + IDTokenVerifier.leewaySeconds > nowSeconds } }
        guard used[digest] == nil else { throw OIDCFailure("this ID token was used already: sign in again for a new one") }
        guard used.count < Self.maxRemembered else { throw OIDCFailure("too many sign-ins at once; try again in a minute") }
        used[digest] = IDTokenVerifier.number(claims["exp"]) ?? nowSeconds
        return subject
    }

    /// The code of a browser sign-in, exchanged for its ID token (PKCE: the verifier proves this server asked).
    public func exchange(code: String, verifier: String, redirectURI: String) async throws -> String {
        var form = ["grant_type": "authorization_code", "code": code, "redirect_uri": redirectURI, "client_id": settings.clientID,
                    "code_verifier": verifier]
        if let secret = settings.clientSecret { form["client_secret"] = secret }
        let (status, reply) = try await OIDCHTTP.postForm(try await discovery().token_endpoint, form, timeout: settings.requestTimeout)
        guard status == 200, let token = reply["id_token"] as? String else {
            throw OIDCFailure("the provider refused the sign-in code: \(reply["error_description"] as? String ?? reply["error"] as? String ?? "status \(status)")")
        }
        return token
    }

    /// The issuer as the provider writes it in tokens (the discovery document's, with or without a trailing slash).
    private func issuerAsWritten() async throws -> String { try await discovery().issuer }

    private func refreshKeys() async throws {
        keys = try await OIDCHTTP.getJSON(try await discovery().jwks_uri, timeout: settings.requestTimeout)
        keysFetched = .now
    }
}

/// The few HTTP calls OpenID Connect needs, bounded: 10 s (by default), 1 MiB.
public enum OIDCHTTP {

    static let maxBytes = 1 << 20

    public static func getJSON<T: Decodable>(_ url: String, timeout: Duration = .seconds(10)) async throws -> T {
        var request = HTTPClientRequest(url: url)
        request.headers.add(name: "Accept", value: "application/json")
        let response: HTTPClientResponse
        do { response = try await HTTPClient.shared.execute(request, timeout: TimeAmount(timeout)) } catch {
            throw OIDCFailure("\(url) could not be reached: \(error)", unreachable: true)
        }
        let body = try await response.body.collect(upTo: maxBytes)
        guard response.status == .ok else { throw OIDCFailure("\(url) answered \(response.status.code)") }
        do { return try JSONDecoder().decode(T.self, from: Data(body.readableBytesView)) } catch {
            throw OIDCFailure("\(url) did not answer the expected JSON: \(error)")
        }
    }

    public static func postForm(_ url: String, _ fields: [String: String], timeout: Duration = .seconds(10)) async throws -> (status: Int, body: [String: Any]) {
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
        request.headers.add(name: "Accept", value: "application/json")
        request.body = .bytes(ByteBuffer(string: formEncoded(fields)))
        let response: HTTPClientResponse
        do { response = try await HTTPClient.shared.execute(request, timeout: TimeAmount(timeout)) } catch {
            throw OIDCFailure("\(url) could not be reached: \(error)", unreachable: true)
        }
        let body = try await response.body.collect(upTo: maxBytes)
        let object = (try? JSONSerialization.jsonObject(with: Data(body.readableBytesView))) as? [String: Any] ?? [:]
        return (Int(response.status.code), object)
    }

    public static func formEncoded(_ fields: [String: String]) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return fields.sorted { $0.key < $1.key }
            .map { "\($0.key)=\($0.value.addingPercentEncoding(withAllowedCharacters: allowed) ?? "")" }.joined(separator: "&")
    }
}

/// The device authorization grant (RFC 8628), for `fastgpu login --oidc`: the CLI shows a code,
/// the person approves it in a browser, the CLI polls the token endpoint for the ID token.
public struct OIDCDeviceFlow: Sendable {
    public struct Prompt: Sendable {
        public var userCode: String
        public var verificationURI: String
        public var verificationURIComplete: String?
        public var expiresIn: Int
    }

    public let discovery: OIDCDiscovery
    public let clientID: String
    public let requestTimeout: Duration

    public init(discovery: OIDCDiscovery, clientID: String, requestTimeout: Duration = .seconds(10)) {
        self.discovery = discovery
        self.clientID = clientID
        self.requestTimeout = requestTimeout
    }

    /// Asks for a device code, shows the prompt, polls until the person approves (or refuses, or the code expires).
    public func idToken(show: @Sendable (Prompt) -> Void, sleep: @Sendable (Duration) async throws -> Void = { try await Task.sleep(for: $0) }) async throws -> String {
        guard let endpoint = discovery.device_authorization_endpoint else {
            throw OIDCFailure("the provider \(discovery.issuer) offers no device authorization (RFC 8628); sign in to the dashboard instead")
        }
        let (status, started) = try await OIDCHTTP.postForm(endpoint, ["client_id": clientID, "scope": "openid email profile"], timeout: requestTimeout)
        guard status == 200, let deviceCode = started["device_code"] as? String, let userCode = started["user_code"] as? String,
              let uri = (started["verification_uri"] ?? started["verification_url"]) as? String else {
            throw OIDCFailure("the provider refused a device code: \(started["error_description"] as? String ?? started["error"] as? String ?? "status \(status)")")
        }
        let expiresIn = min(IDTokenVerifier.number(started["expires_in"]).map(Int.init) ?? 600, 3600)
        var interval = max(1, min(IDTokenVerifier.number(started["interval"]).map(Int.init) ?? 5, 60))
        show(Prompt(userCode: userCode, verificationURI: uri, verificationURIComplete: started["verification_uri_complete"] as? String, expiresIn: expiresIn))
        let deadline = ContinuousClock.now + .seconds(expiresIn)
        while ContinuousClock.now < deadline {
            try await sleep(.seconds(interval))
            let (_, reply) = try await OIDCHTTP.postForm(discovery.token_endpoint, [
                "grant_type": "urn:ietf:params:oauth:grant-type:device_code", "device_code": deviceCode, "client_id": clientID], timeout: requestTimeout)
            if let token = reply["id_token"] as? String { return token }
            switch reply["error"] as? String {
            case "authorization_pending": continue
            case "slow_down": interval += 5
            case "access_denied": throw OIDCFailure("the sign-in was refused at the provider")
            case "expired_token": throw OIDCFailure("the code expired before it was approved; run the command again")
            case let other: throw OIDCFailure("the provider answered \(other ?? "no ID token")\(reply["error_description"].map { ": \($0)" } ?? "")")
            }
        }
        throw OIDCFailure("the code expired before it was approved; run the command again")
    }
}
