/// The `Retry-After` header (RFC 9110 10.2.3), in both directions.
public enum RetryAfter {
    /// The header value for a wait: whole seconds rounded up, at least 1.
    ///
    /// Rounded up so a client that honours it arrives after the window and is forwarded; at least 1
    /// because `Retry-After: 0` invites an immediate retry that would only be refused again.
    public static func seconds(_ duration: Duration) -> Int {
        let (seconds, attoseconds) = duration.components
        if seconds < 0 || (seconds == 0 && attoseconds <= 0) { return 1 }
        let whole = attoseconds > 0 && seconds < Int64.max ? seconds + 1 : seconds
        return Int(clamping: Swift.max(1, whole))
    }

    /// The wait an upstream's `Retry-After` asks for: delay-seconds, or an HTTP-date compared with
    /// `now` (Unix seconds, the caller's wall clock). A date in the past is `.zero`; a malformed
    /// value is nil.
    ///
    /// Accepts the IMF-fixdate and, as RFC 9110 5.6.7 requires of recipients, the obsolete RFC 850
    /// and asctime forms. The day name is not checked against the date.
    public static func parse(_ headerValue: some StringProtocol, now: Int64) -> Duration? {
        let text = headerValue.utf8.split(separator: UInt8(ascii: " "), omittingEmptySubsequences: true)
            .flatMap { $0.split(separator: UInt8(ascii: "\t"), omittingEmptySubsequences: true) }
            .map { Array($0) }
        if text.count == 1, let delay = digits(text[0], maxCount: 18) {
            return .seconds(delay)
        }
        guard let date = httpDate(text) else { return nil }
        return .seconds(Swift.max(0, date - now))
    }

    private static let months: [[UInt8]] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"].map { Array($0.utf8) }

    /// Unix seconds of an HTTP-date already split on whitespace.
    private static func httpDate(_ tokens: [[UInt8]]) -> Int64? {
        let comma = UInt8(ascii: ",")
        var day: Int64?, month: Int64?, year: Int64?, clock: [UInt8]?
        if tokens.count == 6, tokens[0].last == comma, tokens[5] == Array("GMT".utf8) {
            // IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT
            guard tokens[1].count == 2, tokens[3].count == 4 else { return nil }
            (day, month, year, clock) = (digits(tokens[1]), monthNumber(tokens[2]), digits(tokens[3]), tokens[4])
        } else if tokens.count == 4, tokens[0].last == comma, tokens[3] == Array("GMT".utf8) {
            // RFC 850: Sunday, 06-Nov-94 08:49:37 GMT
            let parts = tokens[1].split(separator: UInt8(ascii: "-"), omittingEmptySubsequences: false).map { Array($0) }
            guard parts.count == 3, parts[0].count == 2, parts[2].count == 2, let yy = digits(parts[2]) else { return nil }
            // Two-digit years: RFC 9110 says a year more than 50 years ahead is in the past.
            (day, month, year, clock) = (digits(parts[0]), monthNumber(parts[1]), yy < 70 ? 2000 + yy : 1900 + yy, tokens[2])
        } else if tokens.count == 5 {
            // asctime: Sun Nov  6 08:49:37 1994
            guard tokens[2].count <= 2, tokens[4].count == 4 else { return nil }
            (day, month, year, clock) = (digits(tokens[2]), monthNumber(tokens[1]), digits(tokens[4]), tokens[3])
        }
        guard let day, let month, let year, let clock, (1...31).contains(day), year >= 1970,
              clock.count == 8, clock[2] == UInt8(ascii: ":"), clock[5] == UInt8(ascii: ":"),
              let hour = digits(clock[0..<2]), let minute = digits(clock[3..<5]), let second = digits(clock[6..<8]),
              hour < 24, minute < 60, second <= 60 else { return nil }
        return daysFromCivil(year: year, month: month, day: day) * 86_400 + hour * 3_600 + minute * 60 + second
    }

    private static func monthNumber(_ token: [UInt8]) -> Int64? {
        months.firstIndex(of: token).map { Int64($0 + 1) }
    }

    /// A run of ASCII digits as a number; nil if empty, not all digits, or longer than `maxCount`.
    private static func digits(_ bytes: some Collection<UInt8>, maxCount: Int = 4) -> Int64? {
        guard !bytes.isEmpty, bytes.count <= maxCount else { return nil }
        var value: Int64 = 0
        for byte in bytes {
            guard byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") else { return nil }
            value = value * 10 + Int64(byte - UInt8(ascii: "0"))
        }
        return value
    }

    /// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
    private static func daysFromCivil(year: Int64, month: Int64, day: Int64) -> Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }
}
