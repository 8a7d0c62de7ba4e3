import Crypto
public import FastGPUModel
public import FastGPUStore
import Synchronization

/// API tokens: `fgpu_` + 30 random base62 characters + a 6-character checksum of them.
///
/// The checksum lets a client, a log scrubber or a secret scanner recognise a FastGPU token and
/// reject a mistyped one without asking the server; the server stores only the SHA-256 of the
/// whole token, so a leaked database holds no usable credential.
public enum TokenSecret {
    public static let prefix = "fgpu_"
    static let alphabet = Array("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz".utf8)
    static let randomLength = 30
    static let checksumLength = 6

    /// A fresh token from the system's secure random source.
    public static func generate() -> String {
        var generator = SystemRandomNumberGenerator()
        var body: [UInt8] = []
        body.reserveCapacity(randomLength)
        for _ in 0..<randomLength { body.append(alphabet[Int(generator.next(upperBound: UInt64(alphabet.count)))]) }
        return prefix + String(decoding: body, as: UTF8.self) + checksum(body)
    }

    /// True when the text has the token's shape and its checksum matches.
    public static func isWellFormed(_ token: String) -> Bool {
        let bytes = Array(token.utf8)
        guard bytes.count == prefix.utf8.count + randomLength + checksumLength, token.hasPrefix(prefix) else { return false }
        let body = bytes[prefix.utf8.count..<(prefix.utf8.count + randomLength)]
        guard body.allSatisfy({ alphabet.contains($0) }) else { return false }
        return String(decoding: bytes.suffix(checksumLength), as: UTF8.self) == checksum(Array(body))
    }

    /// Hex SHA-256 of the whole token: what the store keeps.
    public static func hash(_ token: String) -> String { sha256Hex(Array(token.utf8)) }

    /// What a listing shows: enough to tell tokens apart, useless to an attacker.
    public static func displayPrefix(_ token: String) -> String { String(token.prefix(prefix.count + 4)) }

    static func checksum(_ body: [UInt8]) -> String {
        var crc: UInt32 = 0xffff_ffff
        for byte in body {
            crc ^= UInt32(byte)
            for _ in 0..<8 { crc = (crc >> 1) ^ (0xedb8_8320 & (0 &- (crc & 1))) }
        }
        crc ^= 0xffff_ffff
        var digits: [UInt8] = []
        var value = UInt64(crc)
        for _ in 0..<checksumLength {
            digits.append(alphabet[Int(value % 62)])
            value /= 62
        }
        return String(decoding: digits.reversed(), as: UTF8.self)
    }
}

/// Who is calling, once their token checked out.
public struct Principal: Hashable, Sendable {
    public var tokenID: UInt64
    public var kind: TokenKind
    public var subject: String
    public var clusterAdmin: Bool
    public var nodeID: NodeID?
    /// When the caller's token expires: a token it mints may not outlive it.
    public var expiresAt: Timestamp?

    public init(tokenID: UInt64, kind: TokenKind, subject: String, clusterAdmin: Bool, nodeID: NodeID?, expiresAt: Timestamp? = nil) {
        self.tokenID = tokenID
        self.kind = kind
        self.subject = subject
        self.clusterAdmin = clusterAdmin
        self.nodeID = nodeID
        self.expiresAt = expiresAt
    }
}

/// Why a token was refused. The API answers 401 for all of them with the same words, so a
/// caller learns nothing about which tokens exist; the reason goes to the server's log.
public enum AuthenticationFailure: Error, Hashable, Sendable {
    case missing
    case malformed
    case unknown
    case expired
    case revoked
}

/// The tokens in memory, readable from any thread without waiting for the control plane: every
/// request authenticates here. Revocation replaces the entry at once, so the next request fails.
public final class TokenTable: Sendable {
    private let byHash = Mutex<[String: TokenRecord]>([:])

    public init() {}

    public func replaceAll(_ tokens: [TokenRecord]) {
        byHash.withLock { table in
            table = [:]
            for token in tokens { table[token.secretHash] = token }
        }
    }

    public func put(_ token: TokenRecord) { byHash.withLock { $0[token.secretHash] = token } }

    public func authenticate(_ token: String?, now: Timestamp) -> Result<Principal, AuthenticationFailure> {
        guard let token, !token.isEmpty else { return .failure(.missing) }
        guard TokenSecret.isWellFormed(token) else { return .failure(.malformed) }
        let hash = TokenSecret.hash(token)
        guard let record = byHash.withLock({ $0[hash] }) else { return .failure(.unknown) }
        if record.revokedAt != nil { return .failure(.revoked) }
        if let expiry = record.expiresAt, expiry <= now { return .failure(.expired) }
        return .success(Principal(tokenID: record.id, kind: record.kind, subject: record.subject, clusterAdmin: record.clusterAdmin, nodeID: record.nodeID, expiresAt: record.expiresAt))
    }
}

/// Hex SHA-256 of bytes (an idempotent request's body, so a reused key with another body is caught).
public func sha256Hex(_ bytes: [UInt8]) -> String {
    let hex = Array("0123456789abcdef".utf8)
    var out: [UInt8] = []
    out.reserveCapacity(64)
    for byte in SHA256.hash(data: bytes) {
        out.append(hex[Int(byte >> 4)])
        out.append(hex[Int(byte & 0x0f)])
    }
    return String(decoding: out, as: UTF8.self)
}
