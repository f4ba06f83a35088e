import BreakwaterCore

/// A deadline on a worker's loop that is cheap to move: what a connection's inactivity and
/// request timers need, since they are pushed back on every read and every request.
///
/// Moving the deadline later, or clearing it, touches no libevent state: the event stays armed
/// for the earlier time, and when it fires with the deadline not yet reached it re-arms for the
/// rest. Only a deadline earlier than the armed one costs an `event_add`. A keep-alive
/// connection thus re-arms its timer about once per timeout period instead of several times per
/// request (nginx defers its timer updates the same way). Time is `LoopClock.coarseNow`.
struct DeadlineTimer {
    typealias Instant = LoopClock.Instant
    private let event: LoopEvent
    /// When the owner's time runs out; nil: no deadline.
    private(set) var deadline: Instant?
    /// When the libevent event fires; nil: not armed.
    private var armedFor: Instant?

    /// A timer on `base` that calls `fired` when the event fires; the owner then calls `expired()`
    /// to learn whether the deadline has passed.
    init(base: OpaquePointer, _ fired: @escaping () -> Void) throws(SystemCallError) {
        event = try LoopEvent(base: base, fired)
    }

    /// Frees the event; the timer must not be used afterwards.
    func free() { event.close() }

    /// Sets the deadline `duration` from now.
    mutating func set(after duration: Duration) {
        set(afterNanoseconds: duration.clampedNanoseconds)
    }

    /// Sets the deadline `nanoseconds` from now (for callers that keep a timeout converted once).
    @inline(__always)
    mutating func set(afterNanoseconds nanoseconds: Int64) {
        set(at: LoopClock.Instant(nanoseconds: LoopClock.coarseNow.nanoseconds.addingClamped(nanoseconds)))
    }

    /// Sets the deadline to `time` (nil: none).
    mutating func set(at time: Instant?) {
        deadline = time
        guard let time else { return }
        if armedFor.map({ time < $0 }) ?? true { arm(until: time) }
    }

    /// No deadline; a pending event fires and finds nothing to do.
    mutating func clear() { deadline = nil }

    /// Called from the event's handler: true when the deadline has passed (it is then cleared);
    /// false when it lies ahead (the event is re-armed for it) or there is none.
    mutating func expired() -> Bool {
        armedFor = nil
        guard let deadline else { return false }
        if LoopClock.coarseNow < deadline {
            arm(until: deadline)
            return false
        }
        self.deadline = nil
        return true
    }

    private mutating func arm(until fireTime: Instant) {
        event.add(after: fireTime.nanoseconds &- LoopClock.coarseNow.nanoseconds)
        armedFor = fireTime
    }
}
