/// HTTP/2 on one listener.
struct H2Settings: Sendable {
    /// The plain listener serves a connection that opens with the HTTP/2 preface as HTTP/2
    /// (`[server] h2c`); a TLS listener speaks HTTP/2 when ALPN settles on "h2" instead.
    var priorKnowledge = false
    /// SETTINGS_MAX_CONCURRENT_STREAMS (`[server] h2_max_streams`).
    var maxStreams = 128
    /// SETTINGS_INITIAL_WINDOW_SIZE: what a client may send on one stream before its window is
    /// opened again; the body is buffered up to `max_body_bytes` as for HTTP/1.1.
    var streamWindow = 1 << 16
    /// The connection's receive window, shared by all its streams.
    var connectionWindow = 1 << 20
    /// Response bytes queued for one stream beyond which the upstream is paused.
    var streamHighWater = 1 << 18
    /// Bytes queued for the socket beyond which no more frames are made until it drains.
    var outputHighWater = 1 << 18
    /// RST_STREAM frames a client may send at once and per second afterwards before the
    /// connection is closed with GOAWAY (CVE-2023-44487, "rapid reset").
    var resetBurst = 200
    var resetRate = 33
    /// CONTINUATION frames after one HEADERS frame (CVE-2024-28182).
    var maxContinuations = 8
    /// SETTINGS entries in one frame, and frames the peer may make us acknowledge (SETTINGS and
    /// PING floods) before the connection is closed.
    var maxSettingsEntries = 32
    var maxOutboundAcks = 1000
}
