import BreakwaterCore

/// Breakwater's own 429: exact Retry-After (RFC 9110 10.2.3), RateLimit (draft-ietf-httpapi-ratelimit-headers),
/// and a problem+json body (RFC 9457). It never reaches the tracker: only upstream answers do.
/// Written with byte appends: on a storm this is the answer to almost every request.
enum ShieldResponse {
    static func send(reason: RejectReason, retryAfter: Duration, on connection: ClientConnection) {
        let seconds = RetryAfter.seconds(retryAfter)
        var body = [UInt8]()
        body.reserveCapacity(96)
        body.append(ascii: #"{"title":"Too Many Requests","status":429,"reason":""#)
        body.append(ascii: reason.literal)
        body.append(ascii: #"","retry_after":"#)
        body.append(decimal: seconds)
        body.append(UInt8(ascii: "}"))
        var head = [UInt8]()
        head.reserveCapacity(256)
        head.append(ascii: "HTTP/1.1 429 Too Many Requests\r\nRetry-After: ")
        head.append(decimal: seconds)
        head.append(ascii: "\r\nRateLimit: \"")
        head.append(ascii: reason.literal)
        head.append(ascii: "\";r=0;t=")
        head.append(decimal: seconds)
        head.append(ascii: "\r\nContent-Type: application/problem+json\r\nCache-Control: no-store\r\n")
        connection.beginResponse(head, framing: .length(body.count))
        connection.sendBody(body)
        connection.endResponse()
    }
}

extension RejectReason {
    /// The reason as a literal, for byte appends.
    var literal: StaticString {
        switch self {
        case .backoff: "backoff"
        case .probe: "probe"
        case .rate: "rate"
        }
    }
}
