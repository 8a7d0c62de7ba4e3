import Foundation

/// Reads the few XML replies S3 gives (ListBucketResult, InitiateMultipartUploadResult,
/// CompleteMultipartUploadResult, Error) and writes the one body it takes
/// (CompleteMultipartUpload).
///
/// S3's replies are flat and their element names do not nest in themselves, so finding an
/// element's text by name inside a block is exact for them; this is not a general XML parser,
/// and it does not need libxml2 (which FoundationXML would link into every binary).
public enum S3XML {
    /// The contents of every `<tag>…</tag>` (or `<tag attr="…">…</tag>`) in `text`, in order; a
    /// self-closing `<tag/>` gives an empty block.
    public static func blocks(_ tag: String, in text: Substring) -> [Substring] {
        var found: [Substring] = []
        var rest = text
        let open = "<\(tag)"
        let close = "</\(tag)>"
        while let start = rest.range(of: open) {
            guard start.upperBound < rest.endIndex else { break }
            let next = rest[start.upperBound]
            guard next == ">" || next == " " || next == "/" || next == "\n" || next == "\t" else {
                rest = rest[start.upperBound...]
                continue
            }
            guard let tagEnd = rest[start.upperBound...].firstIndex(of: ">") else { break }
            if rest[rest.index(before: tagEnd)] == "/" {
                found.append(rest[tagEnd..<tagEnd])
                rest = rest[rest.index(after: tagEnd)...]
                continue
            }
            let contentStart = rest.index(after: tagEnd)
            guard let end = rest[contentStart...].range(of: close) else { break }
            found.append(rest[contentStart..<end.lowerBound])
            rest = rest[end.upperBound...]
        }
        return found
    }

    /// The decoded text of the first `<tag>` in `text`.
    public static func value(_ tag: String, in text: Substring) -> String? {
        blocks(tag, in: text).first.map { unescape($0) }
    }

    static func unescape(_ text: Substring) -> String {
        guard text.contains("&") else { return String(text) }
        var out = ""
        var rest = text
        while let amp = rest.firstIndex(of: "&") {
            out += rest[..<amp]
            guard let semicolon = rest[amp...].firstIndex(of: ";"), rest.distance(from: amp, to: semicolon) <= 10 else {
                out += rest[amp...]
                return out
            }
            let entity = rest[rest.index(after: amp)..<semicolon]
            switch entity {
            case "amp": out += "&"
            case "lt": out += "<"
            case "gt": out += ">"
            case "quot": out += "\""
            case "apos": out += "'"
            default:
                let scalar: Unicode.Scalar?
                if entity.hasPrefix("#x") || entity.hasPrefix("#X") {
                    scalar = UInt32(entity.dropFirst(2), radix: 16).flatMap(Unicode.Scalar.init)
                } else if entity.hasPrefix("#") {
                    scalar = UInt32(entity.dropFirst(), radix: 10).flatMap(Unicode.Scalar.init)
                } else {
                    scalar = nil
                }
                if let scalar { out.unicodeScalars.append(scalar) } else { out += rest[amp...semicolon] }
            }
            rest = rest[rest.index(after: semicolon)...]
        }
        return out + rest
    }

    public static func escape(_ text: String) -> String {
        var out = ""
        for character in text {
            switch character {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&apos;"
            default: out.append(character)
            }
        }
        return out
    }

    static func completeMultipartBody(_ parts: [(number: Int, etag: String)]) -> String {
        "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
            + parts.map { "<Part><PartNumber>\($0.number)</PartNumber><ETag>\(escape($0.etag))</ETag></Part>" }.joined()
            + "</CompleteMultipartUpload>"
    }
}
