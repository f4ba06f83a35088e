/// The limits a connection applies to every request it reads.
public struct ReaderLimits: Sendable, Equatable {
    /// A head (request line and headers) over this many bytes: 431, or 414 when the request line
    /// alone is over `maxRequestLineBytes`.
    public var maxHeaderBytes: Int
    /// A request line over this many bytes: 414 (nginx refuses lines that do not fit its 8 KiB
    /// large header buffer the same way).
    public var maxRequestLineBytes: Int
    /// A body over this many bytes: 413.
    public var maxBodyBytes: Int
    /// A head must arrive whole this long after its first byte; a body may stall this long.
    public var headerTimeout: Duration
    /// A kept-alive connection may wait this long for its next request.
    public var idleTimeout: Duration
    /// A request body must average at least this many bytes a second, after a grace of
    /// `headerTimeout`: it is cut off (408) once more than `headerTimeout + received / minBodyRate`
    /// has passed since its head, or `headerTimeout` passes without a byte. A client that
    /// trickles a body cannot hold a connection for longer than it pays for in bandwidth.
    public var minBodyRate: Int

    public init(maxHeaderBytes: Int = 16_384, maxRequestLineBytes: Int = 8192, maxBodyBytes: Int = 10_000_000,
                headerTimeout: Duration = .seconds(10), idleTimeout: Duration = .seconds(60), minBodyRate: Int = 16_384) {
        self.maxHeaderBytes = maxHeaderBytes
        self.maxRequestLineBytes = maxRequestLineBytes
        self.maxBodyBytes = maxBodyBytes
        self.headerTimeout = headerTimeout
        self.idleTimeout = idleTimeout
        self.minBodyRate = minBodyRate
    }
}
