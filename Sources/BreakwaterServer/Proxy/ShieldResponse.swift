import BreakwaterCore

/// Breakwater's own 429: exact Retry-After (RFC 9110 10.2.3), RateLimit (draft-ietf-httpapi-ratelimit-headers),
/// and a problem+json body (RFC 9457). It never reaches the tracker: only upstream answers do.
/// Written with byte appends: on a storm this is the answer to almost every request.
enum ShieldResponse {
    static func send<Client: ClientResponder>(reason: RejectReason, retryAfter: Duration, on connection: Client) {
        let seconds = RetryAfter.seconds(retryAfter)
        let bodyStart: StaticString = #"{"title":"Too Many Requests","status":429,"reason":""#
        let bodyMiddle: StaticString = #"","retry_after":"#
        let bodyLength = bodyStart.utf8CodeUnitCount + reason.literal.utf8CodeUnitCount + bodyMiddle.utf8CodeUnitCount
            + decimalDigits(seconds) + 1
        connection.respond(bodyLength: bodyLength) { head in
            head.append(ascii: "HTTP/1.1 429 Too Many Requests\r\nRetry-After: ")
            head.append(decimal: seconds)
            head.append(ascii: "\r\nRateLimit: \"")
            head.append(ascii: reason.literal)
            head.append(ascii: "\";r=0;t=")
            head.append(decimal: seconds)
            head.append(ascii: "\r\nContent-Type: application/problem+json\r\nCache-Control: no-store\r\n")
        } body: { body in
            body.append(ascii: bodyStart)
            body.append(ascii: reason.literal)
            body.append(ascii: bodyMiddle)
            body.append(decimal: seconds)
            body.append(UInt8(ascii: "}"))
        }
    }

    /// The answer while the route's circuit is open: the upstream fails for every client, so
    /// the client is told to come back later without any mark against it.
    static func sendUpstreamDown<Client: ClientResponder>(retryAfter: Duration, on connection: Client) {
        let seconds = RetryAfter.seconds(retryAfter)
        let bodyStart: StaticString = #"{"title":"Service Unavailable","status":503,"reason":"upstream","retry_after":"#
        connection.respond(bodyLength: bodyStart.utf8CodeUnitCount + decimalDigits(seconds) + 1) { head in
            head.append(ascii: "HTTP/1.1 503 Service Unavailable\r\nRetry-After: ")
            head.append(decimal: seconds)
            head.append(ascii: "\r\nContent-Type: application/problem+json\r\nCache-Control: no-store\r\n")
        } body: { body in
            body.append(ascii: bodyStart)
            body.append(decimal: seconds)
            body.append(UInt8(ascii: "}"))
        }
    }

    /// How many digits `append(decimal:)` writes for `value` (non-negative).
    static func decimalDigits(_ value: Int) -> Int {
        var digits = 1
        var rest = value
        while rest >= 10 {
            rest /= 10
            digits += 1
        }
        return digits
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
