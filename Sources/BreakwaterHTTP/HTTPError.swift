/// Why bytes on the wire were refused: the status a client gets for it, and what was wrong.
///
/// The one error type of the HTTP rules. A request head, framing or body that breaks a rule
/// throws or returns one; the connection answers with `status` and logs `detail`. For an
/// upstream's response the status does not matter: any such error makes the response unusable.
///
/// Its detail is a static text, so an error is a plain value: the readers' actions that carry one
/// are copied without reference counting.
public struct HTTPError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The status the client is answered with (400, 408, 413, 414, 431, 505, ...).
    public var status: Int
    /// What was wrong, for logs and tests; never sent to the client.
    public var detail: StaticString

    public init(_ status: Int, _ detail: StaticString) {
        self.status = status
        self.detail = detail
    }

    public static func == (a: HTTPError, b: HTTPError) -> Bool {
        a.status == b.status && a.detail.description == b.detail.description
    }

    /// The reason phrase that goes with `status` (RFC 9110 15).
    public var reason: String { Self.reasonPhrase(status) }

    public var description: String { "\(status) \(reason): \(detail)" }

    /// Malformed syntax or framing.
    public static func badRequest(_ detail: StaticString) -> HTTPError { HTTPError(400, detail) }

    /// The reason phrases of the statuses Breakwater itself answers with.
    public static func reasonPhrase(_ status: Int) -> String {
        switch status {
        case 100: "Continue"
        case 200: "OK"
        case 400: "Bad Request"
        case 401: "Unauthorized"
        case 403: "Forbidden"
        case 404: "Not Found"
        case 405: "Method Not Allowed"
        case 408: "Request Timeout"
        case 413: "Content Too Large"
        case 414: "URI Too Long"
        case 429: "Too Many Requests"
        case 431: "Request Header Fields Too Large"
        case 500: "Internal Server Error"
        case 502: "Bad Gateway"
        case 503: "Service Unavailable"
        case 504: "Gateway Timeout"
        case 505: "HTTP Version Not Supported"
        default: "Error"
        }
    }
}
