private import CLibevent

/// The side of an exchange that reads a request body as it streams in.
protocol RequestBodyReader: AnyObject {
    /// Bytes were added to the pipe, or it ended.
    func bodyArrived()
}

/// A request body that streams: an HTTP/2 stream forwarded to an HTTP/2 upstream passes its DATA
/// on as it arrives instead of buffering it whole. The client's stream appends; the upstream
/// exchange takes bytes as its flow-control window allows.
final class RequestBodyPipe {
    /// The bytes that arrived and were not taken yet.
    let buffer: OpaquePointer
    /// The client ended its side of the stream: no more bytes come.
    private(set) var ended = false
    /// Told when bytes arrive; weak: the exchange owns its side.
    weak var reader: RequestBodyReader?

    init() {
        buffer = evbuffer_new()!
    }

    deinit { evbuffer_free(buffer) }

    /// Bytes not taken yet.
    var buffered: Int { evbuffer_get_length(buffer) }

    func append(_ data: UnsafeBufferPointer<UInt8>) {
        evbuffer_add(buffer, data.baseAddress, data.count)
        reader?.bodyArrived()
    }

    func end() {
        ended = true
        reader?.bodyArrived()
    }
}
