#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The time source of the tracker and the rate limiter: monotonic nanoseconds.
///
/// A plain `Int64` rather than `Clock.Instant` because the tracker stores a window end in every
/// entry, and eight bytes per timestamp is what keeps an entry compact. Tests inject
/// `ManualClock` and move time forward instead of sleeping.
public protocol TrackerClock: Sendable {
    /// Nanoseconds since an arbitrary origin fixed for the life of the process; never decreases.
    func nanoseconds() -> Int64
}

/// The real clock: CLOCK_MONOTONIC in nanoseconds (time since boot, never going back).
///
/// Every instance shares one origin, so values from two instances can be compared.
public struct SystemClock: TrackerClock {
    /// The process-wide monotonic clock.
    public init() {}

    /// Nanoseconds since the shared origin.
    public func nanoseconds() -> Int64 {
        // clock_gettime is a vDSO call; ContinuousClock's Instant and Duration arithmetic cost
        // more than the tracker's whole lookup on the request path.
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Int64(ts.tv_sec) &* 1_000_000_000 &+ Int64(ts.tv_nsec)
    }
}


/// A clock that only moves when told to, for tests of the core and of the server.
///
/// Safe to read from many threads while a test advances it.
public final class ManualClock: TrackerClock, Sendable {
    private let reading: LockedValue<Int64>

    /// A clock that reads `start` nanoseconds until advanced.
    public init(_ start: Int64 = 0) {
        reading = LockedValue(start)
    }

    /// The current reading.
    public func nanoseconds() -> Int64 {
        reading.withLock { $0 }
    }

    /// Moves time forward by `duration` (a negative duration is ignored: the clock is monotonic).
    public func advance(by duration: Duration) {
        let step = Swift.max(0, duration.clampedNanoseconds)
        reading.withLock { $0 = $0.addingClamped(step) }
    }

    /// Sets the reading to `ns`; tests use it to jump to an exact instant.
    public func set(_ ns: Int64) {
        reading.withLock { $0 = ns }
    }
}

extension Duration {
    /// The duration in whole nanoseconds, saturating at `Int64.min` / `Int64.max` instead of trapping.
    ///
    /// Durations arrive from config and from upstream `Retry-After` headers; an absurd value must
    /// clamp, not crash the proxy.
    public var clampedNanoseconds: Int64 {
        let (seconds, attoseconds) = components
        let (whole, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return seconds < 0 ? .min : .max }
        return whole.addingClamped(attoseconds / 1_000_000_000)
    }
}

extension Int64 {
    /// `self + other`, saturating instead of trapping on overflow.
    @inline(__always)
    public func addingClamped(_ other: Int64) -> Int64 {
        let (sum, overflow) = addingReportingOverflow(other)
        if overflow { return other < 0 ? .min : .max }
        return sum
    }
}
