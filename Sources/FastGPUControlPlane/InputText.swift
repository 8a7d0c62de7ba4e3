/// What text a caller may name things with: names of jobs, nodes, tokens and members' subjects.
///
/// Sizes are counted in UTF-8 bytes, not in characters: one grapheme can hold any number of
/// combining scalars, so a "128-character" limit counted in graphemes lets 10 KB through.
/// Control characters (newline, NUL, ESC) and the invisible bidirectional controls (U+202E
/// turns `gpj.exe` into what reads as `exe.jpg`) are refused: a name is shown to people in
/// terminals, logs and audit records, and must read there as what it is.
public enum InputText {
    /// Why `text` cannot be used as `field`, or nil when it can.
    public static func problem(_ text: String, field: String, maxBytes: Int, allowEmpty: Bool = false) -> String? {
        if text.isEmpty { return allowEmpty ? nil : "\(field) must not be empty" }
        if text.utf8.count > maxBytes { return "\(field) is longer than \(maxBytes) bytes (\(text.utf8.count))" }
        if let bad = text.unicodeScalars.first(where: isRefused) {
            return "\(field) holds a control character (U+\(hex(bad.value)))"
        }
        return nil
    }

    /// Control characters, line and paragraph separators, and bidirectional controls.
    static func isRefused(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x00...0x1f, 0x7f...0x9f: return true
        case 0x2028, 0x2029: return true
        case 0x200e, 0x200f, 0x202a...0x202e, 0x2066...0x2069, 0x061c: return true
        default: return false
        }
    }

    static func hex(_ value: UInt32) -> String {
        let digits = String(value, radix: 16, uppercase: true)
        return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
    }
}
