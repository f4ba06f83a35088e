private import CLibevent
#if canImport(Glibc)
import Glibc
#endif

/// A deadline on a worker's loop that is cheap to move: what a connection's inactivity and
/// request timers need, since they are pushed back on every read and every request.
///
/// Moving the deadline later, or clearing it, touches no libevent state: the event stays armed
/// for the earlier time, and when it fires with the deadline not yet reached it re-arms for the
/// rest. Only a deadline earlier than the armed one costs an `event_add`. A keep-alive
/// connection thus re-arms its timer about once per timeout period instead of several times per
/// request (nginx defers its timer updates the same way).
struct DeadlineTimer {
    private let event: OpaquePointer
    /// When the owner's time runs out (monotonic ns); `.max`: no deadline.
    private var deadline = Int64.max
    /// When the libevent event fires (monotonic ns); `.max`: not armed.
    private var armedFor = Int64.max

    /// A timer on `base` that calls `callback(context)` when the event fires; the owner then
    /// calls `fired()` to learn whether the deadline has passed.
    init(base: OpaquePointer, context: UnsafeMutableRawPointer,
         callback: @convention(c) (Int32, Int16, UnsafeMutableRawPointer?) -> Void) {
        event = event_new(base, -1, 0, callback, context)
    }

    /// Frees the event; the timer must not be used afterwards.
    func free() { event_free(event) }

    /// Sets the deadline `nanoseconds` from now.
    mutating func set(after nanoseconds: Int64) {
        set(at: Self.now() &+ Swift.max(0, nanoseconds))
    }

    /// Sets the deadline to the instant `time` (monotonic ns, as `now()` reads).
    mutating func set(at time: Int64) {
        deadline = time
        if time < armedFor { arm(Swift.max(0, time - Self.now()), until: time) }
    }

    /// No deadline; a pending event fires and finds nothing to do.
    mutating func clear() { deadline = .max }

    /// Whether a deadline is set.
    var isSet: Bool { deadline != .max }

    /// Called from the event's callback: true when the deadline has passed (it is then cleared);
    /// false when it lies ahead (the event is re-armed for it) or there is none.
    mutating func fired() -> Bool {
        armedFor = .max
        guard deadline != .max else { return false }
        let now = Self.now()
        if now < deadline {
            arm(deadline - now, until: deadline)
            return false
        }
        deadline = .max
        return true
    }

    private mutating func arm(_ nanoseconds: Int64, until fireTime: Int64) {
        var tv = timeval(tv_sec: Int(nanoseconds / 1_000_000_000), tv_usec: Int(nanoseconds % 1_000_000_000 / 1000))
        event_add(event, &tv)
        armedFor = fireTime
    }

    /// The loop's notion of now for deadlines: CLOCK_MONOTONIC_COARSE, a few nanoseconds to read
    /// and a few milliseconds coarse, which timeouts measured in seconds do not notice. An event
    /// that fires a little before the coarse clock reaches its deadline just re-arms.
    @inline(__always)
    static func now() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC_COARSE, &ts)
        return Int64(ts.tv_sec) &* 1_000_000_000 &+ Int64(ts.tv_nsec)
    }
}
