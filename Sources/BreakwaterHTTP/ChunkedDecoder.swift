/// Decodes `Transfer-Encoding: chunked` (RFC 9112 7.1) as bytes arrive, in whatever pieces they
/// arrive: it keeps its place inside a size line, data or trailer between calls, so it never needs
/// a line whole and never copies. It tells the caller which bytes are framing (to drop) and which
/// are data (to pass on); the caller moves them.
///
/// Strict on purpose: a size that is not hex, too long or too large, a missing CRLF after data, a
/// bare CR or LF anywhere, or a trailer line without a colon is an error, so no second message can
/// hide inside the first.
public struct ChunkedDecoder: Sendable {
    /// What the next bytes of the input are.
    public enum Step: Equatable, Sendable {
        /// The input is used up; call again with more.
        case needMore
        /// The first n bytes are framing: drop them and call again.
        case skip(Int)
        /// The first n bytes are body data: pass them on and call again.
        case data(Int)
        /// The first n bytes end the message (last chunk and trailer section); nothing after
        /// them belongs to it.
        case done(skip: Int)
        /// The encoding is broken.
        case error(HTTPError)
    }

    private enum State: Sendable {
        /// In the hex digits of a size line (`digits` read so far).
        case size(value: Int, digits: Int)
        /// After the digits: optional whitespace, then `;` and extensions, up to CR.
        case sizeTail(value: Int, inExtension: Bool)
        /// CR of a size line seen; LF must follow.
        case sizeLF(value: Int)
        case data(remaining: Int)
        /// After a chunk's data: CR, then LF.
        case dataCR
        case dataLF
        /// At the start of a trailer line, or of the blank line that ends the message.
        case trailerStart
        /// Inside a trailer line; whether its colon was seen.
        case trailerLine(colon: Bool)
        case trailerLF
        /// CR of the final blank line seen; LF must follow.
        case endLF
        case done
    }

    private var state = State.size(value: 0, digits: 0)
    /// Bytes of the current size line, and of the whole trailer section, so far.
    private var lineBytes = 0
    private var trailerBytes = 0

    /// A size line may hold this many bytes of digits and extensions, its CRLF not counted.
    public static let maxLineBytes = 4096
    /// The trailer section may hold this many bytes: its lines with their CRLFs, the blank line
    /// that ends it not counted.
    public static let maxTrailerBytes = 16_384

    public init() {}

    /// Whether the last chunk and trailer section have been read.
    public var isDone: Bool { if case .done = state { true } else { false } }

    /// The data bytes of the current chunk still to come: right after the `.skip` that ends a
    /// size line, the size it announced; 0 outside chunk data. Lets a reader judge a chunk's size
    /// before any of its data arrives.
    public var chunkRemaining: Int { if case .data(let remaining) = state { remaining } else { 0 } }

    /// Judges the bytes at the start of `input` (the bytes not yet consumed).
    public mutating func next(_ input: UnsafeRawBufferPointer) -> Step {
        if case .done = state { return .done(skip: 0) }
        if case .data(let remaining) = state {
            guard !input.isEmpty else { return .needMore }
            let n = min(remaining, input.count)
            state = n == remaining ? .dataCR : .data(remaining: remaining - n)
            return .data(n)
        }
        var i = 0
        while i < input.count {
            let c = input[i]
            i += 1
            switch state {
            case .size(let value, let digits):
                lineBytes += 1
                if let v = Self.hexValue(c) {
                    guard digits < 15 else { return .error(.badRequest("chunk size too large")) }
                    state = .size(value: value << 4 | v, digits: digits + 1)
                } else {
                    guard digits > 0 else { return .error(.badRequest("chunk size is not hex")) }
                    state = .sizeTail(value: value, inExtension: false)
                    i -= 1   // judged again as part of the tail
                    lineBytes -= 1
                }
            case .sizeTail(let value, let inExtension):
                // The CR ends the line and is not part of what the limit counts.
                if c == 0x0d {
                    state = .sizeLF(value: value)
                    continue
                }
                lineBytes += 1
                guard lineBytes <= Self.maxLineBytes else { return .error(.badRequest("chunk size line too long")) }
                if c == UInt8(ascii: ";") {
                    state = .sizeTail(value: value, inExtension: true)
                } else if c == 0x0a || (c < 0x20 && c != 0x09) || c == 0x7f {
                    return .error(.badRequest("control character in chunk size line"))
                } else if !inExtension && c != 0x20 && c != 0x09 {
                    return .error(.badRequest("bad chunk size"))
                }
            case .sizeLF(let value):
                guard c == 0x0a else { return .error(.badRequest("bare CR in chunk size line")) }
                lineBytes = 0
                if value == 0 {
                    state = .trailerStart
                } else {
                    state = .data(remaining: value)
                    return .skip(i)
                }
            case .dataCR:
                guard c == 0x0d else { return .error(.badRequest("missing CRLF after chunk data")) }
                state = .dataLF
            case .dataLF:
                guard c == 0x0a else { return .error(.badRequest("missing CRLF after chunk data")) }
                state = .size(value: 0, digits: 0)
            case .trailerStart, .trailerLine:
                let atStart = if case .trailerStart = state { true } else { false }
                // The blank line ending the section is not part of it, nor of what the limit counts.
                if c == 0x0d, atStart {
                    state = .endLF
                    continue
                }
                trailerBytes += 1
                guard trailerBytes <= Self.maxTrailerBytes else { return .error(.badRequest("trailer section too long")) }
                if c == 0x0d {
                    if case .trailerLine(colon: true) = state {
                        state = .trailerLF
                    } else {
                        return .error(.badRequest("trailer line without a colon"))
                    }
                } else if c == 0x0a {
                    return .error(.badRequest("bare LF in the trailer section"))
                } else if (c < 0x20 && c != 0x09) || c == 0x7f {
                    return .error(.badRequest("control character in a trailer line"))
                } else if case .trailerLine(let colon) = state {
                    state = .trailerLine(colon: colon || c == UInt8(ascii: ":"))
                } else {
                    state = .trailerLine(colon: c == UInt8(ascii: ":"))
                }
            case .trailerLF:
                guard c == 0x0a else { return .error(.badRequest("bare CR in the trailer section")) }
                trailerBytes += 1
                guard trailerBytes <= Self.maxTrailerBytes else { return .error(.badRequest("trailer section too long")) }
                state = .trailerStart
            case .endLF:
                guard c == 0x0a else { return .error(.badRequest("bare CR ending the trailer section")) }
                state = .done
                return .done(skip: i)
            case .data, .done:
                preconditionFailure("handled before the loop")
            }
        }
        return i == 0 ? .needMore : .skip(i)
    }

    @inline(__always)
    private static func hexValue(_ c: UInt8) -> Int? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): Int(c &- UInt8(ascii: "0"))
        case UInt8(ascii: "a")...UInt8(ascii: "f"): Int(c &- UInt8(ascii: "a") + 10)
        case UInt8(ascii: "A")...UInt8(ascii: "F"): Int(c &- UInt8(ascii: "A") + 10)
        default: nil
        }
    }
}
