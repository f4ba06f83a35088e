private import CLibevent
#if canImport(Glibc)
import Glibc
#endif

/// One libevent event, owned by Swift: the only type that creates and frees events and hands
/// libevent a pointer back to a Swift object. A socket's read and write readiness, a deadline,
/// a periodic sweep are each one of these; `handler` runs on the loop's thread when it fires.
///
/// The event holds its handler and the handler usually holds the event's owner; owners capture
/// themselves `unowned(unsafe)` and free the event (`close`) before they go, which is what keeps
/// the request path free of reference counting here.
final class LoopEvent {
    private var event: OpaquePointer?
    /// The base the event belongs to (for the debug builds' thread check).
    private let base: OpaquePointer
    private let handler: () -> Void

    /// Whether the event is pending (added and not yet fired or deleted). A persistent event stays
    /// pending until deleted.
    private(set) var isPending = false
    private let persistent: Bool
    /// What the last firing reported (EV_READ, EV_WRITE, EV_CLOSED, EV_TIMEOUT).
    private(set) var firedWith: Int16 = 0

    /// An event on `base` for `fd` (-1: a pure timer) and `what` (EV_READ, EV_WRITE, EV_PERSIST).
    init(base: OpaquePointer, fd: Int32 = -1, what: Int16 = 0, _ handler: @escaping () -> Void) throws(SystemCallError) {
        self.handler = handler
        self.base = base
        persistent = what & Int16(EV_PERSIST) != 0
        event = try libevent("event_new", event_new(base, fd, what, { _, fired, context in
            // Borrowed, not retained: the owner keeps the event alive while it is registered, and
            // nothing reads the event after its handler returns (an owner may free it inside).
            Unmanaged<LoopEvent>.fromOpaque(context!)._withUnsafeGuaranteedRef { $0.fire(fired) }
        }, Unmanaged.passUnretained(self).toOpaque()))
    }

    /// Runs the handler for a firing. The event and its handler are borrowed for the call (no
    /// retain and release around it, two atomic operations per event saved on the hot path).
    @inline(__always)
    private func fire(_ fired: Int16) {
        firedWith = fired
        if !persistent { isPending = false }
        handler()
    }

    /// A readiness event for `fd`, pending until deleted: `EV_READ` or `EV_WRITE`.
    static func readiness(base: OpaquePointer, fd: Int32, read: Bool, _ handler: @escaping () -> Void) throws(SystemCallError) -> LoopEvent {
        try LoopEvent(base: base, fd: fd, what: Int16((read ? EV_READ : EV_WRITE) | EV_PERSIST), handler)
    }

    deinit { close() }

    /// Makes the event pending, firing after `nanoseconds` (nil: no timeout). Re-adding moves the
    /// timeout. libevent fails here only when it cannot allocate, and then nothing on this loop
    /// can go on: that is a crash with the call's name, as Swift's own allocation failures are.
    func add(after nanoseconds: Int64? = nil) {
        guard let event else { return }
        assert(Worker.mayTouch(base), "an event added from outside its loop's thread")
        let rc: Int32
        if let nanoseconds {
            let ns = max(0, nanoseconds)
            var tv = timeval(tv_sec: Int(ns / 1_000_000_000), tv_usec: Int(ns % 1_000_000_000 / 1000))
            rc = event_add(event, &tv)
        } else {
            rc = event_add(event, nil)
        }
        precondition(rc == 0, "event_add failed")
        isPending = true
    }

    /// Makes the event not pending.
    func delete() {
        guard let event, isPending else { return }
        assert(Worker.mayTouch(base), "an event deleted from outside its loop's thread")
        precondition(event_del(event) == 0, "event_del failed")
        isPending = false
    }

    /// Fires the event on the next turn of the loop, as if `what` had happened.
    func activate(_ what: Int16) {
        guard let event else { return }
        assert(Worker.mayTouch(base), "an event activated from outside its loop's thread")
        event_active(event, Int32(what), 0)
    }

    /// Frees the event; no callback follows. Idempotent.
    func close() {
        guard let event else { return }
        assert(!isPending || Worker.mayTouch(base), "a pending event freed from outside its loop's thread")
        event_free(event)
        self.event = nil
        isPending = false
    }

    /// Runs `block` once on `base`'s thread after `nanoseconds`; from that thread only (other
    /// threads post through `Worker.schedule`).
    /// The block is kept alive by the event until it runs (libevent frees the event itself).
    static func once(base: OpaquePointer, after nanoseconds: Int64, _ block: @escaping () -> Void) {
        assert(Worker.mayTouch(base), "a timer set from outside its loop's thread")
        let box = Unmanaged.passRetained(Once(block)).toOpaque()
        let ns = max(0, nanoseconds)
        var tv = timeval(tv_sec: Int(ns / 1_000_000_000), tv_usec: Int(ns % 1_000_000_000 / 1000))
        let rc = event_base_once(base, -1, Int16(EV_TIMEOUT), { _, _, context in
            Unmanaged<Once>.fromOpaque(context!).takeRetainedValue().block()
        }, box, &tv)
        precondition(rc == 0, "event_base_once failed")
    }

    private final class Once {
        let block: () -> Void
        init(_ block: @escaping () -> Void) { self.block = block }
    }
}
