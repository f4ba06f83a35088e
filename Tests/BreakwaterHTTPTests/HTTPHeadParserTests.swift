@testable import BreakwaterHTTP
import Testing

/// The header-value scan reads eight bytes at a time: every byte value that needs a look must be
/// found at every position relative to those eight-byte steps, and everything else must pass.
@Suite struct HTTPHeadParserTests {
    private static func head(value: [UInt8]) -> [UInt8] {
        Array("GET / HTTP/1.1\r\nHost: x\r\nX-Probe: ".utf8) + value + Array("\r\nAccept: */*\r\n\r\n".utf8)
    }

    @Test func everyByteIsJudgedAtEveryOffset() throws {
        for length in [1, 7, 8, 9, 15, 16, 17, 31] {
            for offset in 0..<length {
                for byte in UInt8.min...UInt8.max {
                    var value = [UInt8](repeating: UInt8(ascii: "v"), count: length)
                    value[offset] = byte
                    let parsed = try? HTTPHead.parseRequest(Self.head(value: value))
                    // RFC 9110 field-value: VCHAR, obs-text, SP and HTAB; a CR here is not followed
                    // by LF, and an LF here is bare.
                    let allowed = byte == 0x09 || byte == 0x20 || (byte >= 0x21 && byte != 0x7f)
                    #expect((parsed != nil) == allowed, "byte \(byte) at \(offset) of \(length)")
                    guard let parsed else { continue }
                    #expect(parsed.fields.count == 3)
                    let probe = parsed.fields[1]
                    // Spaces and tabs at either end are not part of the value.
                    var expected = value[...]
                    while let first = expected.first, first == 0x20 || first == 0x09 { expected = expected.dropFirst() }
                    while let last = expected.last, last == 0x20 || last == 0x09 { expected = expected.dropLast() }
                    #expect(Array(parsed.bytes[Int(probe.valueStart)..<Int(probe.valueEnd)]) == Array(expected),
                            "byte \(byte) at \(offset) of \(length)")
                    #expect(parsed.value(parsed.fields[2]) == "*/*")
                }
            }
        }
    }

    @Test func tokenCharactersAreExactlyRFC9110s() {
        let tchar = Set(Array("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ".utf8))
        for byte in UInt8.min...UInt8.max {
            #expect(HTTPHead.isTokenChar(byte) == tchar.contains(byte), "byte \(byte)")
        }
    }
}
