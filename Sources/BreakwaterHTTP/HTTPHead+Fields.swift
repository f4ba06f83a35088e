/// The header fields of a parsed head, by name: comparisons, lookups and the lists of
/// comma-separated fields, all read in place from the head's bytes.
extension HTTPHead {
    /// Whether field `f`'s name equals the lower-case `key`, ignoring ASCII case. Names are
    /// compared as bytes against the literal, with no String built: this runs for every header
    /// of every request.
    /// The lengths are compared here, inlined, where the literal's length is a constant: most
    /// names differ in length from most keys, and the chains of tests over every field of every
    /// head (hop-by-hop, forbidden in HTTP/2) cost a compare each.
    /// The bytes are compared inline too (`startsLike`), where the literal's words are constants.
    @inlinable @inline(__always)
    public func nameIs(_ f: HeaderField, _ key: StaticString) -> Bool {
        let count = key.utf8CodeUnitCount
        guard Int(f.nameEnd &- f.nameStart) == count else { return false }
        return bytes.withUnsafeBufferPointer {
            Self.startsLike($0, at: Int(f.nameStart), UnsafeRawBufferPointer(start: key.utf8Start, count: count))
        }
    }

    /// `nameIs` for a name known only at run time (the tokens of a Connection header, a key part).
    public func nameIs(_ f: HeaderField, dynamic key: String) -> Bool {
        var key = key
        return key.withUTF8 { nameEquals(f, UnsafeRawBufferPointer($0)) }
    }

    @usableFromInline
    func nameEquals(_ f: HeaderField, _ key: UnsafeRawBufferPointer) -> Bool {
        guard Int(f.nameEnd &- f.nameStart) == key.count else { return false }
        return bytes.withUnsafeBufferPointer { Self.startsLike($0, at: Int(f.nameStart), key) }
    }

    /// Whether `b[start...]` starts with `key`, ignoring ASCII case where `key` has a lower-case
    /// letter: byte `c` matches key byte `k` when `c == k` or `c | 0x20 == k`, which is
    /// `c | (k & 0x20) == k`, so eight bytes are compared at a time. `key.count` bytes from
    /// `start` must lie in `b`.
    @inlinable @inline(__always)
    static func startsLike(_ b: UnsafeBufferPointer<UInt8>, at start: Int, _ key: UnsafeRawBufferPointer) -> Bool {
        let count = key.count
        guard count > 0, let base = b.baseAddress, let k = key.baseAddress else { return true }
        let name = UnsafeRawPointer(base + start)
        var i = 0
        while count - i >= 8 {
            let c = name.loadUnaligned(fromByteOffset: i, as: UInt64.self)
            let want = k.loadUnaligned(fromByteOffset: i, as: UInt64.self)
            guard c | (want & 0x2020_2020_2020_2020) == want else { return false }
            i += 8
        }
        while i < count {
            let c = name.load(fromByteOffset: i, as: UInt8.self)
            let want = k.load(fromByteOffset: i, as: UInt8.self)
            guard c | (want & 0x20) == want else { return false }
            i += 1
        }
        return true
    }

    /// Whether the field's name starts with the lower-case `prefix`, ignoring ASCII case.
    @inlinable @inline(__always)
    public func nameHasPrefix(_ f: HeaderField, _ prefix: StaticString) -> Bool {
        let count = prefix.utf8CodeUnitCount
        guard Int(f.nameEnd &- f.nameStart) >= count else { return false }
        let key = UnsafeRawBufferPointer(start: prefix.utf8Start, count: count)
        return bytes.withUnsafeBufferPointer { Self.startsLike($0, at: Int(f.nameStart), key) }
    }

    /// Whether a field may be named `key` (lower-case): false means none is (see `names`).
    @inlinable @inline(__always)
    func mayHave(_ key: StaticString) -> Bool {
        let count = key.utf8CodeUnitCount
        guard count > 0 else { return true }
        let k = key.utf8Start
        return names & Self.nameBit(count: count, first: k[0], last: k[count - 1]) != 0
    }

    /// `mayHave` for a name known only at run time.
    func mayHave(dynamic key: String) -> Bool {
        let utf8 = key.utf8
        guard let first = utf8.first, let last = utf8.last else { return true }
        return names & Self.nameBit(count: utf8.count, first: first, last: last) != 0
    }

    /// All values of a header joined by ", " (RFC 9110 5.3), nil when absent. The test of
    /// `names` is inlined, where the literal's bit is a constant.
    @inlinable @inline(__always)
    public func combined(_ key: StaticString) -> String? {
        guard mayHave(key) else { return nil }
        return combinedPresent(key)
    }

    @usableFromInline
    func combinedPresent(_ key: StaticString) -> String? {
        combined { nameIs($0, key) }
    }

    /// `combined` for a name known only at run time.
    public func combined(dynamic key: String) -> String? {
        guard mayHave(dynamic: key) else { return nil }
        return combined { nameIs($0, dynamic: key) }
    }

    private func combined(where matches: (HeaderField) -> Bool) -> String? {
        var result: String?
        for f in fields where matches(f) {
            if result == nil { result = value(f) } else { result! += ", " + value(f) }
        }
        return result
    }

    /// How many lines carry this header.
    @inlinable @inline(__always)
    public func count(_ key: StaticString) -> Int {
        guard mayHave(key) else { return 0 }
        return countPresent(key)
    }

    @usableFromInline
    func countPresent(_ key: StaticString) -> Int {
        var n = 0
        for f in fields where nameIs(f, key) { n += 1 }
        return n
    }

    /// Whether a comma-separated header such as Connection lists `token` (lower-case), ignoring
    /// case and surrounding whitespace; scanned in place.
    public func listContains(_ key: StaticString, token: StaticString) -> Bool {
        anyListElement(of: key) { s, a, b in Self.elementIs(s, a, b, token) }
    }

    /// Whether a Connection header lists anything besides `close` and `keep-alive` (whose field,
    /// Keep-Alive, is dropped as hop-by-hop anyway): only then can it make other fields hop-by-hop.
    public var connectionListsOtherFields: Bool { connection.contains(.other) }

    /// The options the Connection fields list (`connection`), in one pass over them.
    func readConnectionOptions() -> ConnectionOptions {
        var options: ConnectionOptions = []
        _ = anyListElement(of: "connection") { s, a, b in
            if Self.elementIsWord(s, a, b, "close") {
                options.insert(.close)
            } else if Self.elementIsWord(s, a, b, "keep-alive") {
                options.insert(.keepAlive)
            } else {
                options.insert(.other)
                if Self.elementIsWord(s, a, b, "upgrade") { options.insert(.upgrade) }
            }
            return false
        }
        return options
    }

    /// Whether `s[a..<b]` equals the lower-case `token`, ignoring ASCII case.
    @inline(__always)
    private static func elementIs(_ s: UnsafeBufferPointer<UInt8>, _ a: Int, _ b: Int, _ token: StaticString) -> Bool {
        let count = token.utf8CodeUnitCount
        guard b - a == count else { return false }
        let want = token.utf8Start
        for k in 0..<count where asciiLowercased(s[a + k]) != want[k] { return false }
        return true
    }

    /// `elementIs` for a `token` of lower-case letters and `-` only, compared as `startsLike`
    /// compares names, a word at a time. For such a token that is the same test: the one byte
    /// it takes besides, CR for `-`, is never inside a field value.
    @inline(__always)
    private static func elementIsWord(_ s: UnsafeBufferPointer<UInt8>, _ a: Int, _ b: Int, _ token: StaticString) -> Bool {
        let count = token.utf8CodeUnitCount
        guard b - a == count else { return false }
        return startsLike(s, at: a, UnsafeRawBufferPointer(start: token.utf8Start, count: count))
    }

    /// Whether a Connection header names field `f` (which makes it hop-by-hop, RFC 9110 7.6.1).
    public func isListedInConnection(_ f: HeaderField) -> Bool {
        let name = Int(f.nameStart)
        let length = Int(f.nameEnd) - name
        return anyListElement(of: "connection") { s, a, b in
            guard b - a == length else { return false }
            for k in 0..<length where Self.asciiLowercased(s[a + k]) != Self.asciiLowercased(s[name + k]) { return false }
            return true
        }
    }

    @inline(__always)
    private static func asciiLowercased(_ c: UInt8) -> UInt8 {
        c >= UInt8(ascii: "A") && c <= UInt8(ascii: "Z") ? c | 0x20 : c
    }

    /// Whether `matches` holds for an element of the comma-separated `key` header lines, given as
    /// a byte range of the head's bytes (passed as a buffer) trimmed of spaces and tabs. Nothing
    /// to scan when `names` says no field has the name.
    @inline(__always)
    private func anyListElement(of key: StaticString, _ matches: (UnsafeBufferPointer<UInt8>, Int, Int) -> Bool) -> Bool {
        guard mayHave(key) else { return false }
        let want = UnsafeRawBufferPointer(start: key.utf8Start, count: key.utf8CodeUnitCount)
        return bytes.withUnsafeBufferPointer { s in
            for f in fields where Int(f.nameEnd &- f.nameStart) == want.count && Self.startsLike(s, at: Int(f.nameStart), want) {
                var i = Int(f.valueStart)
                let end = Int(f.valueEnd)
                while i <= end {
                    var j = i
                    while j < end && s[j] != UInt8(ascii: ",") { j += 1 }
                    var a = i, b = j
                    while a < b && (s[a] == 0x20 || s[a] == 0x09) { a += 1 }
                    while b > a && (s[b - 1] == 0x20 || s[b - 1] == 0x09) { b -= 1 }
                    if b > a, matches(s, a, b) { return true }
                    i = j + 1
                }
            }
            return false
        }
    }

    /// The name of a field as written.
    public func name(_ f: HeaderField) -> String {
        String(decoding: bytes[Int(f.nameStart)..<Int(f.nameEnd)], as: UTF8.self)
    }

    /// The value of a field, trimmed of surrounding whitespace.
    public func value(_ f: HeaderField) -> String {
        String(decoding: bytes[Int(f.valueStart)..<Int(f.valueEnd)], as: UTF8.self)
    }

    /// The request method as written.
    public var method: String { String(decoding: bytes[first], as: UTF8.self) }

    /// Whether the request method is exactly `name`, compared byte for byte: methods are
    /// case-sensitive (RFC 9110 9.1), and no String is built for a test made on every request.
    @inline(__always)
    public func methodIs(_ name: StaticString) -> Bool {
        let count = name.utf8CodeUnitCount
        guard first.count == count else { return false }
        let want = name.utf8Start
        for k in 0..<count where bytes[first.lowerBound + k] != want[k] { return false }
        return true
    }

    /// The request target as written.
    public var target: String { String(decoding: bytes[second], as: UTF8.self) }

    /// The origin-form path and query of the target (absolute-form reduced to its path).
    public var originTarget: ArraySlice<UInt8> {
        guard !authority.isEmpty else { return bytes[second] }
        let rest = bytes[authority.upperBound..<second.upperBound]
        if rest.first == UInt8(ascii: "/") { return rest }
        // `http://h` or `http://h?q`: an empty path, which is "/" (RFC 9112 3.2.1). Rare enough
        // that building the slice does not matter.
        return ArraySlice([UInt8(ascii: "/")] + rest)
    }

    /// The path part of the target, without the query, as bytes.
    public var pathBytes: ArraySlice<UInt8> {
        let t = originTarget
        let end = t.firstIndex(of: UInt8(ascii: "?")) ?? t.endIndex
        return t[t.startIndex..<end]
    }

    /// The path part of the target, without the query.
    public var path: Substring { Substring(decoding: pathBytes, as: UTF8.self) }
}

extension StringProtocol {
    /// The text without leading and trailing spaces and tabs.
    public func trimmingASCIISpaces() -> Substring {
        var s = Substring(self)
        while let c = s.first, c == " " || c == "\t" { s.removeFirst() }
        while let c = s.last, c == " " || c == "\t" { s.removeLast() }
        return s
    }
}
