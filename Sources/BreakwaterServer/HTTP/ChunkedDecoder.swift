private import CLibevent

/// Decodes `Transfer-Encoding: chunked` from one evbuffer into another, incrementally, as bytes
/// arrive. Strict on purpose: a chunk-size line that is not hex, too long, or overflows, a missing
/// CRLF after data, or a bare LF is an error, so no second message can hide inside the first.
struct ChunkedDecoder {
    enum Progress: Equatable {
        /// Everything available was consumed; more input is needed.
        case needMore
        /// The last chunk and the trailer section were read.
        case done
        /// The encoding is broken.
        case error(String)
    }

    private enum State {
        case size
        case data(remaining: Int)
        case dataEnd
        case trailer
        case done
    }

    private var state = State.size
    private var trailerBytes = 0
    static let maxLineBytes = 4096
    static let maxTrailerBytes = 16_384

    /// Moves decoded bytes from `source` to the end of `sink`, stopping once `sink` holds more
    /// than `limit` bytes (the caller answers 413 then).
    mutating func decode(_ source: OpaquePointer, into sink: OpaquePointer, limit: Int = .max) -> Progress {
        while true {
            switch state {
            case .done:
                return .done
            case .size:
                guard let line = Self.readLine(source) else {
                    return evbuffer_get_length(source) > Self.maxLineBytes ? .error("chunk size line too long") : .needMore
                }
                guard let size = Self.parseSize(line) else { return .error("bad chunk size") }
                state = size == 0 ? .trailer : .data(remaining: size)
            case .data(let remaining):
                let available = evbuffer_get_length(source)
                if available == 0 { return .needMore }
                let n = min(remaining, available)
                evbuffer_remove_buffer(source, sink, n)
                state = n == remaining ? .dataEnd : .data(remaining: remaining - n)
                if evbuffer_get_length(sink) > limit { return .needMore }
            case .dataEnd:
                if evbuffer_get_length(source) < 2 { return .needMore }
                var crlf: (UInt8, UInt8) = (0, 0)
                _ = withUnsafeMutableBytes(of: &crlf) { evbuffer_remove(source, $0.baseAddress, 2) }
                guard crlf == (0x0d, 0x0a) else { return .error("missing CRLF after chunk data") }
                state = .size
            case .trailer:
                guard let line = Self.readLine(source) else {
                    return evbuffer_get_length(source) > Self.maxLineBytes ? .error("trailer line too long") : .needMore
                }
                trailerBytes += line.count + 2
                if trailerBytes > Self.maxTrailerBytes { return .error("trailer section too long") }
                if line.isEmpty { state = .done }
                else if line.contains(0x0a) || !line.contains(UInt8(ascii: ":")) { return .error("bad trailer line") }
            }
        }
    }

    /// Takes one CRLF-terminated line off `source` (without the CRLF), or nil when none is complete.
    private static func readLine(_ source: OpaquePointer) -> [UInt8]? {
        var eolLength = 0
        let found = evbuffer_search_eol(source, nil, &eolLength, EVBUFFER_EOL_CRLF_STRICT)
        guard found.pos >= 0 else { return nil }
        let length = Int(found.pos)
        guard length <= maxLineBytes else { return [0x0a] }
        var line = [UInt8](repeating: 0, count: length)
        if length > 0 { _ = line.withUnsafeMutableBytes { evbuffer_remove(source, $0.baseAddress, length) } }
        evbuffer_drain(source, eolLength)
        return line
    }

    /// `1*HEXDIG [ BWS ";" extension ]`; extensions are checked for control characters and ignored.
    static func parseSize(_ line: [UInt8]) -> Int? {
        var size = 0
        var digits = 0
        var i = 0
        while i < line.count {
            let c = line[i]
            let v: Int
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): v = Int(c - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): v = Int(c - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): v = Int(c - UInt8(ascii: "A") + 10)
            default: v = -1
            }
            if v < 0 { break }
            digits += 1
            guard digits <= 15 else { return nil }
            size = size << 4 | v
            i += 1
        }
        guard digits > 0 else { return nil }
        var rest = line[i...].drop { $0 == 0x20 || $0 == 0x09 }
        if rest.isEmpty { return size }
        guard rest.removeFirst() == UInt8(ascii: ";") else { return nil }
        for c in rest where c < 0x20 && c != 0x09 || c == 0x7f { return nil }
        return size
    }
}
