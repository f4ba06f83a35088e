/// The byte scans of `HTTPHead`'s parser: byte classes, and the word-at-a-time searches (eight
/// bytes per step, SWAR) for the end of a name, a value, a line and a request target.
extension HTTPHead {
    /// The end of the run of VCHARs (0x21 to 0x7e) from `start`, at most `end`; `sawPercent` is
    /// set when a `%` is among them. Eight bytes at a time while eight remain before `end`: a
    /// lane is flagged when it is below 0x21, DEL, 0x80 or above, or `%` (SWAR, each test exact
    /// in its lowest flagged lane, so their lowest flag together is exact), and the flagged byte
    /// is looked at alone.
    @inline(__always)
    static func targetEnd(_ b: UnsafeBufferPointer<UInt8>, from start: Int, to end: Int, sawPercent: inout Bool) -> Int {
        var i = start
        while true {
            if let base = b.baseAddress {
                let raw = UnsafeRawPointer(base)
                while end &- i >= 8 {
                    let w = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: i, as: UInt64.self))
                    let below21 = (w &- 0x2121_2121_2121_2121) & ~w & 0x8080_8080_8080_8080
                    let x = w ^ 0x7F7F_7F7F_7F7F_7F7F
                    let isDEL = (x &- 0x0101_0101_0101_0101) & ~x & 0x8080_8080_8080_8080
                    let p = w ^ 0x2525_2525_2525_2525
                    let isPercent = (p &- 0x0101_0101_0101_0101) & ~p & 0x8080_8080_8080_8080
                    let flags = below21 | isDEL | (w & 0x8080_8080_8080_8080) | isPercent
                    if flags != 0 {
                        i &+= flags.trailingZeroBitCount &>> 3
                        break
                    }
                    i &+= 8
                }
            }
            guard i < end else { return i }
            let c = b[i]
            guard c &- 0x21 < 0x5e else { return i }   // VCHAR, 0x21 to 0x7e
            if c == UInt8(ascii: "%") { sawPercent = true }
            i += 1
        }
    }

    /// The high bit of each byte lane of `w` set where the byte is an ASCII letter or `-`, the
    /// bytes nearly every header name is made of (SWAR: no lane carries into the next, as every
    /// sum stays below 0x100).
    @inline(__always)
    static func lettersAndDashes(_ w: UInt64) -> UInt64 {
        let high = w & 0x8080_8080_8080_8080
        let low7 = w & 0x7F7F_7F7F_7F7F_7F7F
        let folded = low7 | 0x2020_2020_2020_2020   // a letter's lane is now 0x61...0x7a
        let atLeastA = folded &+ 0x1F1F_1F1F_1F1F_1F1F   // high bit: folded >= 0x61
        let pastZ = folded &+ 0x0505_0505_0505_0505      // high bit: folded >= 0x7b
        let letters = atLeastA & ~pastZ
        let x = low7 ^ 0x2D2D_2D2D_2D2D_2D2D
        let dashes = ~((x &+ 0x7F7F_7F7F_7F7F_7F7F) | x)   // high bit: the lane is `-`
        return (letters | dashes) & ~high & 0x8080_8080_8080_8080
    }

    /// The bit of `names` for a header name of `count` bytes starting with `first` and ending
    /// with `last`, in either case: a multiplicative hash of the three onto 64 bits. The
    /// multiplier was picked so that the names most heads carry (Host, User-Agent, Accept,
    /// Accept-Encoding, Accept-Language, Content-Type, Content-Length, Date, Server, Connection,
    /// Cookie, Authorization, Cache-Control, ETag, Last-Modified, Vary...) share no bit with the
    /// names the rules and the proxy ask about (Transfer-Encoding, Upgrade, Expect, TE, Trailer,
    /// Keep-Alive, Via, X-Forwarded-For, Retry-After...); any other pair may share one, which
    /// only costs the pass over the fields.
    @inlinable @inline(__always)
    static func nameBit(count: Int, first: UInt8, last: UInt8) -> UInt64 {
        let key = UInt32(truncatingIfNeeded: count) &<< 16 | UInt32(first | 0x20) &<< 8 | UInt32(last | 0x20)
        return 1 &<< UInt64(truncatingIfNeeded: (key &* 0xF844_9561) &>> 26)
    }

    /// The index of the first byte at or after `from` that is below 0x20 or is DEL; `b.count`
    /// when there is none. Eight bytes at a time while eight remain (SWAR: a byte is flagged by
    /// the high bit of its lane; the lowest flag is exact, later ones may be borrow artefacts).
    @inline(__always)
    static func firstSpecialByte(_ b: UnsafeBufferPointer<UInt8>, from: Int) -> Int {
        var j = from
        let n = b.count
        if let base = b.baseAddress {
            let raw = UnsafeRawPointer(base)
            while n - j >= 8 {
                let w = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: j, as: UInt64.self))
                let below20 = (w &- 0x2020_2020_2020_2020) & ~w & 0x8080_8080_8080_8080
                let x = w ^ 0x7F7F_7F7F_7F7F_7F7F
                let isDEL = (x &- 0x0101_0101_0101_0101) & ~x & 0x8080_8080_8080_8080
                let flags = below20 | isDEL
                if flags != 0 { return j + flags.trailingZeroBitCount / 8 }
                j += 8
            }
        }
        while j < n {
            let c = b[j]
            if c < 0x20 || c == 0x7f { return j }
            j += 1
        }
        return n
    }

    /// RFC 9110 tchar: ALPHA, DIGIT and !#$%&'*+-.^_`|~, as a 128-bit map (no table in memory).
    @inline(__always)
    public static func isTokenChar(_ c: UInt8) -> Bool {
        let word: UInt64 = c < 64 ? 0x03FF_6CFA_0000_0000 : c < 128 ? 0x57FF_FFFF_C7FF_FFFE : 0
        return word >> UInt64(c & 63) & 1 != 0
    }

    /// A byte of a method as nginx accepts it: `A`-`Z`, `_` and `-` (see `parseRequest`).
    @inline(__always)
    public static func isMethodChar(_ c: UInt8) -> Bool {
        c &- UInt8(ascii: "A") < 26 || c == UInt8(ascii: "_") || c == UInt8(ascii: "-")
    }
}
