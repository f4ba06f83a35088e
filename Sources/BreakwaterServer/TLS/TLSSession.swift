private import COpenSSL
#if canImport(Glibc)
import Glibc
#endif

/// Why a TLS set-up failed: the file involved and OpenSSL's reason.
public struct TLSError: Error, CustomStringConvertible {
    /// The file being loaded, empty when the failure concerns no file.
    public var file: String
    /// What went wrong, with OpenSSL's error queue.
    public var message: String

    public var description: String { file.isEmpty ? message : "\(file): \(message)" }

    /// An error with OpenSSL's queued reasons appended (the queue is emptied).
    static func openSSL(_ message: String, file: String = "") -> TLSError {
        TLSError(file: file, message: "\(message): \(drainErrors())")
    }

    /// OpenSSL's error queue as one line, emptied.
    static func drainErrors() -> String {
        var parts: [String] = []
        while true {
            let code = ERR_get_error()
            if code == 0 { break }
            var text = [CChar](repeating: 0, count: 256)
            ERR_error_string_n(code, &text, text.count)
            parts.append(String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        return parts.isEmpty ? "no reason given" : parts.joined(separator: "; ")
    }
}

/// One TLS connection's OpenSSL state, driven by the socket that owns it: the handshake, then
/// reads and writes of plain bytes, each answering what the socket must wait for.
final class TLSSession {
    /// What a TLS operation came to.
    enum Outcome: Equatable {
        /// n bytes moved (0 for a finished handshake).
        case done(Int)
        /// Wait until the socket is readable, then try again.
        case wantRead
        /// Wait until the socket is writable, then try again.
        case wantWrite
        /// The peer closed the TLS session (close_notify) or the TCP stream.
        case closed
        /// A protocol or verification failure, or a system error (errno, 0 when none).
        case failed(Int32)
    }

    private let ssl: OpaquePointer
    /// Keeps the context that made the session (its SNI and ALPN callbacks) alive as long as it.
    private let owner: AnyObject
    /// True until the handshake completes.
    private(set) var handshaking = true
    /// The server side of a connection (accepting), or the client side (to an upstream).
    let isServer: Bool

    init(ssl: OpaquePointer, owner: AnyObject, isServer: Bool) {
        self.ssl = ssl
        self.owner = owner
        self.isServer = isServer
    }

    deinit { SSL_free(ssl) }

    /// Drives the handshake one step.
    func handshake() -> Outcome {
        Self.emptyErrorQueue()
        let rc = SSL_do_handshake(ssl)
        if rc == 1 {
            handshaking = false
            return .done(0)
        }
        return outcome(rc)
    }

    /// Decrypts up to `count` bytes into `buffer`.
    func read(into buffer: UnsafeMutableRawPointer, count: Int) -> Outcome {
        Self.emptyErrorQueue()
        var n = 0
        if SSL_read_ex(ssl, buffer, count, &n) == 1 { return .done(n) }
        return outcome(0)
    }

    /// Whether bytes wait inside OpenSSL, decrypted or not yet: with read-ahead, one read from
    /// the socket may bring several records, and the socket does not become readable again for
    /// the ones after the first.
    var hasBufferedBytes: Bool { SSL_has_pending(ssl) == 1 }

    /// Encrypts and sends up to `count` bytes from `buffer`.
    func write(from buffer: UnsafeRawPointer, count: Int) -> Outcome {
        Self.emptyErrorQueue()
        var n = 0
        if SSL_write_ex(ssl, buffer, count, &n) == 1 { return .done(n) }
        return outcome(0)
    }

    /// Sends close_notify (once, not waiting for the peer's): the clean end of a TLS stream.
    func shutdown() {
        guard !handshaking else { return }
        Self.emptyErrorQueue()
        _ = SSL_shutdown(ssl)
        ERR_clear_error()
    }

    /// The SHA-256 fingerprint of the peer's certificate as lower-case hex; nil without one.
    func peerFingerprint() -> String? {
        guard let certificate = SSL_get1_peer_certificate(ssl) else { return nil }
        defer { X509_free(certificate) }
        var digest = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        guard X509_digest(certificate, EVP_sha256(), &digest, &length) == 1 else { return nil }
        let hex = Array("0123456789abcdef".utf8)
        var text: [UInt8] = []
        text.reserveCapacity(Int(length) * 2)
        for byte in digest.prefix(Int(length)) {
            text.append(hex[Int(byte >> 4)])
            text.append(hex[Int(byte & 15)])
        }
        return String(decoding: text, as: UTF8.self)
    }

    /// The protocol ALPN settled on, nil when none was.
    func negotiatedProtocol() -> String? {
        var data: UnsafePointer<UInt8>?
        var length: UInt32 = 0
        SSL_get0_alpn_selected(ssl, &data, &length)
        guard let data, length > 0 else { return nil }
        return String(decoding: UnsafeBufferPointer(start: data, count: Int(length)), as: UTF8.self)
    }

    /// The version in use, e.g. "TLSv1.3".
    func version() -> String { String(cString: SSL_get_version(ssl)) }

    /// Empties the thread's error queue before an I/O call, so that `SSL_get_error` reads that
    /// call's errors only (OpenSSL requires it). The queue is nearly always empty already, since
    /// every failure is cleared where it is read (`outcome`), and looking costs a quarter of
    /// clearing: `ERR_clear_error` resets each of the queue's sixteen slots.
    @inline(__always)
    private static func emptyErrorQueue() {
        if ERR_peek_error() != 0 { ERR_clear_error() }
    }

    private func outcome(_ rc: Int32) -> Outcome {
        let code = SSL_get_error(ssl, rc)
        switch code {
        case SSL_ERROR_WANT_READ: return .wantRead
        case SSL_ERROR_WANT_WRITE: return .wantWrite
        case SSL_ERROR_ZERO_RETURN: return .closed
        case SSL_ERROR_SYSCALL:
            let error = Glibc.errno
            ERR_clear_error()
            // An end of stream without close_notify: the peer went away.
            return error == 0 ? .closed : .failed(error)
        default:
            ERR_clear_error()
            return .failed(0)
        }
    }
}
