import BreakwaterCore

/// Breakwater's own 429: exact Retry-After (RFC 9110 10.2.3), RateLimit (draft-ietf-httpapi-ratelimit-headers),
/// and a problem+json body (RFC 9457). It never reaches the tracker: only upstream answers do.
enum ShieldResponse {
    static func send(reason: RejectReason, retryAfter: Duration, on connection: ClientConnection) {
        let seconds = RetryAfter.seconds(retryAfter)
        let body = Array(#"{"title":"Too Many Requests","status":429,"reason":"\#(reason.rawValue)","retry_after":\#(seconds)}"#.utf8)
        connection.respond(status: 429, reason: "Too Many Requests", headers: [
            ("Retry-After", String(seconds)),
            ("RateLimit", "\"\(reason.rawValue)\";r=0;t=\(seconds)"),
            ("Content-Type", "application/problem+json"),
            ("Cache-Control", "no-store"),
        ], body: body)
    }
}
