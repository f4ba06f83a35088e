// The spellings of durations, sizes and rates in the conf file. Each parser has a matching
// formatter whose output it reads back exactly, because `breakwater check` prints the effective
// config and that printout must be a valid conf file with the same meaning.

extension Duration {
    /// The units a conf-file duration may carry, in nanoseconds, largest first so that the
    /// formatter picks the shortest exact spelling.
    static let confUnits: [(name: String, nanoseconds: Int64)] = [
        ("d", 86_400_000_000_000), ("h", 3_600_000_000_000), ("m", 60_000_000_000),
        ("s", 1_000_000_000), ("ms", 1_000_000), ("us", 1_000), ("ns", 1),
    ]

    /// Parses `"500ms"`, `"2s"`, `"1.5s"`, `"10m"`, `"1h"`, `"250us"`, `"1d"` (also `µs`, `ns`).
    ///
    /// A unit is required: a bare `30` could mean seconds or milliseconds, and guessing wrong by
    /// a factor of a thousand is how timeouts silently break. Signs, spaces and empty strings are
    /// refused, so are values finer than a nanosecond or beyond about 292 years. Nil when malformed.
    public init?(parsing text: String) {
        let digits = text.prefix { $0.isASCII && ($0.isNumber || $0 == ".") }
        var unit = String(text.dropFirst(digits.count))
        if unit == "µs" { unit = "us" }
        guard let scale = Duration.confUnits.first(where: { $0.name == unit })?.nanoseconds,
              let nanos = Decimal64.scaled(String(digits), by: scale)
        else { return nil }
        self = .nanoseconds(nanos)
    }

    /// The shortest exact conf-file spelling (`"10m"`, `"1500ms"`), readable by `init(parsing:)`.
    ///
    /// Sub-nanosecond parts, which no conf file can express, are dropped.
    public var confText: String {
        let nanos = clampedNanoseconds
        if nanos == 0 { return "0s" }
        let unit = Duration.confUnits.first { nanos % $0.nanoseconds == 0 } ?? ("ns", 1)
        return "\(nanos / unit.nanoseconds)\(unit.name)"
    }
}

/// Byte counts written as `"10MB"`, `"512KB"`, `"1GiB"`, `"16k"` or a plain integer.
///
/// Units follow nginx, not SI: K, KB and KiB all mean 1024 bytes; M, MB, MiB mean 1024²;
/// G, GB, GiB mean 1024³. Operators copy limits from nginx configs, and a "10MB" body limit that
/// quietly became 10,000,000 bytes there but 10,485,760 here would be a surprise. Case is ignored.
public enum ByteSize {
    /// Unit suffixes (lower-cased) and their multipliers.
    static let units: [String: Int64] = [
        "": 1, "b": 1,
        "k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10,
        "m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20,
        "g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30,
    ]

    /// Bytes from a whole number with an optional unit; nil for fractions, signs, unknown units
    /// or overflow, because a half-kilobyte limit is more likely a typo than an intent.
    public static func parse(_ text: String) -> Int? {
        let digits = text.prefix { $0.isASCII && $0.isNumber }
        guard !digits.isEmpty, let n = Int64(digits),
              let scale = units[text.dropFirst(digits.count).lowercased()] else { return nil }
        let (bytes, overflow) = n.multipliedReportingOverflow(by: scale)
        return overflow ? nil : Int(bytes)
    }

    /// `"10MiB"` when the count is a whole number of KiB, MiB or GiB, else the plain integer,
    /// spelled with the binary suffixes so that nobody reads the printout as SI.
    public static func format(_ bytes: Int) -> String {
        for (name, scale) in [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)]
        where bytes > 0 && bytes % scale == 0 {
            return "\(bytes / scale)\(name)"
        }
        return String(bytes)
    }
}

extension Rate {
    /// Parses `"10r/s"` or `"600r/m"` (nginx `limit_req` spelling); the count may have a
    /// fraction (`"0.5r/s"`, or `"1e-05r/s"` as `confText` prints tiny rates) but must be above
    /// zero, since a zero rate would refuse everything.
    public init?(parsing text: String) {
        let per: Double
        if text.hasSuffix("r/s") { per = 1 } else if text.hasSuffix("r/m") { per = 60 } else { return nil }
        let number = text.dropLast(3)
        guard number.first?.isWholeNumber == true, number.first?.isASCII == true,
              let n = Double(number), n.isFinite, n > 0 else { return nil }
        self.init(perSecond: n / per)
    }

    /// A spelling that `init(parsing:)` reads back to exactly this rate: whole requests per
    /// second or per minute when that is exact, else the shortest decimal per second.
    public var confText: String {
        if perSecond == perSecond.rounded(), perSecond.magnitude < 1e15 {
            return "\(Int(perSecond))r/s"
        }
        let perMinute = (perSecond * 60).rounded()
        if perMinute.magnitude < 1e15, perMinute / 60 == perSecond {
            return "\(Int(perMinute))r/m"
        }
        return "\(perSecond)r/s"
    }
}

/// Exact decimal-to-integer scaling, so that `"1.1s"` is 1,100,000,000 ns and not 1,099,999,999
/// as a round trip through `Double` might give.
enum Decimal64 {
    /// `text` (digits, at most one point, nothing else) times `scale`; nil when malformed,
    /// when the result has a fraction, or on overflow.
    static func scaled(_ text: String, by scale: Int64) -> Int64? {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count <= 2, let whole = Int64(parts[0]) else { return nil }
        var (total, overflow) = whole.multipliedReportingOverflow(by: scale)
        guard !overflow else { return nil }
        guard parts.count == 2 else { return total }
        guard !parts[1].isEmpty else { return nil }
        var unit = scale
        for digit in parts[1] {
            guard let d = digit.wholeNumberValue else { return nil }
            if d != 0 && unit % 10 != 0 { return nil }  // finer than the smallest step
            unit /= 10
            (total, overflow) = total.addingReportingOverflow(Int64(d) * unit)
            guard !overflow else { return nil }
        }
        return total
    }
}
