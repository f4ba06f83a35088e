private import CLibevent
internal import CNGHTTP2

/// The nghttp2 client session of an `UpstreamH2Connection` and its callbacks: non-capturing
/// closures that recover the connection from nghttp2's user data (unretained: the connection owns
/// the session and deletes it in `close`).
enum UpstreamH2Session {
    typealias SetupError = H2Session.SetupError

    /// The stream window Breakwater opens to the upstream; a response body is taken from nghttp2
    /// (and the window opened again) only as fast as the client reads it.
    static let streamWindow: UInt32 = 256 * 1024
    static let connectionWindow: Int32 = 4 * 1024 * 1024

    static func makeClient(for connection: UpstreamH2Connection) throws(SetupError) -> OpaquePointer {
        var callbacks: OpaquePointer?
        guard nghttp2_session_callbacks_new(&callbacks) == 0, let callbacks else { throw SetupError() }
        defer { nghttp2_session_callbacks_del(callbacks) }
        nghttp2_session_callbacks_set_on_header_callback(callbacks) { _, frame, name, nameLength, value, valueLength, _, user in
            guard let frame, let user, let name, let value else { return 0 }
            UpstreamH2Connection.from(user).header(frame.pointee.hd.stream_id, UnsafeBufferPointer(start: name, count: nameLength),
                                                   UnsafeBufferPointer(start: value, count: valueLength))
            return 0
        }
        nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks) { _, frame, user in
            guard let frame, let user else { return 0 }
            let type = frame.pointee.hd.type
            guard type == UInt8(NGHTTP2_HEADERS.rawValue) || type == UInt8(NGHTTP2_DATA.rawValue) else { return 0 }
            let endStream = frame.pointee.hd.flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0
            UpstreamH2Connection.from(user).frameReceived(frame.pointee.hd.stream_id, headers: type == UInt8(NGHTTP2_HEADERS.rawValue),
                                                          endStream: endStream)
            return 0
        }
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks) { _, _, streamID, data, length, user in
            guard let user, let data else { return 0 }
            UpstreamH2Connection.from(user).dataReceived(streamID, UnsafeBufferPointer(start: data, count: length))
            return 0
        }
        nghttp2_session_callbacks_set_on_stream_close_callback(callbacks) { _, streamID, code, user in
            guard let user else { return 0 }
            UpstreamH2Connection.from(user).streamClosed(streamID, code: code)
            return 0
        }

        var option: OpaquePointer?
        guard nghttp2_option_new(&option) == 0, let option else { throw SetupError() }
        defer { nghttp2_option_del(option) }
        // Response DATA is acknowledged (the window opened again) only once the client took it.
        nghttp2_option_set_no_auto_window_update(option, 1)
        nghttp2_option_set_peer_max_concurrent_streams(option, 100)

        var session: OpaquePointer?
        let user = Unmanaged.passUnretained(connection).toOpaque()
        guard nghttp2_session_client_new2(&session, callbacks, user, option) == 0, let session else { throw SetupError() }
        var entries = [
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_ENABLE_PUSH.rawValue), value: 0),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE.rawValue), value: streamWindow),
        ]
        try H2Session.announce(session, &entries, connectionWindow: connectionWindow)
        return session
    }

    /// The data source of every request body: the stream's pipe or buffered body.
    static var bodyProvider: nghttp2_data_provider {
        var provider = nghttp2_data_provider()
        provider.read_callback = { _, streamID, buffer, length, flags, _, user in
            guard let user, let buffer, let flags else { return Int(NGHTTP2_ERR_CALLBACK_FAILURE.rawValue) }
            return UpstreamH2Connection.from(user).readRequestBody(streamID, buffer, length, flags)
        }
        return provider
    }
}
