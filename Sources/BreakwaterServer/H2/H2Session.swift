import BreakwaterHTTP
private import CLibevent
internal import CNGHTTP2

/// The nghttp2 server session of an `H2Connection`: its options (the limits), its SETTINGS, and
/// its callbacks. The callbacks are non-capturing closures; each recovers the connection from
/// nghttp2's user data with `Unmanaged` (unretained: the connection owns the session and deletes
/// it in `close`, so it outlives every callback).
enum H2Session {
    struct SetupError: Error {}

    static func makeServer(for connection: H2Connection) throws(SetupError) -> OpaquePointer {
        let settings = connection.settings
        var callbacks: OpaquePointer?
        guard nghttp2_session_callbacks_new(&callbacks) == 0, let callbacks else { throw SetupError() }
        defer { nghttp2_session_callbacks_del(callbacks) }
        nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks) { _, frame, user in
            guard let frame, let user else { return 0 }
            return H2Connection.borrowed(user) { $0.beginHeaders(frame) }
        }
        nghttp2_session_callbacks_set_on_header_callback(callbacks) { _, frame, name, nameLength, value, valueLength, _, user in
            guard let frame, let user, let name, let value else { return 0 }
            let fieldName = UnsafeBufferPointer(start: name, count: nameLength)
            let fieldValue = UnsafeBufferPointer(start: value, count: valueLength)
            return H2Connection.borrowed(user) { $0.header(frame, fieldName, fieldValue) }
        }
        nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks) { _, frame, user in
            guard let frame, let user else { return 0 }
            return H2Connection.borrowed(user) { $0.frameReceived(frame) }
        }
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks) { _, _, streamID, data, length, user in
            guard let user, let data else { return 0 }
            return H2Connection.borrowed(user) { $0.dataReceived(streamID, UnsafeBufferPointer(start: data, count: length)) }
        }
        nghttp2_session_callbacks_set_on_frame_send_callback(callbacks) { _, frame, user in
            guard let frame, let user else { return 0 }
            return H2Connection.borrowed(user) { $0.frameSent(frame) }
        }
        nghttp2_session_callbacks_set_on_stream_close_callback(callbacks) { _, streamID, _, user in
            guard let user else { return 0 }
            H2Connection.borrowed(user) { $0.streamClosed(streamID) }
            return 0
        }

        var option: OpaquePointer?
        guard nghttp2_option_new(&option) == 0, let option else { throw SetupError() }
        defer { nghttp2_option_del(option) }
        nghttp2_option_set_max_settings(option, settings.maxSettingsEntries)
        nghttp2_option_set_max_outbound_ack(option, settings.maxOutboundAcks)
        nghttp2_option_set_stream_reset_rate_limit(option, UInt64(settings.resetBurst), UInt64(settings.resetRate))
        nghttp2_option_set_max_continuations(option, settings.maxContinuations)
        // Request DATA is acknowledged by hand (`H2Connection.dataReceived`): a body streaming to
        // an HTTP/2 upstream opens its stream's window only as the upstream takes it.
        nghttp2_option_set_no_auto_window_update(option, 1)

        var session: OpaquePointer?
        let user = Unmanaged.passUnretained(connection).toOpaque()
        guard nghttp2_session_server_new2(&session, callbacks, user, option) == 0, let session else { throw SetupError() }
        var entries = [
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS.rawValue),
                                   value: UInt32(settings.maxStreams)),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE.rawValue),
                                   value: UInt32(settings.streamWindow)),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE.rawValue),
                                   value: UInt32(connection.listener.limits.maxHeaderBytes)),
        ]
        try announce(session, &entries, connectionWindow: Int32(settings.connectionWindow))
        return session
    }

    /// Queues a new session's SETTINGS (`entries`) and opens its connection receive window to
    /// `connectionWindow`, for either side; when either fails the session is deleted.
    static func announce(_ session: OpaquePointer, _ entries: inout [nghttp2_settings_entry],
                         connectionWindow: Int32) throws(SetupError) {
        let flags = UInt8(NGHTTP2_FLAG_NONE.rawValue)
        guard nghttp2_submit_settings(session, flags, &entries, entries.count) == 0,
              nghttp2_session_set_local_window_size(session, flags, 0, connectionWindow) == 0
        else {
            nghttp2_session_del(session)
            throw SetupError()
        }
    }

    /// The data source of every response body: the stream's queued bytes.
    static var bodyProvider: nghttp2_data_provider {
        var provider = nghttp2_data_provider()
        provider.read_callback = { _, streamID, buffer, length, flags, _, user in
            guard let user, let buffer, let flags else { return Int(NGHTTP2_ERR_CALLBACK_FAILURE.rawValue) }
            return H2Connection.borrowed(user) { $0.readBody(streamID, buffer, length, flags) }
        }
        return provider
    }
}

// MARK: the callbacks' side of the connection

extension H2Connection {
    /// Calls `body` with the connection nghttp2's user data points to, borrowed rather than
    /// retained and released around each of the several callbacks a request makes.
    @inline(__always)
    static func borrowed<R>(_ user: UnsafeMutableRawPointer, _ body: (H2Connection) -> R) -> R {
        Unmanaged<H2Connection>.fromOpaque(user)._withUnsafeGuaranteedRef(body)
    }

    private static func isRequestHeaders(_ frame: UnsafePointer<nghttp2_frame>) -> Bool {
        frame.pointee.hd.type == UInt8(NGHTTP2_HEADERS.rawValue) && frame.pointee.headers.cat == NGHTTP2_HCAT_REQUEST
    }

    fileprivate func beginHeaders(_ frame: UnsafePointer<nghttp2_frame>) -> Int32 {
        guard Self.isRequestHeaders(frame) else { return 0 }
        streamOpened(H2Stream(id: frame.pointee.hd.stream_id, connection: self))
        return 0
    }

    fileprivate func header(_ frame: UnsafePointer<nghttp2_frame>, _ name: UnsafeBufferPointer<UInt8>,
                            _ value: UnsafeBufferPointer<UInt8>) -> Int32 {
        guard let stream = stream(frame.pointee.hd.stream_id) else { return 0 }
        if Self.isRequestHeaders(frame) {
            stream.header(name, value, limit: listener.limits.maxHeaderBytes)
        }
        // Trailers of a request are not forwarded (the upstream request carries a Content-Length).
        return 0
    }

    fileprivate func frameReceived(_ frame: UnsafePointer<nghttp2_frame>) -> Int32 {
        let endStream = frame.pointee.hd.flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0
        let type = frame.pointee.hd.type
        guard type == UInt8(NGHTTP2_HEADERS.rawValue) || type == UInt8(NGHTTP2_DATA.rawValue),
              let stream = stream(frame.pointee.hd.stream_id) else { return 0 }
        if Self.isRequestHeaders(frame) { events.append(.headers(stream)) }
        if endStream {
            stream.requestEnded = true
            events.append(.complete(stream))
        }
        return 0
    }

    /// Request DATA: the connection's window opens again at once, so that a stream waiting for
    /// its upstream holds no other stream back; the stream's own window opens at once too, unless
    /// its body streams to an HTTP/2 upstream (then as the upstream takes the bytes, see
    /// `H2Stream.bodyBytes`).
    fileprivate func dataReceived(_ id: Int32, _ data: UnsafeBufferPointer<UInt8>) -> Int32 {
        if let session { _ = nghttp2_session_consume_connection(session, data.count) }
        guard let stream = stream(id) else {
            consumed(data.count, of: id)
            return 0
        }
        if stream.lingeredPastItsBound(adding: data.count) {
            consumed(data.count, of: id)
            reset(stream, code: NGHTTP2_NO_ERROR)
            return 0
        }
        if let error = stream.bodyBytes(data, limit: listener.limits.maxBodyBytes) { events.append(.refuse(stream, error)) }
        return 0
    }

    fileprivate func frameSent(_ frame: UnsafePointer<nghttp2_frame>) -> Int32 {
        if frame.pointee.hd.type == UInt8(NGHTTP2_GOAWAY.rawValue), frame.pointee.goaway.error_code != NGHTTP2_NO_ERROR.rawValue {
            // nghttp2 gave up on the client (a rapid reset, say): the connection ends after this frame.
            goawaySent()
            return 0
        }
        let endStream = frame.pointee.hd.flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0
        let type = frame.pointee.hd.type
        guard endStream, type == UInt8(NGHTTP2_HEADERS.rawValue) || type == UInt8(NGHTTP2_DATA.rawValue),
              let stream = stream(frame.pointee.hd.stream_id) else { return 0 }
        // The response is out while the client still sends a body nobody will read: it is told
        // to stop (RFC 9113 8.1), after the response, which has left already; the body of a
        // refused request is first read and dropped for a moment (H2Stream.linger).
        if !stream.requestEnded, !stream.linger() { reset(stream, code: NGHTTP2_NO_ERROR) }
        return 0
    }

    fileprivate func readBody(_ id: Int32, _ buffer: UnsafeMutablePointer<UInt8>, _ length: Int,
                              _ flags: UnsafeMutablePointer<UInt32>) -> Int {
        guard let stream = stream(id) else { return Int(NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue) }
        switch stream.readBody(into: buffer, length) {
        case .bytes(let n, let last):
            if last {
                flags.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue
                // Trailers end the stream instead of this DATA frame (nghttp2 sends them after it).
                if let trailers = stream.takeTrailers(), let session,
                   trailers.withNameValues({ nghttp2_submit_trailer(session, id, $0.baseAddress, $0.count) }) == 0 {
                    flags.pointee |= NGHTTP2_DATA_FLAG_NO_END_STREAM.rawValue
                }
            }
            if stream.wantsDrainNotice { drainedStreams.append(stream) }
            return n
        case .later:
            if stream.wantsDrainNotice { drainedStreams.append(stream) }
            return Int(NGHTTP2_ERR_DEFERRED.rawValue)
        }
    }
}
