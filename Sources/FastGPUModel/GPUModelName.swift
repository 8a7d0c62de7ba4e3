/// How a requested GPU model names an offered one.
///
/// Users write what they know (`H100`, `a100-80gb`); nodes report the full name (`H100-80GB`).
/// A request matches an offer when they are equal ignoring case, or when the request is a
/// dash-separated prefix of the offer (`H100` matches `H100-80GB` and `H100-SXM-80GB`, not `H1000`).
/// A request may list alternatives separated by `|` (`V100M16|V100M32`, as Alibaba's `gpu_spec`).
public enum GPUModelName {
    public static func matches(requested: String, offered: String) -> Bool {
        if requested.utf8.contains(UInt8(ascii: "|")) {
            return requested.split(separator: "|").contains { matchesOne(requested: $0, offered: offered) }
        }
        return matchesOne(requested: Substring(requested), offered: offered)
    }

    private static func matchesOne(requested: Substring, offered: String) -> Bool {
        if requested.count > offered.count { return false }
        var r = requested.utf8.makeIterator()
        var o = offered.utf8.makeIterator()
        while let rc = r.next() {
            guard let oc = o.next(), lower(rc) == lower(oc) else { return false }
        }
        guard let next = o.next() else { return true }
        return next == UInt8(ascii: "-")
    }

    private static func lower(_ c: UInt8) -> UInt8 {
        (c >= 65 && c <= 90) ? c + 32 : c
    }
}
