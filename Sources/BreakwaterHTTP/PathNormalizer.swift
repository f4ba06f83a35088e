/// The path a request names, in one spelling (RFC 3986 6.2.2), so that routes match what the
/// upstream will serve however a client spells it: `/%64evice/`, `/./device/`, `/x/../device/` and
/// `//device/` are all `/device/`.
///
/// - Percent-encoded unreserved characters (letters, digits, `-._~`) are decoded; other escapes
///   keep their encoding with upper-case hex digits. An encoded slash (`%2F`) cannot be normalised
///   without changing the path's segments, so it is refused, as is a path that climbs above the
///   root (`/../x`), nginx's answer to both.
/// - Dot segments are removed and repeated slashes merged (nginx's `merge_slashes`).
/// - Path parameters (`;x=1` after a segment) stay in the path that is forwarded, but routes match
///   the path without them (`matchPath`), as servlet containers read `/device;x=1/` as `/device/`.
///
/// The normalised path is what goes upstream, so the upstream serves what the route decided on.
public struct NormalizedPath: Sendable {
    /// The path to forward.
    public let path: [UInt8]
    /// The path routes match: `path` without path parameters.
    public let matchPath: [UInt8]

    /// The normal form of `raw` (the path part of a target, no query), or nil when `raw` is
    /// already normal: the usual path costs one scan and no allocation.
    public static func of(_ raw: ArraySlice<UInt8>) throws(HTTPError) -> NormalizedPath? {
        guard needsWork(raw) else { return nil }
        let decoded = try decode(raw)
        let path = try removeDotSegments(decoded)
        let matchPath = path.contains(UInt8(ascii: ";")) ? withoutParameters(path) : path
        return NormalizedPath(path: path, matchPath: matchPath)
    }

    /// Whether `raw` holds anything to normalise: an escape, a parameter, `//`, or a dot segment.
    private static func needsWork(_ raw: ArraySlice<UInt8>) -> Bool {
        var previous: UInt8 = 0
        var i = raw.startIndex
        while i < raw.endIndex {
            let c = raw[i]
            // Letters, digits and most of what follows them in a path are above ';', and none of
            // the four bytes that need a look is: one comparison for the common byte.
            if c > UInt8(ascii: ";") {
                previous = c
                i += 1
                continue
            }
            if c == UInt8(ascii: "%") || c == UInt8(ascii: ";") { return true }
            if c == UInt8(ascii: "/"), previous == c { return true }
            if c == UInt8(ascii: "."), previous == UInt8(ascii: "/") {
                let next = i + 1 < raw.endIndex ? raw[i + 1] : UInt8(ascii: "/")
                if next == UInt8(ascii: "/") || next == UInt8(ascii: ".") { return true }
            }
            previous = c
            i += 1
        }
        return false
    }

    private static func isUnreserved(_ c: UInt8) -> Bool {
        switch c {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
             UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
             UInt8(ascii: "~"):
            true
        default:
            false
        }
    }

    private static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    private static func decode(_ raw: ArraySlice<UInt8>) throws(HTTPError) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(raw.count)
        let hex = Array("0123456789ABCDEF".utf8)
        var i = raw.startIndex
        while i < raw.endIndex {
            let c = raw[i]
            guard c == UInt8(ascii: "%") else {
                out.append(c)
                i += 1
                continue
            }
            guard i + 2 < raw.endIndex, let high = hexValue(raw[i + 1]), let low = hexValue(raw[i + 2]) else {
                throw .badRequest("bad percent-encoding in the path")
            }
            let value = high << 4 | low
            if value == UInt8(ascii: "/") { throw .badRequest("an encoded slash in the path") }
            if isUnreserved(value) {
                out.append(value)
            } else {
                out += [UInt8(ascii: "%"), hex[Int(high)], hex[Int(low)]]
            }
            i += 3
        }
        return out
    }

    /// RFC 3986 5.2.4 over segments, with empty segments (repeated slashes) dropped.
    private static func removeDotSegments(_ path: [UInt8]) throws(HTTPError) -> [UInt8] {
        var segments: [ArraySlice<UInt8>] = []
        let parts = path.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false)
        var trailingSlash = path.last == UInt8(ascii: "/")
        for (n, part) in parts.enumerated() {
            let isLast = n == parts.count - 1
            let name = part.prefix { $0 != UInt8(ascii: ";") }   // a dot segment may carry parameters
            if part.isEmpty { continue }
            if name.elementsEqual([UInt8(ascii: ".")]) {
                if isLast { trailingSlash = true }
                continue
            }
            if name.elementsEqual([UInt8(ascii: "."), UInt8(ascii: ".")]) {
                guard !segments.isEmpty else { throw .badRequest("the path climbs above the root") }
                segments.removeLast()
                if isLast { trailingSlash = true }
                continue
            }
            segments.append(part)
        }
        var out: [UInt8] = [UInt8(ascii: "/")]
        for (n, segment) in segments.enumerated() {
            out += segment
            if n < segments.count - 1 || trailingSlash { out.append(UInt8(ascii: "/")) }
        }
        return out
    }

    /// The path with every segment's parameters (from `;` to the next `/`) removed.
    private static func withoutParameters(_ path: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(path.count)
        var skipping = false
        for c in path {
            if c == UInt8(ascii: "/") { skipping = false }
            if c == UInt8(ascii: ";") { skipping = true }
            if !skipping { out.append(c) }
        }
        return out
    }
}
