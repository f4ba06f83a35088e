import Atomics
import BreakwaterCore

/// A TLS listener's lasting state, shared by the listeners of every worker: the context new
/// handshakes use (replaced whole by a reload), the session ticket keys, the handshake counters,
/// and how long a handshake may take.
final class TLSEndpoint: Sendable {
    /// How handshakes ended, for `breakwater_tls_handshakes_total{result}`.
    enum Result: String, CaseIterable { case ok, failed, timeout }

    /// A pthread mutex, not `Mutex`: ThreadSanitizer sees it (see `LockedValue`).
    private let current: LockedValue<TLSServerContext>
    private let ok = ManagedAtomic<Int>(0)
    private let failed = ManagedAtomic<Int>(0)
    private let timedOut = ManagedAtomic<Int>(0)
    /// The handshake must be complete this long after the connection was accepted.
    let handshakeTimeout: Duration
    /// The session ticket keys, kept across reloads (each reload rotates them once).
    let tickets: TLSTicketKeys

    init(context: TLSServerContext, tickets: TLSTicketKeys, handshakeTimeout: Duration) {
        current = LockedValue(context)
        self.tickets = tickets
        self.handshakeTimeout = handshakeTimeout
    }

    /// The context for new handshakes.
    var context: TLSServerContext { current.withLock { $0 } }

    /// New handshakes use `context`; sessions already made keep theirs.
    func replace(with context: TLSServerContext) { current.withLock { $0 = context } }

    /// Counts a handshake's end.
    func count(_ result: Result) {
        switch result {
        case .ok: ok.wrappingIncrement(ordering: .relaxed)
        case .failed: failed.wrappingIncrement(ordering: .relaxed)
        case .timeout: timedOut.wrappingIncrement(ordering: .relaxed)
        }
    }

    /// The handshakes that ended with `result` so far.
    func total(_ result: Result) -> Int {
        switch result {
        case .ok: ok.load(ordering: .relaxed)
        case .failed: failed.load(ordering: .relaxed)
        case .timeout: timedOut.load(ordering: .relaxed)
        }
    }
}
