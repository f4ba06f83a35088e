/// The `Date` header's form (RFC 9110 5.6.7, IMF-fixdate): `Sun, 06 Nov 1994 08:49:37 GMT`.
public enum HTTPDate {
    private static let days: [StaticString] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"]
    private static let months: [StaticString] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    /// The 29 bytes of the IMF-fixdate of `seconds` since the Unix epoch (UTC).
    public static func imfFixdate(epochSeconds seconds: Int64) -> [UInt8] {
        let (dayNumber, secondOfDay) = seconds.quotientAndRemainder(dividingBy: 86_400)
        let day = secondOfDay < 0 ? dayNumber - 1 : dayNumber
        let second = secondOfDay < 0 ? secondOfDay + 86_400 : secondOfDay
        let (year, month, dayOfMonth) = civil(daysSinceEpoch: day)
        var out: [UInt8] = []
        out.reserveCapacity(29)
        let weekday = Int(((day % 7) + 7) % 7)   // 1970-01-01 was a Thursday
        append(days[weekday], to: &out)
        out += [0x2C, 0x20]
        two(Int(dayOfMonth), &out)
        out.append(0x20)
        append(months[Int(month) - 1], to: &out)
        out.append(0x20)
        let y = Int(year)
        two(y / 100, &out)
        two(y % 100, &out)
        out.append(0x20)
        two(Int(second / 3600), &out)
        out.append(0x3A)
        two(Int(second % 3600 / 60), &out)
        out.append(0x3A)
        two(Int(second % 60), &out)
        append(" GMT", to: &out)
        return out
    }

    /// Year, month (1-12) and day (1-31) of a day counted from 1970-01-01, proleptic Gregorian
    /// (the days-from-civil inverse of Howard Hinnant's date algorithms, public domain).
    static func civil(daysSinceEpoch: Int64) -> (Int64, Int64, Int64) {
        let z = daysSinceEpoch + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let mp = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }

    private static func two(_ value: Int, _ out: inout [UInt8]) {
        out.append(UInt8(0x30 + value / 10 % 10))
        out.append(UInt8(0x30 + value % 10))
    }

    private static func append(_ text: StaticString, to out: inout [UInt8]) {
        text.withUTF8Buffer { out += $0 }
    }
}
