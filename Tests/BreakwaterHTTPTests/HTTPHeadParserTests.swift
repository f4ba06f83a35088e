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

    /// Names are scanned eight bytes at a time while they are letters and dashes: every byte
    /// value must be judged as a token character would be, at every position of those steps.
    @Test func everyNameByteIsJudgedAtEveryOffset() throws {
        let tchar = Set(Array("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ".utf8))
        let filler = Array("aZ-".utf8)
        for length in [1, 7, 8, 9, 15, 16, 17, 25] {
            for offset in 0..<length {
                for byte in UInt8.min...UInt8.max {
                    var name = (0..<length).map { filler[$0 % filler.count] }
                    name[offset] = byte
                    let bytes = Array("GET / HTTP/1.1\r\nHost: x\r\n".utf8) + name + Array(": v\r\n\r\n".utf8)
                    let parsed = try? HTTPHead.parseRequest(bytes)
                    // A colon ends the name early; the rest of it is then part of the value.
                    let colon = byte == UInt8(ascii: ":") && offset > 0
                    #expect((parsed != nil) == (tchar.contains(byte) || colon), "byte \(byte) at \(offset) of \(length)")
                    guard let parsed else { continue }
                    let probe = parsed.fields[1]
                    let expected = colon ? Array(name[..<offset]) : name
                    #expect(Array(parsed.bytes[Int(probe.nameStart)..<Int(probe.nameEnd)]) == expected,
                            "byte \(byte) at \(offset) of \(length)")
                }
            }
        }
    }

    /// The request target is scanned eight bytes at a time for the first byte that is not a
    /// VCHAR or is `%`: every byte value must be judged at every position of those steps, and a
    /// `%` anywhere must be found (an encoded NUL is refused wherever it is).
    @Test func everyTargetByteIsJudgedAtEveryOffset() throws {
        for length in [1, 6, 7, 8, 9, 15, 16, 17, 31] {
            for offset in 0..<length {
                for byte in UInt8.min...UInt8.max {
                    // `g` is no hex digit: a `%` before it is a bad percent-encoding.
                    var target = [UInt8(ascii: "/")] + [UInt8](repeating: UInt8(ascii: "g"), count: length)
                    target[1 + offset] = byte
                    let parsed = try? HTTPHead.parseRequest(Array("GET ".utf8) + target + Array(" HTTP/1.1\r\nHost: x\r\n\r\n".utf8))
                    let allowed = byte >= 0x21 && byte <= 0x7e && byte != UInt8(ascii: "%")
                    #expect((parsed != nil) == allowed, "byte \(byte) at \(offset) of \(length)")
                    if let parsed { #expect(Array(parsed.bytes[parsed.second]) == target) }
                }
                var target = Array("/".utf8) + [UInt8](repeating: UInt8(ascii: "a"), count: length + 2)
                target.replaceSubrange((1 + offset)..<(4 + offset), with: Array("%00".utf8))
                #expect(throws: HTTPError.badRequest("encoded NUL in the path")) {
                    try HTTPHead.parseRequest(Array("GET ".utf8) + target + Array(" HTTP/1.1\r\nHost: x\r\n\r\n".utf8))
                }
                target.replaceSubrange((1 + offset)..<(4 + offset), with: Array("%41".utf8))
                #expect(try HTTPHead.parseRequest(Array("GET ".utf8) + target + Array(" HTTP/1.1\r\nHost: x\r\n\r\n".utf8)).target
                        == String(decoding: target, as: UTF8.self))
            }
        }
    }

    /// Asking for a header by name consults the mask of names filled while parsing: the answers
    /// must be those of a scan of every field, for names present and absent, in either case, and
    /// for pairs of names that share a bit of the mask.
    @Test func askingByNameAnswersAsAScanOfEveryField() throws {
        // Far more names than the mask has bits, so many of them share a bit with another.
        var names: [String] = []
        for length in 1...26 {
            for first in ["a", "x", "-"] {
                for last in ["e", "t", "9"] {
                    guard length > 1 || last == "e" else { continue }
                    let middle = String(repeating: "k", count: max(0, length - 2))
                    names.append(length == 1 ? first : first + middle + last)
                }
            }
        }
        let bits = Set(names.map { HTTPHead.nameBit(count: $0.utf8.count, first: $0.utf8.first!, last: $0.utf8.last!) })
        #expect(names.count > 3 * bits.count)
        var generator = SplitMix(seed: 7)
        for round in 0..<200 {
            let present = (0..<(1 + round % 12)).map { _ in names[Int(generator.next() % UInt64(names.count))] }
            var text = "GET / HTTP/1.1\r\nHost: x\r\n"
            for (k, name) in present.enumerated() {
                // Upper-case every other one: names match in any case.
                text += (k % 2 == 0 ? name : name.uppercased()) + ": v\(k)\r\n"
            }
            let head = try HTTPHead.parseRequest(Array((text + "\r\n").utf8))
            for name in names + ["host"] {
                let lines = head.fields.filter { head.name($0).lowercased() == name }
                let expected = lines.isEmpty ? nil : lines.map { head.value($0) }.joined(separator: ", ")
                #expect(head.combined(dynamic: name) == expected, "\(name) in \(present)")
                #expect(head.mayHave(dynamic: name) || lines.isEmpty, "\(name) in \(present)")
            }
        }
    }

    /// The accessors by literal name, each with the name absent, present once in another case,
    /// and present twice.
    @Test func literalNamesAreFoundInAnyCase() throws {
        func parse(_ lines: String) throws -> HTTPHead {
            try HTTPHead.parseRequest(Array("GET / HTTP/1.1\r\nHost: x\r\n\(lines)\r\n".utf8))
        }
        let absent = try parse("Accept: */*\r\n")
        #expect(absent.count("transfer-encoding") == 0)
        #expect(absent.combined("upgrade") == nil)
        #expect(try absent.contentLength() == nil)
        #expect(!absent.listContains("connection", token: "close"))
        #expect(!absent.connectionListsOtherFields)
        #expect(absent.count("host") == 1)
        #expect(absent.combined("accept") == "*/*")

        let once = try parse("CONTENT-LENGTH: 12\r\nConnection: Close , X-Thing\r\nTransfer-ENCODING: gzip\r\n")
        #expect(once.count("content-length") == 1)
        #expect(try once.contentLength() == 12)
        #expect(once.listContains("connection", token: "close"))
        #expect(!once.listContains("connection", token: "keep-alive"))
        #expect(once.connectionListsOtherFields)
        #expect(once.combined("transfer-encoding") == "gzip")
        let thing = try parse("x-thing: 1\r\nConnection: x-THING\r\n")
        #expect(thing.isListedInConnection(thing.fields[1]))
        #expect(!thing.isListedInConnection(thing.fields[0]))
        #expect(thing.nameHasPrefix(thing.fields[1], "x-th"))
        #expect(!thing.nameHasPrefix(thing.fields[1], "x-thing-"))

        let twice = try parse("Content-Length: 5\r\ncontent-length: 5\r\nVia: a\r\nVIA: b\r\n")
        #expect(twice.count("content-length") == 2)
        #expect(try twice.contentLength() == 5)
        #expect(twice.combined("via") == "a, b")
        let disagree = try parse("Content-Length: 5\r\ncontent-length: 6\r\n")
        #expect(throws: HTTPError.self) { try disagree.contentLength() }
    }

    /// What the Connection fields list is read once while parsing: keep-alive, the fields it
    /// makes hop-by-hop and an upgrade must answer as the list scanned on demand answers.
    @Test func connectionOptionsAnswerAsTheListDoes() throws {
        let elements = ["close", "Close", "keep-alive", "KEEP-ALIVE", "upgrade", "Upgrade", "x-a", "", " ", "te"]
        var generator = SplitMix(seed: 11)
        for round in 0..<400 {
            var lines = ""
            for _ in 0..<(round % 4) {
                let list = (0..<(1 + Int(generator.next() % 3))).map { _ in elements[Int(generator.next() % UInt64(elements.count))] }
                lines += "Connection: \(list.joined(separator: " ,"))\r\n"
            }
            for minor in [0, 1] {
                let text = "GET / HTTP/1.\(minor)\r\nHost: x\r\nUpgrade: websocket/13\r\n\(lines)\r\n"
                let head = try HTTPHead.parseRequest(Array(text.utf8))
                let close = head.listContains("connection", token: "close")
                let keepAlive = head.listContains("connection", token: "keep-alive")
                #expect(head.keepsAlive == (minor == 1 ? !close : keepAlive), "\(text)")
                let other = elements.filter { !$0.trimmingASCIISpaces().isEmpty }.contains {
                    let token = $0.lowercased()
                    return token != "close" && token != "keep-alive" && lines.lowercased().contains(token)
                }
                #expect(head.connectionListsOtherFields == other, "\(text)")
                let upgrade = minor == 1 && head.listContains("connection", token: "upgrade")
                #expect(head.upgradeProtocols == (upgrade ? ["websocket"] : []), "\(text)")
            }
        }
    }

    /// One field array reused from head to head (as a connection does): each head gets exactly
    /// its own fields whether it has more or fewer than the last one, more than the chunk the
    /// parser collects them in, or as many as allowed; a head still alive keeps its fields.
    @Test func aReusedFieldArrayHoldsEachHeadsOwnFields() throws {
        func request(_ count: Int) -> [UInt8] {
            Array(("GET / HTTP/1.1\r\nHost: x\r\n" + (0..<count).map { "X-F\($0): v\($0)\r\n" }.joined() + "\r\n").utf8)
        }
        var fields: [HeaderField] = []
        var kept: [(HTTPHead, Int)] = []
        for count in [40, 3, 70, 0, HTTPHead.maxFields - 1, 5, 33, 31, 32, 1] {
            let head = try HTTPHead.parseRequest(request(count), fields: &fields)
            let fresh = try HTTPHead.parseRequest(request(count))
            #expect(head.fields.count == count + 1)
            #expect(head.fields.map { head.name($0) + "=" + head.value($0) } == fresh.fields.map { fresh.name($0) + "=" + fresh.value($0) })
            kept.append((head, count))
        }
        for (head, count) in kept {
            #expect(head.fields.count == count + 1)
            #expect(head.combined(dynamic: "x-f\(max(0, count - 1))") == (count > 0 ? "v\(count - 1)" : nil))
        }
        #expect(throws: HTTPError(431, "more header lines than HTTPHead.maxFields")) {
            try HTTPHead.parseRequest(request(HTTPHead.maxFields), fields: &fields)
        }
        let response = Array("HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\n\r\n".utf8)
        let after = try HTTPHead.parseResponse(response, fields: &fields)
        #expect(after.fields.map { after.name($0) } == ["A", "B"])
    }
}

/// A small deterministic generator (SplitMix64), so that every run asks the same questions.
private struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
