/// The few gRPC status codes Breakwater speaks itself, and the reading of an upstream's
/// `grpc-status` (the gRPC over HTTP/2 protocol: a decimal code in the trailers, or in the
/// headers of a trailers-only response).
public enum GRPCStatus {
    /// `RESOURCE_EXHAUSTED`: the shield's answer to a blocked or rate-limited call.
    public static let resourceExhausted = 8
    /// `UNAVAILABLE`: the answer while the route's circuit is open.
    public static let unavailable = 14

    /// The code of a `grpc-status` value: one to three ASCII digits (codes are 0 to 16 today,
    /// and an unknown code is still a code). Anything else is nil and classifies as if absent.
    public static func parse<S: StringProtocol>(_ value: S) -> Int? {
        let bytes = value.utf8
        guard (1...3).contains(bytes.count) else { return nil }
        var code = 0
        for byte in bytes {
            guard (0x30...0x39).contains(byte) else { return nil }
            code = code * 10 + Int(byte - 0x30)
        }
        return code
    }

    /// Whether a request's `content-type` is gRPC's: `application/grpc`, alone or followed by
    /// `+proto`, `+json` or `;` parameters, in any case.
    public static func isGRPC<S: StringProtocol>(contentType: S) -> Bool {
        let prefix = Array("application/grpc".utf8)
        let bytes = Array(contentType.utf8)
        guard bytes.count >= prefix.count,
              zip(bytes, prefix).allSatisfy({ b, p in ((0x41...0x5A).contains(b) ? b | 0x20 : b) == p })
        else { return false }
        guard bytes.count > prefix.count else { return true }
        return bytes[prefix.count] == UInt8(ascii: "+") || bytes[prefix.count] == UInt8(ascii: ";")
    }

    /// `grpc-retry-pushback-ms` for a window (gRFC A6): whole milliseconds, rounded up so that a
    /// client that waits exactly that long arrives after the window, at least 1.
    public static func pushbackMilliseconds(_ window: Duration) -> Int {
        let (seconds, attoseconds) = window.components
        guard seconds < 1 << 40 else { return Int.max }   // no window is this long: `max` is validated
        let whole = Int(clamping: seconds) &* 1_000 &+ Int(attoseconds / 1_000_000_000_000_000)
        let rest = attoseconds % 1_000_000_000_000_000
        return max(1, rest > 0 ? whole + 1 : whole)
    }
}
