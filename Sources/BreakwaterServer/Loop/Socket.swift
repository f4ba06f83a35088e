private import CLibevent
import BreakwaterCore
#if canImport(Glibc)
import Glibc
#endif

/// What happened on a socket, apart from bytes arriving.
enum SocketEvent: Equatable {
    /// A non-blocking connect completed.
    case connected
    /// The peer closed its side.
    case eof
    /// A system call failed; errno.
    case error(Int32)
    /// The inactivity timer fired.
    case timeout
}

/// The owner of a socket hears about it through this.
protocol SocketDelegate: AnyObject {
    /// New bytes are in `socket.input`.
    func socketReadable(_ socket: Socket)
    /// The output buffer emptied after the kernel had pushed back.
    func socketDrained(_ socket: Socket)
    /// Connected, closed by the peer, failed or timed out.
    func socketEvent(_ socket: Socket, _ event: SocketEvent)
    /// The TLS handshake of an accepted connection completed (a connecting socket reports
    /// `.connected` only once its handshake is done instead).
    func socketSecured(_ socket: Socket)
}

extension SocketDelegate {
    func socketSecured(_ socket: Socket) {}
}

/// A non-blocking TCP socket on one worker's loop, with an input and an output evbuffer.
///
/// Why not bufferevent: it asks the kernel how much is readable (an ioctl) before every read, and
/// adds then removes its write event around every write (two epoll_ctl calls). Here the read event
/// stays registered, reads go straight into the input buffer, and writes are tried at once, waiting
/// for EPOLLOUT only when the kernel's buffer is full: a proxied request costs one read and one
/// write on each side, as in nginx.
final class Socket {
    let fd: Int32
    /// Bytes received and not yet consumed.
    let input: OpaquePointer
    /// Bytes queued for the peer; `flush` sends them.
    let output: OpaquePointer
    /// Strong, so a delegate that drops its last other reference mid-callback stays valid until
    /// it returns; the cycle (the delegate owns the socket) is broken by `close`. A weak reference
    /// would move every retain and release of the delegate onto the slow side-table path.
    var delegate: SocketDelegate?
    private var readEvent: LoopEvent!
    /// The level-triggered read event replaced by `readItself(by:)`.
    private var levelReadEvent: LoopEvent?
    private var writeEvent: LoopEvent!
    /// The inactivity deadline, created by the first `setTimeout`.
    private var timer: DeadlineTimer?
    /// The inactivity limit in nanoseconds; nil: none.
    private var timeout: Int64?
    private let base: OpaquePointer
    private var reading = false
    private var waitingToWrite = false
    private var connecting: Bool
    private var failed: Int32 = 0
    /// The TLS session when the bytes on the wire are TLS records; `input` and `output` then hold
    /// the plain bytes.
    let tls: TLSSession?
    /// A TLS write that must be retried with the same length (OpenSSL's rule), and whether it
    /// waits for the socket to become readable; whether a TLS read waits for it to be writable.
    private var tlsWriteLength = 0
    private var tlsWriteWantsRead = false
    private var tlsReadWantsWrite = false
    /// Whether the first byte of an accepted TLS connection was looked at (plain HTTP or TLS).
    private var tlsFirstByteSeen = false
    private(set) var closed = false
    /// Set by `readItself(by:)`: a readable socket is reported to its reader unread.
    private(set) var readsItself = false
    /// With `readsItself`: the kernel reported that the peer ended its stream (EPOLLRDHUP), so
    /// a short read does not mean the socket is drained: its end is still to be read.
    private(set) var peerEnding = false

    static let readSize = 16_384
    /// How many plain bytes one wake-up of a TLS socket moves into `input` before it stops
    /// (at a record's end): as many as one read of a plain socket, so that a fast sender does not
    /// keep the loop from the other sockets. What OpenSSL still holds is read on the next turn.
    static let tlsReadPerTurn = readSize
    /// SOCK_STREAM, spelled once: Glibc's and the C modules' views of <sys/socket.h> disagree on
    /// which of them exports it.
    static let streamType = Int32(SOCK_STREAM.rawValue)

    /// Wraps a connected (or connecting) non-blocking socket; reading starts at once.
    init(fd: Int32, base: OpaquePointer, connecting: Bool = false, tls: TLSSession? = nil) throws(SystemCallError) {
        self.fd = fd
        self.base = base
        self.connecting = connecting
        self.tls = tls
        input = try libevent("evbuffer_new", evbuffer_new())
        output = try libevent("evbuffer_new", evbuffer_new())
        readEvent = try LoopEvent.readiness(base: base, fd: fd, read: true) { [unowned(unsafe) self] in readReady() }
        writeEvent = try LoopEvent.readiness(base: base, fd: fd, read: false) { [unowned(unsafe) self] in writeReady() }
        if connecting {
            waitingToWrite = true
            writeEvent.add()
        } else {
            setReading(true)
        }
    }

    /// Starts a non-blocking connect to `address`.
    /// With `tls`, a TLS session for the connection is made once the socket exists, and
    /// `.connected` is reported after the handshake.
    static func connect(to address: SocketAddress, base: OpaquePointer,
                        tls: ((Int32) -> TLSSession?)? = nil) throws(SystemCallError) -> Socket {
        let family = Int32(address.withSockaddr { sa, _ in sa.pointee.sa_family })
        let fd = try syscall("socket") {
            Glibc.socket(family, streamType | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        }
        do throws(SystemCallError) {
            do throws(SystemCallError) {
                _ = try syscall("connect(\(address))") { address.withSockaddr { sa, length in Glibc.connect(fd, sa, length) } }
            } catch where error.errno == EINPROGRESS {
                // The usual case: the connection completes later, and the write event says so.
            }
            try setNoDelay(fd)
            var session: TLSSession?
            if let tls {
                session = tls(fd)
                if session == nil { throw SystemCallError("SSL_new", .unspecified) }
            }
            return try Socket(fd: fd, base: base, connecting: true, tls: session)
        } catch {
            Glibc.close(fd)
            throw error
        }
    }

    /// Disables Nagle: requests and responses are written whole, and waiting only adds latency.
    static func setNoDelay(_ fd: Int32) throws(SystemCallError) {
        var one: Int32 = 1
        _ = try syscall("setsockopt(TCP_NODELAY)") {
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        }
    }

    deinit {
        close()
        evbuffer_free(input)
        evbuffer_free(output)
    }

    /// Reading on or off (off: back-pressure, the peer's bytes wait in the kernel).
    func setReading(_ on: Bool) {
        guard !closed, !connecting, on != reading else { return }
        reading = on
        if on {
            readEvent.add()
            // Records that OpenSSL read ahead while reading was off: the socket will not
            // become readable for them, so they are read on the loop's next turn.
            if tls?.hasBufferedBytes == true { readEvent.activate(Int16(EV_READ)) }
        } else {
            readEvent.delete()
        }
    }

    /// An inactivity limit: the delegate hears `.timeout` when no byte moves for `duration`; nil: none.
    func setTimeout(_ duration: Duration?) {
        setTimeout(nanoseconds: duration?.clampedNanoseconds)
    }

    /// `setTimeout` for a limit kept in nanoseconds, converted once by the caller.
    func setTimeout(nanoseconds: Int64?) {
        timeout = nanoseconds
        guard !closed else { return }
        if let timeout {
            if timer == nil {
                do {
                    timer = try DeadlineTimer(base: base) { [unowned(unsafe) self] in timerFired() }
                } catch {
                    fail(error.errno == 0 ? ENOMEM : error.errno)
                    return
                }
            }
            timer!.set(afterNanoseconds: timeout)
        } else {
            timer?.clear()
        }
    }

    /// Bytes moved: the inactivity deadline starts over (no libevent call, see DeadlineTimer).
    /// A handshake's deadline is not moved by its bytes: it bounds the whole handshake.
    @inline(__always)
    private func touch() {
        if let timeout, tls?.handshaking != true { timer!.set(afterNanoseconds: timeout) }
    }

    /// Sends what `output` holds, as far as the kernel takes it now; the rest goes when it can.
    func flush() {
        guard !closed, !connecting, !waitingToWrite, failed == 0 else { return }
        write()
    }

    /// Sends the end of the stream (FIN) after what is written; reading goes on.
    func shutdownWrite() {
        guard !closed else { return }
        tls?.shutdown()
        do {
            _ = try syscall("shutdown") { Glibc.shutdown(fd, Int32(SHUT_WR)) }
        } catch {
            fail(error.errno)
        }
    }

    /// Closes the socket; no callback follows.
    func close() {
        guard !closed else { return }
        closed = true
        delegate = nil
        if failed == 0 { tls?.shutdown() }
        readEvent.close()
        levelReadEvent?.close()
        writeEvent.close()
        timer?.free()
        timer = nil
        Glibc.close(fd)
    }

    // MARK: events

    private func readReady() {
        if failed != 0 { return reportFailure() }
        if let tls { return readTLS(tls) }
        var vec = iovec()
        guard evbuffer_reserve_space(input, Self.readSize, &vec, 1) == 1 else {
            fail(ENOMEM)
            return
        }
        let n = recv(fd, vec.iov_base, vec.iov_len, 0)
        if n > 0 {
            vec.iov_len = n
            precondition(evbuffer_commit_space(input, &vec, 1) == 0, "evbuffer_commit_space failed")
            touch()
            delegate?.socketReadable(self)
        } else if n == 0 {
            setReading(false)
            delegate?.socketEvent(self, .eof)
        } else if errno != EAGAIN && errno != EINTR {
            let error = errno
            setReading(false)
            delegate?.socketEvent(self, .error(error))
        }
    }

    /// A failed write (or read) recorded by `fail`, told to the delegate from the read side.
    private func reportFailure() {
        let error = failed
        failed = 0
        setReading(false)
        delegate?.socketEvent(self, .error(error))
    }

    /// Whether bytes from the peer wait to be read, here or in the kernel (an end of stream
    /// counts as none).
    func hasPendingInput() -> Bool {
        guard !closed else { return false }
        if evbuffer_get_length(input) > 0 || tls?.hasBufferedBytes == true { return true }
        var byte: UInt8 = 0
        return recv(fd, &byte, 1, Int32(MSG_PEEK | MSG_DONTWAIT)) > 0
    }

    // MARK: reading and writing without the buffers (plain sockets, tunnels)

    /// From now on a readable socket is reported to `reader` unread (`socketReadable`), and it
    /// reads with `receive(into:count:)` into a buffer of its own (a tunnel relaying); plain
    /// sockets only. Readiness becomes edge-triggered, as nginx has it: the kernel reports new
    /// bytes once, not again at every wait while some remain, so the reader reads until a read
    /// comes back short (and, once `peerEnding`, until the end of the stream), or calls
    /// `readAgainSoon()`. The level-triggered event is kept (deleted) until the socket closes:
    /// this may run inside its callback.
    ///
    /// Neither the socket nor the reader is retained around the call (two atomic operations for
    /// each, twice per relayed message otherwise): whoever owns the reader keeps it, and the
    /// socket, alive until the loop's next turn after letting go of them, since that may happen
    /// inside the call (see `ClientConnection.tunnelClosed`). Failures still go to the delegate.
    func readItself<Reader: SocketDelegate>(by reader: Reader) {
        guard tls == nil, !closed, !readsItself else { return }
        readsItself = true
        let me = Unmanaged.passUnretained(self)
        let borrowed = Unmanaged.passUnretained(reader)
        guard let edge = try? LoopEvent(base: base, fd: fd, what: Int16(EV_READ | EV_CLOSED | EV_PERSIST | EV_ET), {
            me._withUnsafeGuaranteedRef { socket in
                guard socket.edgeFired() else { return }
                borrowed._withUnsafeGuaranteedRef { $0.socketReadable(socket) }
            }
        }) else { return }
        readEvent.delete()
        levelReadEvent = readEvent
        readEvent = edge
        if reading { readEvent.add() }
    }

    /// The edge-triggered read event fired: true when the reader is to read, false when a
    /// failure went to the delegate instead.
    private func edgeFired() -> Bool {
        if failed != 0 {
            reportFailure()
            return false
        }
        if readEvent.firedWith & Int16(EV_CLOSED) != 0 { peerEnding = true }
        return true
    }

    /// Reports the socket readable again on the next turn of the loop (a reader that stopped
    /// before draining the socket).
    func readAgainSoon() {
        guard !closed, reading else { return }
        readEvent.activate(Int16(EV_READ))
    }

    /// Reads up to `count` bytes into `buffer`: the count read; 0 at the end of the stream
    /// (reading then stops); -1 when nothing is there now, or on an error, which the delegate
    /// hears as `.error` on the next turn of the loop, as a failed write.
    func receive(into buffer: UnsafeMutableRawPointer, count: Int) -> Int {
        guard !closed, failed == 0 else { return -1 }
        let n = breakwater_recv(fd, buffer, count)
        if n > 0 {
            touch()
            return n
        }
        if n == 0 {
            setReading(false)
            return 0
        }
        if errno != EAGAIN && errno != EINTR { fail(errno) }
        return -1
    }

    /// Sends `count` bytes from `bytes`: straight to the kernel when nothing is queued before
    /// them, and what it does not take now (or all of it, behind queued bytes or on a TLS
    /// socket) is copied into `output` and goes when it can.
    func send(_ bytes: UnsafeRawPointer, count: Int) {
        guard !closed, count > 0 else { return }
        var sent = 0
        if tls == nil, !connecting, !waitingToWrite, failed == 0, evbuffer_get_length(output) == 0 {
            let n = breakwater_send(fd, bytes, count, Int32(MSG_NOSIGNAL))
            if n == count {
                touch()
                return
            }
            if n < 0, errno != EAGAIN, errno != EINTR {
                fail(errno)
                return
            }
            if n > 0 {
                touch()
                sent = n
            }
            evbuffer_add(output, bytes + sent, count - sent)
            waitForWritable()
            return
        }
        evbuffer_add(output, bytes, count)
        flush()
    }

    private func writeReady() {
        if connecting {
            var error: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            if getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) != 0 { error = Glibc.errno }
            connecting = false
            waitingToWrite = false
            writeEvent.delete()
            if error != 0 {
                delegate?.socketEvent(self, .error(error))
                return
            }
            setReading(true)
            if let tls {
                _ = advanceHandshake(tls)
                return
            }
            delegate?.socketEvent(self, .connected)
            if !closed, evbuffer_get_length(output) > 0 { write() }
            return
        }
        if let tls {
            if tls.handshaking {
                stopWaitingToWrite()
                if advanceHandshake(tls) { readTLS(tls) }
                return
            }
            if tlsReadWantsWrite {
                tlsReadWantsWrite = false
                readTLS(tls)
                if closed { return }
            }
        }
        write()
        if !waitingToWrite, !closed { delegate?.socketDrained(self) }
    }

    private func write() {
        if let tls { return writeTLS(tls) }
        while evbuffer_get_length(output) > 0 {
            // One contiguous block (a whole small response, a tunnelled message) goes with send,
            // whose path through the kernel is shorter than writev's; several go with writev.
            var block = iovec()
            let n: Int
            if evbuffer_peek(output, -1, nil, &block, 1) == 1 {
                n = Glibc.send(fd, block.iov_base, block.iov_len, Int32(MSG_NOSIGNAL))
                if n > 0 { evbuffer_drain(output, n) }
            } else {
                n = Int(evbuffer_write(output, fd))
            }
            if n > 0 {
                touch()
                continue
            }
            if n < 0, errno == EAGAIN || errno == EINTR {
                if !waitingToWrite {
                    waitingToWrite = true
                    writeEvent.add()
                }
                return
            }
            fail(n < 0 ? errno : EPIPE)
            break
        }
        stopWaitingToWrite()
    }

    private func waitForWritable() {
        guard !waitingToWrite else { return }
        waitingToWrite = true
        writeEvent.add()
    }

    private func stopWaitingToWrite() {
        guard waitingToWrite else { return }
        waitingToWrite = false
        writeEvent.delete()
    }

    // MARK: TLS

    /// One step of the handshake; true when it completed just now and the socket is still open.
    private func advanceHandshake(_ tls: TLSSession) -> Bool {
        switch tls.handshake() {
        case .done:
            if tls.isServer {
                delegate?.socketSecured(self)
            } else {
                delegate?.socketEvent(self, .connected)
                if !closed, evbuffer_get_length(output) > 0 { write() }
            }
            return !closed
        case .wantRead:
            return false
        case .wantWrite:
            waitForWritable()
            return false
        case .closed:
            setReading(false)
            delegate?.socketEvent(self, tls.isServer ? .eof : .error(ECONNRESET))
            return false
        case .failed(let error):
            setReading(false)
            delegate?.socketEvent(self, .error(error == 0 ? EPROTO : error))
            return false
        }
    }

    /// Reads and decrypts what the socket holds. OpenSSL reads ahead (TLSServerContext): one read
    /// from the socket may bring several records, and no readiness announces the ones it keeps,
    /// so they are all read here while OpenSSL holds bytes (a partial record needs the socket,
    /// whose readiness then comes), up to `tlsReadPerTurn`: past that, the rest is read on the
    /// loop's next turn. With reading off meanwhile, `setReading(true)` brings that turn.
    private func readTLS(_ tls: TLSSession) {
        if tls.handshaking, tls.isServer, !tlsFirstByteSeen {
            tlsFirstByteSeen = true
            var first: UInt8 = 0
            // A TLS connection begins with a handshake record (0x16); an upper-case letter is the
            // method of a plain HTTP request sent to the TLS port.
            if recv(fd, &first, 1, Int32(MSG_PEEK)) == 1, first >= UInt8(ascii: "A"), first <= UInt8(ascii: "Z") {
                return answerPlainHTTP()
            }
        }
        if tls.handshaking {
            guard advanceHandshake(tls) else { return }
        }
        if tlsWriteWantsRead {
            tlsWriteWantsRead = false
            write()
            if closed { return }
        }
        var received = 0
        reading: while true {
            var vec = iovec()
            guard evbuffer_reserve_space(input, Self.readSize, &vec, 1) == 1 else {
                fail(ENOMEM)
                return
            }
            switch tls.read(into: vec.iov_base, count: vec.iov_len) {
            case .done(let n):
                vec.iov_len = n
                precondition(evbuffer_commit_space(input, &vec, 1) == 0, "evbuffer_commit_space failed")
                received += n
                guard tls.hasBufferedBytes else { break reading }
                if received >= Self.tlsReadPerTurn {
                    if reading { readEvent.activate(Int16(EV_READ)) }
                    break reading
                }
            case .wantRead:
                break reading
            case .wantWrite:
                tlsReadWantsWrite = true
                waitForWritable()
                break reading
            case .closed:
                if received > 0 { delegate?.socketReadable(self) }
                if closed { return }
                setReading(false)
                delegate?.socketEvent(self, .eof)
                return
            case .failed(let error):
                setReading(false)
                delegate?.socketEvent(self, .error(error == 0 ? EPROTO : error))
                return
            }
        }
        if received > 0 {
            touch()
            delegate?.socketReadable(self)
        }
    }

    /// Answers a plain HTTP request sent to the TLS port with a plain 400, as nginx does, then
    /// ends the connection: what the client sent is read and dropped first, so that the close does
    /// not reset the answer away.
    private func answerPlainHTTP() {
        var scratch = [UInt8](repeating: 0, count: 16_384)
        for _ in 0..<4 where recv(fd, &scratch, scratch.count, Int32(MSG_DONTWAIT)) > 0 {}
        let body = "400 Bad Request: a plain HTTP request was sent to the HTTPS port\n"
        let answer = Array("HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: \(body.utf8.count)\r\n"
                           .utf8) + Array("Connection: close\r\n\r\n\(body)".utf8)
        _ = answer.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        _ = Glibc.shutdown(fd, Int32(SHUT_WR))
        setReading(false)
        delegate?.socketEvent(self, .error(EPROTO))
    }

    /// Encrypts and sends what `output` holds. Small pieces are gathered into records of up to
    /// 16 KiB first, so a head and a small body go out as one record.
    private func writeTLS(_ tls: TLSSession) {
        guard !tls.handshaking else { return }   // written once the handshake is done
        while true {
            let buffered = evbuffer_get_length(output)
            guard buffered > 0 else { break }
            let length = tlsWriteLength > 0 ? tlsWriteLength : min(buffered, Self.readSize)
            guard let data = evbuffer_pullup(output, length) else {
                fail(ENOMEM)
                return
            }
            switch tls.write(from: data, count: length) {
            case .done(let n):
                tlsWriteLength = 0
                evbuffer_drain(output, n)
                touch()
            case .wantWrite:
                tlsWriteLength = length
                waitForWritable()
                return
            case .wantRead:
                tlsWriteLength = length
                tlsWriteWantsRead = true
                setReading(true)
                return
            case .closed:
                fail(EPIPE)
                return
            case .failed(let error):
                fail(error == 0 ? EPROTO : error)
                return
            }
        }
        stopWaitingToWrite()
    }

    /// A broken pipe, a reset or a failed call: reported from the read side, outside the
    /// caller's stack, as `.error`.
    private func fail(_ code: Int32) {
        guard !closed else { return }
        failed = code
        if !reading {
            readEvent.add()
            reading = true
        }
        readEvent.activate(Int16(EV_READ))
    }

    private func timerFired() {
        guard timer!.expired() else { return }
        delegate?.socketEvent(self, .timeout)
    }
}
