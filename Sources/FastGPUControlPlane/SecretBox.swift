import Crypto
public import Foundation

/// Seals secret values (AES-256-GCM) for the store, and opens them for the one agent that runs
/// the allocation that needs them.
///
/// The key lives in a file of its own beside the database (`DATA-DIR/secret-key`, mode 0600),
/// so a copy of the database alone reveals no secret. Each value is sealed with what it belongs
/// to as associated data (`job:42:HF_TOKEN`, `project:3:hf-token`): a sealed value moved to
/// another job or name does not open.
public struct SecretBox: Sendable {
    /// The key's 32 bytes (`SymmetricKey` is not `Sendable` in this swift-crypto): a key is made from them per use.
    private let keyBytes: [UInt8]
    var key: SymmetricKey { SymmetricKey(data: keyBytes) }

    public init(keyBytes: [UInt8]) {
        precondition(keyBytes.count == 32, "an AES-256 key is 32 bytes")
        self.keyBytes = keyBytes
    }

    /// A box with a fresh random key (tests, and a server's first start).
    public static func random() -> SecretBox { SecretBox(keyBytes: SymmetricKey(size: .bits256).withUnsafeBytes { Array($0) }) }

    /// Reads the key file, or creates it (0600) with a new random key when it does not exist.
    public static func loadOrCreate(at path: String) throws -> SecretBox {
        let files = FileManager.default
        if let data = files.contents(atPath: path) {
            guard data.count == 32 else { throw SecretError("\(path) is not a 32-byte key; restore it from your backup") }
            let mode = (try? files.attributesOfItem(atPath: path)[.posixPermissions] as? Int) ?? 0
            if mode & 0o077 != 0 { try? files.setAttributes([.posixPermissions: 0o600], ofItemAtPath: path) }
            return SecretBox(keyBytes: Array(data))
        }
        let box = SecretBox.random()
        guard files.createFile(atPath: path, contents: Data(box.keyBytes), attributes: [.posixPermissions: 0o600]) else {
            throw SecretError("cannot write the secret key to \(path)")
        }
        return box
    }

    /// Base64 of nonce, ciphertext and tag.
    public func seal(_ value: String, for context: String) throws -> String {
        let box = try AES.GCM.seal(Data(value.utf8), using: key, authenticating: Data(context.utf8))
        guard let combined = box.combined else { throw SecretError("sealing failed") }
        return combined.base64EncodedString()
    }

    public func open(_ sealed: String, for context: String) throws -> String {
        guard let data = Data(base64Encoded: sealed) else { throw SecretError("a sealed secret is not base64") }
        do {
            let box = try AES.GCM.SealedBox(combined: data)
            return String(decoding: try AES.GCM.open(box, using: key, authenticating: Data(context.utf8)), as: UTF8.self)
        } catch {
            throw SecretError("a secret does not open with this server's key (was secret-key replaced?)")
        }
    }

    /// A keyed fingerprint of a value (HMAC-SHA256): what an idempotency hash holds in place
    /// of the value itself, so that the store never keeps a plain hash of a secret.
    public func fingerprint(_ value: String) -> String {
        Data(HMAC<SHA256>.authenticationCode(for: Data(value.utf8), using: key)).base64EncodedString()
    }
}

/// A secret could not be sealed or opened. Its words never hold the value.
public struct SecretError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}
