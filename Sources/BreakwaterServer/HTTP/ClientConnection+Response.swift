import BreakwaterHTTP
private import CLibevent

/// Writing responses: the calls a handler answers through. Each checks that a response is due
/// (the reader is responding), writes into the socket's output buffer, and lets `framing` decide
/// the Content-Length, chunking and Connection headers only the connection knows.
extension ClientConnection {
    /// Writes a status line and headers (each line CRLF-terminated, no blank line yet); this adds
    /// the framing and Connection headers that only the connection can decide.
    func beginResponse(_ head: [UInt8], framing body: BodyFraming) {
        beginResponse(framing: body, reserving: head.count + 128) { $0.append(bytes: head[...]) }
    }

    /// `beginResponse` with the status line and headers written by `writeHead` straight into
    /// the output buffer (`reserving` bytes up front; more if they run out).
    func beginResponse(framing body: BodyFraming, reserving size: Int, head writeHead: (inout EvbufferWriter) -> Void) {
        guard reader.isResponding else { return }
        EvbufferWriter.write(into: socket.output, reserving: size) { out in
            writeHead(&out)
            writeFraming(body, into: &out)
        }
        // A streamed body may be slow to come: the head goes now. Otherwise it leaves with the body.
        if body == .stream { socket.flush() }
    }

    func beginResponse(relaying head: HTTPHead, framing body: BodyFraming) {
        let date = worker.dateHeaderLine
        beginResponse(framing: body, reserving: head.bytes.count + 128) {
            ProxyHeaders.clientResponse(head, keepLength: body == .none, date: date, into: &$0)
        }
    }

    /// A whole response with a body of `bodyLength` bytes, head and body written in one go: one
    /// of Breakwater's own answers (429, 503, 400...), so it carries `Date` and, for an origin
    /// listed in `cors_origins`, the CORS headers that let a page read it.
    func respond(bodyLength: Int, head writeHead: (inout EvbufferWriter) -> Void,
                 body writeBody: (inout EvbufferWriter) -> Void) {
        guard reader.isResponding else { return }
        let date = worker.dateHeaderLine
        EvbufferWriter.write(into: socket.output, reserving: 512 + bodyLength) { out in
            writeHead(&out)
            ProxyHeaders.ownAnswerLines(date: date, corsOrigin: corsOrigin, into: &out)
            writeFraming(.length(bodyLength), into: &out)
            if !framing.answeringHEAD { writeBody(&out) }
        }
        endResponse()
    }

    /// The framing and Connection headers that only the connection can decide, and the blank line.
    private func writeFraming(_ body: BodyFraming, into out: inout EvbufferWriter) {
        let headers = framing.headers(for: body, draining: worker.draining)
        if let n = headers.contentLength {
            out.append(ascii: "Content-Length: ")
            out.append(decimal: n)
            out.append(ascii: "\r\n")
        }
        if headers.chunked { out.append(ascii: "Transfer-Encoding: chunked\r\n") }
        if headers.close { out.append(ascii: "Connection: close\r\n") }
        if headers.keepAlive { out.append(ascii: "Connection: keep-alive\r\n") }
        out.append(ascii: "\r\n")
    }

    /// Appends body bytes taken from `buffer` (which is left empty). True when the client is
    /// slow and the caller should pause until `clientDrained`.
    @discardableResult
    func sendBody(_ buffer: OpaquePointer) -> Bool {
        let output = socket.output
        let n = evbuffer_get_length(buffer)
        guard reader.isResponding, n > 0, !framing.answeringHEAD else {
            evbuffer_drain(buffer, n)
            return false
        }
        if framing.chunked { writeRaw(String(n, radix: 16) + "\r\n") }
        evbuffer_add_buffer(output, buffer)
        if framing.chunked { writeRaw("\r\n") }
        socket.flush()
        return evbuffer_get_length(output) > Self.highWater
    }

    /// Appends body bytes.
    func sendBody(_ bytes: [UInt8]) {
        guard reader.isResponding, !bytes.isEmpty, !framing.answeringHEAD else { return }
        if framing.chunked { writeRaw(String(bytes.count, radix: 16) + "\r\n") }
        bytes.withUnsafeBytes { _ = evbuffer_add(socket.output, $0.baseAddress, $0.count) }
        if framing.chunked { writeRaw("\r\n") }
    }

    /// Completes the response; the connection then waits for the next request or closes.
    func endResponse() {
        guard reader.isResponding else { return }
        exchange = nil
        if corsOrigin != nil { corsOrigin = nil }
        if framing.chunked { writeRaw("0\r\n\r\n") }
        responseEnded()
    }

    /// Ends the connection mid-response so the client cannot mistake a partial body for a whole
    /// one: what was relayed is still delivered, then the connection closes without the framing's end.
    func abortResponse() {
        exchange = nil
        responseAborted()
    }

    func writeRaw(_ text: String) {
        var text = text
        text.withUTF8 { _ = evbuffer_add(socket.output, $0.baseAddress, $0.count) }
    }
}
