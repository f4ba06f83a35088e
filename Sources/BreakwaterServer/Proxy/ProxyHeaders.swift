import BreakwaterHTTP

/// Rewrites heads on their way through the proxy: hop-by-hop headers stay on their hop,
/// X-Forwarded-For / X-Forwarded-Proto / Via say who forwarded, everything else passes unchanged.
enum ProxyHeaders {
    /// The Via token Breakwater adds.
    static let via = "1.1 breakwater"

    /// RFC 9110 7.6.1 hop-by-hop fields, plus those we re-frame ourselves.
    private static func isHopByHop(_ head: HTTPHead, _ f: HeaderField) -> Bool {
        head.nameIs(f, "connection") || head.nameIs(f, "keep-alive") || head.nameIs(f, "te")
            || head.nameIs(f, "trailer") || head.nameIs(f, "transfer-encoding") || head.nameIs(f, "upgrade")
            || head.nameHasPrefix(f, "proxy-") || head.nameIs(f, "content-length")
    }

    /// Whether the field's name has an underscore, read in place without a slice of the head.
    private static func nameHasUnderscore(_ head: HTTPHead, _ f: HeaderField) -> Bool {
        head.bytes.withUnsafeBufferPointer { bytes in
            var i = Int(f.nameStart)
            let end = Int(f.nameEnd)
            while i < end {
                if bytes[i] == UInt8(ascii: "_") { return true }
                i &+= 1
            }
            return false
        }
    }

    /// Fields that are end-to-end by their nature: a client's `Connection: Host` (or
    /// Authorization) must not make the upstream lose them.
    private static func isEndToEnd(_ head: HTTPHead, _ f: HeaderField) -> Bool {
        head.nameIs(f, "host") || head.nameIs(f, "authorization") || head.nameIs(f, "cookie")
            || head.nameIs(f, "content-type")
    }

    /// The head sent upstream for `request`, with a Content-Length for the buffered body.
    /// A request without Host (HTTP/1.0 allows that) gets `defaultHost`, since HTTP/1.1 requires one.
    /// An absolute-form target's authority replaces the Host lines (RFC 9112 3.2.2), so the
    /// upstream reads the same host the route and the shield were given.
    /// Header names with an underscore are dropped, as nginx does by default: CGI-style upstreams
    /// read `X-Forwarded_For` as `X-Forwarded-For`, which would let a client forge it.
    /// With `upgrade`, the request's Upgrade field goes along with `Connection: upgrade` (an
    /// upgrade the route allows); otherwise Upgrade stays on its hop like every hop-by-hop field.
    /// `out` writes it as HTTP/1.1 text (any `ByteSink`) or as HTTP/2 fields
    /// (`H2Headers.RequestFields`): one rule, whichever protocol goes upstream.
    static func upstreamRequest(_ request: HTTPRequest, clientAddress: [UInt8], defaultHost: String, upgrade: Bool = false,
                                into out: inout some UpstreamHeadWriter) {
        let head = request.head
        let target = head.originTarget
        if let path = request.normalizedPath {
            let query = target.firstIndex(of: UInt8(ascii: "?")).map { target[$0...] } ?? target[target.endIndex...]
            out.requestLine(method: head.bytes[head.first], path: path[...], query: query)
        } else {
            out.requestLine(method: head.bytes[head.first], path: target, query: target[target.endIndex...])
        }
        // Names listed in the Connection header are hop-by-hop too.
        let hasConnection = head.connectionListsOtherFields
        var forwardedFor: String?
        var via: String?
        let authority = head.authority
        // Noted on the way rather than counted after: whether a Host came, and whether the
        // client framed a body (Content-Length or Transfer-Encoding, both hop-by-hop).
        var hasHost = false
        var framed = false
        for f in head.fields {
            if head.nameIs(f, "host") {
                hasHost = true
                if !authority.isEmpty { continue }
            }
            if upgrade, head.nameIs(f, "upgrade") {
                out.field(head, f)
                continue
            }
            if isHopByHop(head, f) {
                if !framed, head.nameIs(f, "content-length") || head.nameIs(f, "transfer-encoding") { framed = true }
                continue
            }
            if head.nameIs(f, "expect") { continue }
            if hasConnection, head.isListedInConnection(f), !isEndToEnd(head, f) { continue }
            if head.nameIs(f, "x-forwarded-for") {
                forwardedFor = forwardedFor.map { $0 + ", " + head.value(f) } ?? head.value(f)
                continue
            }
            if head.nameIs(f, "via") {
                via = via.map { $0 + ", " + head.value(f) } ?? head.value(f)
                continue
            }
            if head.nameIs(f, "x-forwarded-proto") || nameHasUnderscore(head, f) {
                continue
            }
            out.field(head, f)
        }
        if !authority.isEmpty {
            out.host(head.bytes[authority])
        } else if !hasHost {
            out.host(Array(defaultHost.utf8)[...])
        }
        out.forwarding(forwardedFor: forwardedFor, client: clientAddress[...], secure: request.isSecure, via: via)
        if upgrade {
            out.startField("Connection")
            out.value(ascii: "upgrade")
            out.endField()
        }
        let length = request.bodyLength
        if length > 0 || framed {
            out.contentLength(length)
        }
        out.endHead()
    }

    /// The lines every one of Breakwater's own answers carries: `date` (a whole `Date` line) and,
    /// for an origin `cors_origins` lists, the CORS fields that let that page read the answer.
    static func ownAnswerLines(date: UnsafeRawBufferPointer, corsOrigin: String?, into out: inout some ByteSink) {
        out.append(raw: date)
        if let corsOrigin {
            out.append(ascii: "Access-Control-Allow-Origin: ")
            out.append(utf8: corsOrigin)
            out.append(ascii: "\r\nVary: Origin\r\nAccess-Control-Expose-Headers: Retry-After, RateLimit\r\n")
        }
    }

    /// The whole head of a `101 Switching Protocols` relayed to the client: its fields but the
    /// hop-by-hop ones, the Upgrade field, `Connection: upgrade`, and the blank line.
    static func switchingResponse(_ head: HTTPHead, into out: inout some ByteSink) {
        clientResponse(head, keepLength: false, into: &out)
        for f in head.fields where head.nameIs(f, "upgrade") { out.append(line: head, f) }
        out.append(ascii: "Connection: upgrade\r\n\r\n")
    }

    /// The status line and headers relayed to the client; framing is added by the connection.
    /// A response without a body keeps its Content-Length (HEAD tells the size of the GET).
    /// A response without `Date` gets `date`, a whole `Date: ...` line (RFC 9110 6.6.1: a
    /// recipient with a clock adds the one an upstream without a clock left out); nil adds none.
    static func clientResponse(_ head: HTTPHead, keepLength: Bool, date: UnsafeRawBufferPointer? = nil,
                               into out: inout some ByteSink) {
        out.append(ascii: "HTTP/1.1 ")
        out.append(decimal: head.status)
        out.append(0x20)
        out.append(bytes: head.bytes[head.second])
        out.append(ascii: "\r\n")
        let hasConnection = head.connectionListsOtherFields
        var dated = date == nil
        for f in head.fields where relays(head, f, keepLength: keepLength, hasConnection: hasConnection) {
            if !dated && head.nameIs(f, "date") { dated = true }
            out.append(line: head, f)
        }
        if !dated, let date { out.append(raw: date) }
    }

    /// Whether a field of an upstream response goes on to the client (`clientResponse`'s rule,
    /// also that of an HTTP/2 stream's header fields); `hasConnection`: the head's
    /// `connectionListsOtherFields`.
    static func relays(_ head: HTTPHead, _ f: HeaderField, keepLength: Bool, hasConnection: Bool) -> Bool {
        if keepLength && head.nameIs(f, "content-length") { return true }
        if isHopByHop(head, f) { return false }
        return !(hasConnection && head.isListedInConnection(f))
    }
}
