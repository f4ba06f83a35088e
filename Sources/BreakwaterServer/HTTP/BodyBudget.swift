import Synchronization

/// The bound on request bodies being received, over every connection of every worker
/// (`[server] max_buffered_bytes`).
///
/// A connection reading a body takes its bytes from the budget as it moves them out of the socket
/// and gives them back when the body is complete and handed on (or refused, or the connection
/// closes). While the budget is spent, connections that are reading a body stop reading: their
/// bytes wait in the kernel, and the worker looks again when bytes are given back
/// (`Worker.bodyBudgetFreed`) and every few milliseconds (bytes given back on another worker).
/// A body may overshoot the bound by one read (16 KiB) per worker, never more.
final class BodyBudget: Sendable {
    private let limitBytes: Atomic<Int>
    private let used = Atomic<Int>(0)

    /// A budget of `limit` bytes.
    init(limit: Int) { limitBytes = Atomic(limit) }

    /// The bound in force; a reload may change it.
    var limit: Int {
        get { limitBytes.load(ordering: .relaxed) }
        set { limitBytes.store(newValue, ordering: .relaxed) }
    }

    /// Bytes of bodies being received now.
    var bytes: Int { used.load(ordering: .relaxed) }

    /// Whether a connection may read more body bytes now.
    var hasRoom: Bool { used.load(ordering: .relaxed) < limitBytes.load(ordering: .relaxed) }

    /// `n` more bytes are held.
    func take(_ n: Int) { used.wrappingAdd(n, ordering: .relaxed) }

    /// `n` bytes were released.
    func give(_ n: Int) { used.wrappingSubtract(n, ordering: .relaxed) }
}
