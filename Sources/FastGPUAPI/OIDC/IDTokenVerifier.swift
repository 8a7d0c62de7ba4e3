import Crypto
public import Foundation
import _CryptoExtras

/// Why an ID token was refused, in words a person can act on.
public enum IDTokenRefusal: Error, Hashable, Sendable, CustomStringConvertible {
    case malformed(String)
    case unsupportedAlgorithm(String)
    case unknownKey(String)
    case badSignature
    case wrongIssuer(got: String, expected: String)
    case wrongAudience(got: [String], expected: String)
    case expired(secondsAgo: Int64)
    case notYetValid
    case missingClaim(String)
    case nonceMismatch

    public var description: String {
        switch self {
        case .malformed(let why): "the ID token is malformed: \(why)"
        case .unsupportedAlgorithm(let alg): "the ID token is signed with \(alg); only RS256 and ES256 are accepted"
        case .unknownKey(let kid): "the ID token is signed by key '\(kid)', which the issuer's JWKS does not list"
        case .badSignature: "the ID token's signature does not verify with the issuer's key"
        case .wrongIssuer(let got, let expected): "the ID token was issued by \(got), not by \(expected)"
        case .wrongAudience(let got, let expected): "the ID token is for \(got.joined(separator: ", ")), not for this server's client \(expected)"
        case .expired(let ago): "the ID token expired \(ago) s ago"
        case .notYetValid: "the ID token is not valid yet (issued in the future: check the clocks)"
        case .missingClaim(let claim): "the ID token has no '\(claim)' claim"
        case .nonceMismatch: "the ID token's nonce is not the one this sign-in asked for"
        }
    }
}

/// One key of a JWKS (RFC 7517): RSA (`n`, `e`) or P-256 (`x`, `y`).
public struct JSONWebKey: Codable, Sendable, Hashable {
    public var kty: String
    public var kid: String?
    public var alg: String?
    public var use: String?
    public var n: String?
    public var e: String?
    public var crv: String?
    public var x: String?
    public var y: String?

    public init(kty: String, kid: String?, alg: String? = nil, use: String? = nil, n: String? = nil, e: String? = nil, crv: String? = nil,
                x: String? = nil, y: String? = nil) {
        (self.kty, self.kid, self.alg, self.use, self.n, self.e, self.crv, self.x, self.y) = (kty, kid, alg, use, n, e, crv, x, y)
    }
}

public struct JSONWebKeySet: Codable, Sendable, Hashable {
    public var keys: [JSONWebKey]
    public init(keys: [JSONWebKey]) { self.keys = keys }
}

/// Checks an OpenID Connect ID token (a JWS in compact form): its signature with the issuer's
/// keys (RS256 or ES256 only — never `none`, never a shared-secret HMAC a public key could be
/// passed off as), then `iss` exactly, `aud` containing the client id (and `azp` when several
/// audiences), `exp` and `nbf`/`iat` with a minute of leeway for clocks, and the nonce of a
/// browser sign-in. Returns the claims.
public enum IDTokenVerifier {
    public static let leewaySeconds: Int64 = 60
    /// Larger than any ID token a provider issues (a few KB): refused before any decoding.
    public static let maxTokenBytes = 16 * 1024

    public static func verify(_ token: String, keys: JSONWebKeySet, issuer: String, audience: String, nowSeconds: Int64,
                              nonce: String? = nil) throws(IDTokenRefusal) -> [String: Any] {
        guard token.utf8.count <= maxTokenBytes else { throw .malformed("longer than \(maxTokenBytes) bytes") }
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3 else { throw .malformed("expected header.payload.signature") }
        guard let headerData = base64URL(parts[0]), let header = try? JSONSerialization.jsonObject(with: headerData) as? [String: Any] else {
            throw .malformed("the header is not base64url JSON")
        }
        guard let payloadData = base64URL(parts[1]), let claims = try? JSONSerialization.jsonObject(with: payloadData) as? [String: Any] else {
            throw .malformed("the payload is not base64url JSON")
        }
        guard let signature = base64URL(parts[2]) else { throw .malformed("the signature is not base64url") }
        let alg = header["alg"] as? String ?? "none"
        guard alg == "RS256" || alg == "ES256" else { throw .unsupportedAlgorithm(alg) }
        let kid = header["kid"] as? String
        let wantedType = alg == "RS256" ? "RSA" : "EC"
        let candidates = keys.keys.filter { $0.kty == wantedType && ($0.use == nil || $0.use == "sig") && ($0.alg == nil || $0.alg == alg) && (kid == nil || $0.kid == kid) }
        guard !candidates.isEmpty else { throw .unknownKey(kid ?? "(none named)") }
        let signed = Data((parts[0] + "." + parts[1]).utf8)
        guard candidates.contains(where: { verifies(signature, of: signed, alg: alg, key: $0) }) else { throw .badSignature }

        // Only now, with the signature good, are the claims worth reading.
        guard let iss = claims["iss"] as? String else { throw .missingClaim("iss") }
        guard iss == issuer else { throw .wrongIssuer(got: iss, expected: issuer) }
        let audiences: [String] = (claims["aud"] as? String).map { [$0] } ?? (claims["aud"] as? [String]) ?? []
        guard audiences.contains(audience) else { throw .wrongAudience(got: audiences, expected: audience) }
        if audiences.count > 1, let azp = claims["azp"] as? String, azp != audience { throw .wrongAudience(got: [azp], expected: audience) }
        guard let exp = number(claims["exp"]) else { throw .missingClaim("exp") }
        guard nowSeconds < exp + leewaySeconds else { throw .expired(secondsAgo: nowSeconds - exp) }
        if let nbf = number(claims["nbf"]), nowSeconds + leewaySeconds < nbf { throw .notYetValid }
        if let iat = number(claims["iat"]), nowSeconds + leewaySeconds < iat { throw .notYetValid }
        if let nonce, claims["nonce"] as? String != nonce { throw .nonceMismatch }
        return claims
    }

    static func verifies(_ signature: Data, of data: Data, alg: String, key: JSONWebKey) -> Bool {
        switch alg {
        case "RS256":
            guard let n = key.n.flatMap(base64URL), let e = key.e.flatMap(base64URL),
                  let publicKey = try? _RSA.Signing.PublicKey(n: n, e: e) else { return false }
            return publicKey.isValidSignature(_RSA.Signing.RSASignature(rawRepresentation: signature), for: data, padding: .insecurePKCS1v1_5)
        case "ES256":
            guard key.crv == "P-256", let x = key.x.flatMap(base64URL), let y = key.y.flatMap(base64URL), x.count == 32, y.count == 32,
                  let publicKey = try? P256.Signing.PublicKey(rawRepresentation: x + y),
                  let ecdsa = try? P256.Signing.ECDSASignature(rawRepresentation: signature) else { return false }
            return publicKey.isValidSignature(ecdsa, for: data)
        default:
            return false
        }
    }

    static func number(_ value: Any?) -> Int64? {
        if let value = value as? Int64 { return value }
        if let value = value as? Int { return Int64(value) }
        if let value = value as? Double, value.isFinite, abs(value) < 1e15 { return Int64(value) }
        return nil
    }

    public static func base64URL(_ text: some StringProtocol) -> Data? {
        var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        guard !base64.contains("=") else { return nil }
        while base64.count % 4 != 0 { base64 += "=" }
        return Data(base64Encoded: base64)
    }

    public static func base64URL(_ data: Data) -> String {
        data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }
}
