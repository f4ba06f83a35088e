@testable import BreakwaterHTTP
import Testing

/// The chunked decoder and the body reader over it, fed a body whole and one byte at a time: the
/// outcome must not depend on how the bytes arrive, and an error must show as soon as the byte
/// that makes it one has arrived.
@Suite struct ChunkedDecoderTests {
    /// How feeding a body ended.
    private enum Outcome: Equatable {
        /// The body is complete: its data, and the bytes after it, which belong to no body.
        case done(body: [UInt8], rest: [UInt8])
        /// Every byte was fed and more are wanted; `body` is the data passed on so far.
        case needMore(body: [UInt8])
        /// Refused with this status after `fed` bytes.
        case error(status: Int, fed: Int)
    }

    /// Feeds `input` to `reader` in pieces of `piece` bytes (all at once when nil), the way a
    /// connection does: whatever a step does not consume is offered again with the next piece.
    private static func feed(_ input: [UInt8], piece: Int?, into reader: inout BodyReader) -> Outcome {
        var pending: [UInt8] = []
        var body: [UInt8] = []
        var fed = 0
        while true {
            let step = pending.withUnsafeBytes { reader.next($0) }
            switch step {
            case .needMore:
                guard fed < input.count else { return .needMore(body: body) }
                let n = min(piece ?? input.count, input.count - fed)
                pending += input[fed..<fed + n]
                fed += n
            case .skip(let n):
                #expect(n > 0 && n <= pending.count, "skip(\(n)) of \(pending.count) bytes")
                pending.removeFirst(n)
            case .data(let n):
                #expect(n > 0 && n <= pending.count, "data(\(n)) of \(pending.count) bytes")
                body += pending[0..<n]
                pending.removeFirst(n)
            case .done(skip: let n):
                pending.removeFirst(n)
                return .done(body: body, rest: pending + input[fed...])
            case .error(let error):
                return .error(status: error.status, fed: fed)
            }
        }
    }

    /// `feed` into a fresh chunked reader with no size limit.
    private static func decode(_ input: [UInt8], piece: Int?) -> Outcome {
        var reader = BodyReader(.chunked)
        return feed(input, piece: piece, into: &reader)
    }

    private static func decode(_ text: String, piece: Int?) -> Outcome {
        decode(Array(text.utf8), piece: piece)
    }

    // MARK: Valid bodies

    @Test(arguments: [nil, 1, 2, 3, 7] as [Int?])
    func extensionsAndTrailersDecodeToTheData(piece: Int?) {
        let body = "5;name=value\r\nhello\r\n7 ; a=\"b c\";d\r\n, world\r\nA\r\n0123456789\r\n"
            + "0;last\r\nX-Checksum: abc\r\nExpires:\r\n\r\nGET /next HTTP/1.1\r\n"
        #expect(Self.decode(body, piece: piece)
            == .done(body: Array("hello, world0123456789".utf8), rest: Array("GET /next HTTP/1.1\r\n".utf8)))
    }

    @Test(arguments: [nil, 1] as [Int?])
    func hexSizesOfEitherCaseAndLeadingZeros(piece: Int?) {
        let data = [UInt8](repeating: UInt8(ascii: "x"), count: 0x1aF)
        let input = Array("001aF\r\n".utf8) + data + Array("\r\n000\r\n\r\n".utf8)
        #expect(Self.decode(input, piece: piece) == .done(body: data, rest: []))
    }

    @Test(arguments: [nil, 1] as [Int?])
    func anEmptyBodyIsJustTheLastChunk(piece: Int?) {
        #expect(Self.decode("0\r\n\r\n", piece: piece) == .done(body: [], rest: []))
    }

    @Test func crAndLfInsideDataAreData() {
        let input = "4\r\n\r\n\r\n\r\n0\r\n\r\n"
        #expect(Self.decode(input, piece: 1) == .done(body: Array("\r\n\r\n".utf8), rest: []))
    }

    @Test func anUnfinishedBodyWantsMore() {
        #expect(Self.decode("5\r\nhel", piece: 1) == .needMore(body: Array("hel".utf8)))
        #expect(Self.decode("5\r\nhello\r\n0\r\n", piece: nil) == .needMore(body: Array("hello".utf8)))
        #expect(Self.decode("5\r\nhello\r\n0\r\nX: y\r\n", piece: 1) == .needMore(body: Array("hello".utf8)))
    }

    // MARK: Errors

    /// A bare LF ending the trailer section is an error at its own byte: waiting for more would
    /// leave the connection hanging on a message that will never end.
    @Test(arguments: ["0\r\n\n", "0\r\nX: y\r\n\n", "0\r\nX: y\n", "5\r\nhello\r\n0\r\n\n"])
    func aBareLFInTheTrailerSectionIsAnErrorAtOnce(input: String) {
        let count = input.utf8.count
        #expect(Self.decode(input, piece: nil) == .error(status: 400, fed: count))
        #expect(Self.decode(input, piece: 1) == .error(status: 400, fed: count))
    }

    /// Each input is broken at its last byte, so the error must come when that byte is fed.
    @Test(arguments: [
        // Size not hex, or missing.
        "g", "\r", "\n", ";", " ", "-", "+", "0x", "5 x", "5 5", "5;a\r\r",
        // Size overflow: sixteen hex digits, the first of which would not fit.
        "1000000000000000", "ffffffffffffffff",
        // Bare LF or CR in a size line, control characters in an extension.
        "5\n", "5\rx", "5;a\n", "5;a\u{0}", "5;a\u{7f}", "5;a\u{1b}",
        // Missing CRLF after the data.
        "5\r\nhelloX", "5\r\nhello\rX", "5\r\nhello\n", "5\r\nhello\r\r",
        // Bare CR in the trailer section, a trailer line without a colon, control characters.
        "0\r\nX: y\rz", "0\r\n\rX", "0\r\nXY\r", "0\r\n X\r", "0\r\nX: \u{1}",
    ])
    func malformedChunkingIsAnErrorAtItsByte(input: String) {
        let count = input.utf8.count
        #expect(Self.decode(input, piece: nil) == .error(status: 400, fed: count))
        #expect(Self.decode(input, piece: 1) == .error(status: 400, fed: count))
    }

    @Test func fifteenHexDigitsAreTheLargestSize() {
        #expect(Self.decode("fffffffffffffff\r\nab", piece: 1) == .needMore(body: Array("ab".utf8)))
    }

    /// A size line of `maxLineBytes` (digits and extensions, the CRLF not counted) is taken; one
    /// byte more is an error at that byte.
    @Test(arguments: [nil, 1] as [Int?])
    func anOverLongSizeLineIsAnError(piece: Int?) {
        let line = "1;" + String(repeating: "e", count: ChunkedDecoder.maxLineBytes - 2)
        #expect(Self.decode(line + "\r\nx\r\n0\r\n\r\n", piece: piece) == .done(body: Array("x".utf8), rest: []))
        let tooLong = line + "e"
        #expect(Self.decode(tooLong, piece: piece) == .error(status: 400, fed: tooLong.utf8.count))
    }

    /// A trailer section (its lines with their CRLFs, not the blank line after them) of
    /// `maxTrailerBytes` is taken; one byte more is an error at that byte.
    @Test(arguments: [nil, 1] as [Int?])
    func anOverLongTrailerSectionIsAnError(piece: Int?) {
        let line = "X: " + String(repeating: "t", count: 95) + "\r\n"
        let lines = String(repeating: line, count: ChunkedDecoder.maxTrailerBytes / line.utf8.count)
        let room = ChunkedDecoder.maxTrailerBytes - lines.utf8.count - "Y:\r\n".utf8.count
        let exact = "0\r\n" + lines + "Y:" + String(repeating: "t", count: room) + "\r\n\r\n"
        #expect(Self.decode(exact + "next", piece: piece) == .done(body: [], rest: Array("next".utf8)))
        let over = "0\r\n" + lines + "Y:" + String(repeating: "t", count: room + 1) + "\r\n"
        #expect(Self.decode(over + "\r\n", piece: piece) == .error(status: 400, fed: over.utf8.count + (piece == nil ? 2 : 0)))
    }

    // MARK: BodyReader

    @Test(arguments: [nil, 1, 4] as [Int?])
    func aChunkedBodyOverTheLimitIs413(piece: Int?) {
        var atLimit = BodyReader(.chunked, limit: 10)
        let ten = Array("4\r\nabcd\r\n6\r\nefghij\r\n0\r\n\r\n".utf8)
        #expect(Self.feed(ten, piece: piece, into: &atLimit) == .done(body: Array("abcdefghij".utf8), rest: []))
        #expect(atLimit.isComplete)
        #expect(atLimit.received == 10)

        var overLimit = BodyReader(.chunked, limit: 10)
        let eleven = Array("4\r\nabcd\r\n7\r\nefghijk\r\n0\r\n\r\n".utf8)
        guard case .error(let status, _) = Self.feed(eleven, piece: piece, into: &overLimit) else {
            Issue.record("an eleven-byte body passed a limit of ten")
            return
        }
        #expect(status == 413)
    }

    /// The chunk that goes over the limit is refused at its size line, before any of its data.
    @Test(arguments: [nil, 1] as [Int?])
    func aChunkOverTheLimitIsRefusedAtItsSize(piece: Int?) {
        let sizes = "4\r\nabcd\r\n7\r\n"
        var reader = BodyReader(.chunked, limit: 10)
        #expect(Self.feed(Array(sizes.utf8), piece: piece, into: &reader) == .error(status: 413, fed: sizes.utf8.count))
        #expect(reader.received == 4)
        var huge = BodyReader(.chunked, limit: 1 << 20)
        let hugeSize = "fffffffffffffff\r\n"
        #expect(Self.feed(Array(hugeSize.utf8), piece: piece, into: &huge) == .error(status: 413, fed: hugeSize.utf8.count))
    }

    @Test func aLengthBodyEndsAtItsLength() {
        var reader = BodyReader(.length(5))
        #expect(Self.feed(Array("helloGET".utf8), piece: 2, into: &reader) == .done(body: Array("hello".utf8), rest: Array("GET".utf8)))
        #expect(reader.received == 5)
    }

    @Test func aBodyCutShortIsNotComplete() {
        var chunked = BodyReader(.chunked)
        _ = Self.feed(Array("5\r\nhel".utf8), piece: nil, into: &chunked)
        let cutShort = chunked.peerClosed()
        #expect(!cutShort)
        var untilClose = BodyReader(.untilClose)
        #expect(Self.feed(Array("abc".utf8), piece: 1, into: &untilClose) == .needMore(body: Array("abc".utf8)))
        let ended = untilClose.peerClosed()
        #expect(ended)
        #expect(untilClose.isComplete)
    }
}
