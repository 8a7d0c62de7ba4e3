import Crypto
public import Foundation

/// The keys that sign requests to one S3-compatible backend. `description` never shows the secret.
public struct S3Credentials: Sendable, Hashable, CustomStringConvertible {
    public var accessKeyID: String
    public var secretAccessKey: String
    /// A temporary credential's session token (`x-amz-security-token`), when there is one.
    public var sessionToken: String?

    public init(accessKeyID: String, secretAccessKey: String, sessionToken: String? = nil) {
        self.accessKeyID = accessKeyID
        self.secretAccessKey = secretAccessKey
        self.sessionToken = sessionToken
    }

    public var description: String { "S3Credentials(\(accessKeyID), secret hidden)" }
}

/// A request as Signature V4 sees it: the method, the `Host` header's value, the path exactly as
/// it is sent (already percent-encoded: S3 does not encode it a second time), the query as
/// decoded name–value pairs (repeated names allowed), and the headers to sign.
public struct SigV4Request: Sendable {
    public var method: String
    public var host: String
    public var encodedPath: String
    public var query: [(name: String, value: String)]
    public var headers: [(name: String, value: String)]

    public init(method: String, host: String, encodedPath: String,
                query: [(name: String, value: String)] = [], headers: [(name: String, value: String)] = []) {
        self.method = method
        self.host = host
        self.encodedPath = encodedPath
        self.query = query
        self.headers = headers
    }
}

/// AWS Signature Version 4 for S3, header and presigned (query) forms.
///
/// Pure: the time is an argument, so the vectors produced with botocore at a fixed time are
/// checked byte for byte (`Tests/FastGPUStorageTests`). The rules that matter for S3 and differ
/// from other AWS services: the path is not normalised or encoded twice, the payload hash is sent
/// as `x-amz-content-sha256`, and a presigned URL signs `UNSIGNED-PAYLOAD`.
public struct SigV4Signer: Sendable {
    public static let unsignedPayload = "UNSIGNED-PAYLOAD"
    public static let emptyPayloadHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    /// S3 refuses presigned URLs valid for longer than 7 days.
    public static let maxPresignSeconds = 7 * 24 * 3600

    public let credentials: S3Credentials
    public let region: String
    public let service: String

    public init(credentials: S3Credentials, region: String, service: String = "s3") {
        self.credentials = credentials
        self.region = region
        self.service = service
    }

    /// The headers to add to `request` so that it is signed: `x-amz-date`,
    /// `x-amz-content-sha256`, the session token when there is one, and `Authorization`.
    public func signedHeaders(for request: SigV4Request, payloadHash: String, at time: AmzTime) -> [(name: String, value: String)] {
        var added: [(name: String, value: String)] = [("x-amz-content-sha256", payloadHash), ("x-amz-date", time.basic)]
        if let token = credentials.sessionToken { added.append(("x-amz-security-token", token)) }
        var signed = request
        signed.headers += added
        let (canonical, signedNames) = Self.canonicalRequest(signed, payloadHash: payloadHash)
        let signature = self.signature(canonicalRequest: canonical, at: time)
        added.append(("Authorization",
                      "AWS4-HMAC-SHA256 Credential=\(credentials.accessKeyID)/\(scope(time)), SignedHeaders=\(signedNames), Signature=\(signature)"))
        return added
    }

    /// The query pairs to append to `request`'s own so that the URL alone authorises it for
    /// `expiresSeconds` (1 s to 7 days) from `time`. Only `host` is signed.
    public func presignedQuery(for request: SigV4Request, expiresSeconds: Int, at time: AmzTime) -> [(name: String, value: String)] {
        precondition((1...Self.maxPresignSeconds).contains(expiresSeconds), "callers range-check the expiry")
        var added: [(name: String, value: String)] = [
            ("X-Amz-Algorithm", "AWS4-HMAC-SHA256"),
            ("X-Amz-Credential", "\(credentials.accessKeyID)/\(scope(time))"),
            ("X-Amz-Date", time.basic),
            ("X-Amz-Expires", String(expiresSeconds)),
        ]
        if let token = credentials.sessionToken { added.append(("X-Amz-Security-Token", token)) }
        added.append(("X-Amz-SignedHeaders", "host"))
        var signed = request
        signed.query += added
        signed.headers = []
        let (canonical, _) = Self.canonicalRequest(signed, payloadHash: Self.unsignedPayload)
        added.append(("X-Amz-Signature", signature(canonicalRequest: canonical, at: time)))
        return added
    }

    /// The signature of a canonical request: what a server that checks a request recomputes.
    public func signature(canonicalRequest: String, at time: AmzTime) -> String {
        let toSign = stringToSign(canonicalRequest: canonicalRequest, at: time)
        return Self.hex(HMAC<SHA256>.authenticationCode(for: Array(toSign.utf8), using: signingKey(day: time.day)))
    }

    public func stringToSign(canonicalRequest: String, at time: AmzTime) -> String {
        "AWS4-HMAC-SHA256\n\(time.basic)\n\(scope(time))\n\(Self.sha256Hex(Array(canonicalRequest.utf8)))"
    }

    func scope(_ time: AmzTime) -> String { "\(time.day)/\(region)/\(service)/aws4_request" }

    private func signingKey(day: String) -> SymmetricKey {
        func hmac(_ key: [UInt8], _ text: String) -> [UInt8] {
            Array(HMAC<SHA256>.authenticationCode(for: Array(text.utf8), using: SymmetricKey(data: key)))
        }
        let dated = hmac(Array("AWS4\(credentials.secretAccessKey)".utf8), day)
        return SymmetricKey(data: hmac(hmac(hmac(dated, region), service), "aws4_request"))
    }

    /// The canonical request and its signed header names (`host;x-amz-date;…`).
    public static func canonicalRequest(_ request: SigV4Request, payloadHash: String) -> (String, String) {
        let encoded: [(name: String, value: String)] = request.query.map { pair in
            (uriEncode(pair.name, keepSlash: false), uriEncode(pair.value, keepSlash: false))
        }
        let sortedPairs = encoded.sorted { (a: (name: String, value: String), b: (name: String, value: String)) -> Bool in
            a.name != b.name ? a.name < b.name : a.value < b.value
        }
        let query = sortedPairs.map { pair in pair.name + "=" + pair.value }.joined(separator: "&")
        var headers: [String: String] = ["host": request.host]
        for (name, value) in request.headers {
            let key = name.lowercased()
            let trimmed = collapseSpaces(value)
            headers[key] = headers[key].map { "\($0),\(trimmed)" } ?? trimmed
        }
        let names = headers.keys.sorted()
        let canonicalHeaders = names.map { "\($0):\(headers[$0]!)\n" }.joined()
        let signedNames = names.joined(separator: ";")
        let path = request.encodedPath.isEmpty ? "/" : request.encodedPath
        return ("\(request.method)\n\(path)\n\(query)\n\(canonicalHeaders)\n\(signedNames)\n\(payloadHash)", signedNames)
    }

    /// RFC 3986 encoding as AWS wants it: every byte but `A–Z a–z 0–9 - _ . ~` as `%XX` (upper
    /// case), and `/` kept only in an object key's path.
    public static func uriEncode(_ text: String, keepSlash: Bool) -> String {
        var out = [UInt8]()
        out.reserveCapacity(text.utf8.count)
        let digits = Array("0123456789ABCDEF".utf8)
        for byte in text.utf8 {
            switch byte {
            case 0x41...0x5a, 0x61...0x7a, 0x30...0x39, 0x2d, 0x5f, 0x2e, 0x7e: out.append(byte)
            case 0x2f where keepSlash: out.append(byte)
            default: out += [0x25, digits[Int(byte >> 4)], digits[Int(byte & 0x0f)]]
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The inverse of `uriEncode` (and of any other percent-encoding): `nil` when a `%` is not
    /// followed by two hex digits or the bytes are not UTF-8. `+` stays `+`: S3 clients encode a
    /// space as `%20`.
    public static func percentDecode(_ text: Substring) -> String? {
        var out = [UInt8]()
        var bytes = text.utf8.makeIterator()
        func hexValue(_ b: UInt8) -> UInt8? {
            switch b {
            case 0x30...0x39: b - 0x30
            case 0x41...0x46: b - 0x41 + 10
            case 0x61...0x66: b - 0x61 + 10
            default: nil
            }
        }
        while let byte = bytes.next() {
            if byte == 0x25 {
                guard let high = bytes.next().flatMap(hexValue), let low = bytes.next().flatMap(hexValue) else { return nil }
                out.append(high << 4 | low)
            } else {
                out.append(byte)
            }
        }
        return String(validating: out, as: UTF8.self)
    }

    /// Splits a raw query string (`a=1&b&c=%2F`) into decoded pairs; `nil` when it is malformed.
    public static func parseQuery(_ raw: Substring) -> [(name: String, value: String)]? {
        guard !raw.isEmpty else { return [] }
        var pairs: [(name: String, value: String)] = []
        for part in raw.split(separator: "&", omittingEmptySubsequences: true) {
            let nameEnd = part.firstIndex(of: "=") ?? part.endIndex
            guard let name = percentDecode(part[..<nameEnd]) else { return nil }
            let value = nameEnd == part.endIndex ? "" : percentDecode(part[part.index(after: nameEnd)...])
            guard let value else { return nil }
            pairs.append((name, value))
        }
        return pairs
    }

    static func collapseSpaces(_ value: String) -> String {
        var out = ""
        var lastWasSpace = false
        for character in value.trimmingSpaces() {
            if character == " " {
                if !lastWasSpace { out.append(character) }
                lastWasSpace = true
            } else {
                out.append(character)
                lastWasSpace = false
            }
        }
        return out
    }

    public static func sha256Hex(_ bytes: some Sequence<UInt8>) -> String {
        var hasher = SHA256()
        hasher.update(data: Array(bytes))
        return hex(hasher.finalize())
    }

    public static func hex(_ bytes: some Sequence<UInt8>) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        for byte in bytes { out += [digits[Int(byte >> 4)], digits[Int(byte & 0x0f)]] }
        return String(decoding: out, as: UTF8.self)
    }
}

/// A moment as Signature V4 writes it (`20261203T123456Z`, day `20261203`), in UTC.
public struct AmzTime: Sendable, Hashable {
    /// Seconds since 1970-01-01T00:00:00Z.
    public let epochSeconds: Int64

    public init(epochSeconds: Int64) { self.epochSeconds = epochSeconds }

    /// The wall clock, now.
    @Sendable public static func now() -> AmzTime { AmzTime(epochSeconds: Int64(Date().timeIntervalSince1970)) }

    /// Parses `yyyyMMdd'T'HHmmss'Z'`; `nil` when it is not one.
    public init?(basic: String) {
        let bytes = Array(basic.utf8)
        guard bytes.count == 16, bytes[8] == UInt8(ascii: "T"), bytes[15] == UInt8(ascii: "Z") else { return nil }
        func number(_ range: Range<Int>) -> Int64? {
            var value: Int64 = 0
            for byte in bytes[range] {
                guard (0x30...0x39).contains(byte) else { return nil }
                value = value * 10 + Int64(byte - 0x30)
            }
            return value
        }
        guard let year = number(0..<4), let month = number(4..<6), let day = number(6..<8),
              let hour = number(9..<11), let minute = number(11..<13), let second = number(13..<15),
              (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second < 61 else { return nil }
        epochSeconds = Self.daysFromCivil(year: year, month: month, day: day) * 86400 + hour * 3600 + minute * 60 + second
    }

    /// `yyyyMMdd'T'HHmmss'Z'`.
    public var basic: String {
        let (year, month, day) = Self.civil(fromDays: epochSeconds.floorDivided(by: 86400))
        let secondOfDay = epochSeconds - epochSeconds.floorDivided(by: 86400) * 86400
        return Self.pad(year, 4) + Self.pad(month, 2) + Self.pad(day, 2) + "T"
            + Self.pad(secondOfDay / 3600, 2) + Self.pad(secondOfDay / 60 % 60, 2) + Self.pad(secondOfDay % 60, 2) + "Z"
    }

    /// `yyyyMMdd`: the credential scope's day.
    public var day: String { String(basic.prefix(8)) }

    private static func pad(_ value: Int64, _ width: Int) -> String {
        let text = String(value)
        return String(repeating: "0", count: max(0, width - text.count)) + text
    }

    /// Howard Hinnant's `days_from_civil`: days since 1970-01-01 of a proleptic Gregorian date.
    static func daysFromCivil(year: Int64, month: Int64, day: Int64) -> Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = y.floorDivided(by: 400)
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146097 + dayOfEra - 719468
    }

    /// The inverse of `daysFromCivil`.
    static func civil(fromDays days: Int64) -> (Int64, Int64, Int64) {
        let z = days + 719468
        let era = z.floorDivided(by: 146097)
        let dayOfEra = z - era * 146097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36524 - dayOfEra / 146096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let mp = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }
}

extension Int64 {
    func floorDivided(by divisor: Int64) -> Int64 {
        let quotient = self / divisor
        return (self % divisor != 0 && (self < 0) != (divisor < 0)) ? quotient - 1 : quotient
    }
}

extension String {
    func trimmingSpaces() -> Substring {
        var slice = Substring(self)
        while slice.first == " " || slice.first == "\t" { slice.removeFirst() }
        while slice.last == " " || slice.last == "\t" { slice.removeLast() }
        return slice
    }
}

/// SHA-256 over bytes that arrive in pieces (a download checked against its manifest).
public struct SHA256Hasher {
    private var hasher = SHA256()

    public init() {}

    public mutating func update(_ data: Data) { hasher.update(data: data) }

    /// The digest in lower-case hex; ends the hashing.
    public var hex: String { SigV4Signer.hex(hasher.finalize()) }
}
