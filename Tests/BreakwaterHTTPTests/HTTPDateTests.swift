import Testing
@testable import BreakwaterHTTP

@Suite struct HTTPDateTests {
    private func text(_ seconds: Int64) -> String { String(decoding: HTTPDate.imfFixdate(epochSeconds: seconds), as: UTF8.self) }

    @Test func knownInstantsInIMFFixdate() {
        #expect(text(0) == "Thu, 01 Jan 1970 00:00:00 GMT")
        #expect(text(784_111_777) == "Sun, 06 Nov 1994 08:49:37 GMT", "RFC 9110's own example")
        #expect(text(951_782_400) == "Tue, 29 Feb 2000 00:00:00 GMT")
        #expect(text(1_798_761_599) == "Thu, 31 Dec 2026 23:59:59 GMT")
        #expect(text(4_107_542_400) == "Mon, 01 Mar 2100 00:00:00 GMT", "2100 is no leap year")
    }

    @Test func everyDayOfFourHundredYearsIsTwentyNineBytesAndCountsOn() {
        var previous = ""
        for day in stride(from: Int64(0), to: 146_097, by: 1) {
            let date = HTTPDate.imfFixdate(epochSeconds: day * 86_400 + 43_200)
            #expect(date.count == 29)
            let (y, m, d) = HTTPDate.civil(daysSinceEpoch: day)
            let key = "\(y)-\(m < 10 ? "0" : "")\(m)-\(d < 10 ? "0" : "")\(d)"
            if key <= previous { Issue.record("day \(day): \(key) after \(previous)"); break }
            previous = key
        }
    }
}
