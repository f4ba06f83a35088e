private import CLibevent

/// The side of an exchange that reads a request body as it streams in.
protocol RequestBodyReader: AnyObject {
    /// Bytes were added to the pipe, or it ended.
    func bodyArrived()
}

/// The side of a stream that fills a pipe: told as bytes leave it, so that it lets the client
/// send as many more (an HTTP/2 stream opens its flow-control window).
protocol RequestBodySource: AnyObject {
    func bodyTaken(_ count: Int)
}

/// A request body that streams: an HTTP/2 stream forwarded to an HTTP/2 upstream passes its DATA
/// on as it arrives instead of buffering it whole. The client's stream appends; the upstream
/// exchange takes bytes (`take`) as its flow-control window allows, and the client's stream hears
/// of each taking, so the client sends no faster than the upstream reads.
final class RequestBodyPipe {
    /// The bytes that arrived and were not taken yet.
    let buffer: OpaquePointer
    /// The client ended its side of the stream: no more bytes come.
    private(set) var ended = false
    /// Told when bytes arrive; weak: the exchange owns its side.
    weak var reader: RequestBodyReader?
    /// Told when bytes are taken; weak: the client's stream owns the pipe.
    weak var source: RequestBodySource?
    /// Bytes at the front of the pipe whose room the source made before they came in (they were
    /// buffered before the body streamed): their taking is not reported.
    private var windowOpened: Int

    init(windowOpened: Int = 0) {
        buffer = evbuffer_new()!
        self.windowOpened = windowOpened
    }

    deinit { evbuffer_free(buffer) }

    /// Bytes not taken yet.
    var buffered: Int { evbuffer_get_length(buffer) }

    func append(_ data: UnsafeBufferPointer<UInt8>) {
        evbuffer_add(buffer, data.baseAddress, data.count)
        reader?.bodyArrived()
    }

    /// Moves up to `count` bytes into `destination`: how many (0 when none is there).
    func take(into destination: UnsafeMutableRawPointer, count: Int) -> Int {
        let n = max(0, Int(evbuffer_remove(buffer, destination, count)))
        let prepaid = min(n, windowOpened)
        windowOpened -= prepaid
        if n > prepaid { source?.bodyTaken(n - prepaid) }
        return n
    }

    func end() {
        ended = true
        reader?.bodyArrived()
    }
}
