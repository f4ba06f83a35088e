#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A value that is only ever read or written while holding a pthread mutex.
///
/// Why not `Synchronization.Mutex`: on Linux its futex fast path lives in the uninstrumented
/// standard library, so ThreadSanitizer cannot see the lock and reports every guarded access as a
/// data race. TSan intercepts `pthread_mutex_lock`, so with this type the concurrency tests can
/// prove the tracker race-free. Uncontended, both cost one atomic exchange in user space.
/// Should Swift's `Mutex` become visible to TSan, this type is the only thing to swap.
final class LockedValue<Value>: @unchecked Sendable {
    // Heap-allocated so the mutex never moves: a pthread mutex must not be copied.
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    // Behind a pointer rather than in a `var`: the mutex already makes access exclusive, and a
    // class's stored `var` would add a dynamic exclusivity check to every lookup.
    private let value: UnsafeMutablePointer<Value>

    /// Guards `value` with a new, default (non-recursive) mutex.
    init(_ value: Value) {
        self.value = .allocate(capacity: 1)
        self.value.initialize(to: value)
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        let rc = pthread_mutex_init(mutex, nil)
        precondition(rc == 0, "pthread_mutex_init failed: \(rc)")
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deinitialize(count: 1)
        mutex.deallocate()
        value.deinitialize(count: 1)
        value.deallocate()
    }

    /// Runs `body` with exclusive access to the value. Never call back into the same lock from `body`.
    @inline(__always)
    func withLock<Result>(_ body: (inout Value) throws -> Result) rethrows -> Result {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value.pointee)
    }
}
