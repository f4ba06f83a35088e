import BreakwaterCore
#if canImport(Glibc)
import Glibc
#endif

/// The server's one clock: monotonic nanoseconds since boot (CLOCK_MONOTONIC), as the tracker,
/// the rate limiter, deadlines and durations all read it.
///
/// Deadlines that are pushed back on every read use `coarseNow`, the same timeline read from
/// CLOCK_MONOTONIC_COARSE: a few nanoseconds to read and a few milliseconds coarse, which
/// timeouts measured in seconds do not notice. Wall-clock time exists only for what an HTTP
/// date or a log line needs (`wallSeconds`).
public struct LoopClock: Clock, TrackerClock {
    /// An instant on the monotonic timeline, in nanoseconds.
    public struct Instant: InstantProtocol, Hashable, Sendable {
        public var nanoseconds: Int64

        public init(nanoseconds: Int64) { self.nanoseconds = nanoseconds }

        public func advanced(by duration: Duration) -> Instant {
            Instant(nanoseconds: nanoseconds.addingClamped(duration.clampedNanoseconds))
        }

        public func duration(to other: Instant) -> Duration {
            .nanoseconds(other.nanoseconds &- nanoseconds)
        }

        public static func < (a: Instant, b: Instant) -> Bool { a.nanoseconds < b.nanoseconds }
    }

    public init() {}

    public var now: Instant { Instant(nanoseconds: Self.read(CLOCK_MONOTONIC)) }

    /// `now` read from the coarse clock: for deadlines, not for measuring durations.
    public static var coarseNow: Instant { Instant(nanoseconds: read(CLOCK_MONOTONIC_COARSE)) }

    /// TrackerClock: the same reading as `now`, as plain nanoseconds.
    public func nanoseconds() -> Int64 { Self.read(CLOCK_MONOTONIC) }

    public var minimumResolution: Duration { .nanoseconds(1) }

    public func sleep(until deadline: Instant, tolerance: Duration?) async throws {
        try await ContinuousClock().sleep(for: now.duration(to: deadline), tolerance: tolerance)
    }

    /// Seconds since the Unix epoch, for HTTP dates (Retry-After) and log lines.
    public static func wallSeconds() -> Int64 { read(CLOCK_REALTIME) / 1_000_000_000 }

    /// `wallSeconds` from the coarse clock (a few milliseconds of resolution, the cheapest read):
    /// for the `Date` header, which names the second.
    public static func coarseWallSeconds() -> Int64 { read(CLOCK_REALTIME_COARSE) / 1_000_000_000 }

    /// Wall-clock time as seconds and nanoseconds, for timestamps in log lines.
    public static func wallTime() -> timespec {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return ts
    }

    @inline(__always)
    private static func read(_ clock: clockid_t) -> Int64 {
        var ts = timespec()
        clock_gettime(clock, &ts)
        return Int64(ts.tv_sec) &* 1_000_000_000 &+ Int64(ts.tv_nsec)
    }
}
