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
/// Should Swift's `Mutex` become visible to TSan, this type is the only thing to swap. Public for
/// the server's TLS state, which ThreadSanitizer covers too.
public final class LockedValue<Value>: @unchecked Sendable {
    // Heap-allocated so the mutex never moves: a pthread mutex must not be copied.
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    // Behind a pointer rather than in a `var`: the mutex already makes access exclusive, and a
    // class's stored `var` would add a dynamic exclusivity check to every lookup.
    private let value: UnsafeMutablePointer<Value>

    /// Guards `value` with a new, default (non-recursive) mutex.
    public init(_ value: Value) {
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
    public func withLock<Result>(_ body: (inout Value) throws -> Result) rethrows -> Result {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value.pointee)
    }
}

/// A fixed number of values, each behind its own pthread mutex, in one allocation: the tracker's
/// shards.
///
/// Each value shares a block of `LockedValues.blockSize` bytes with nothing but its mutex, so two
/// threads working on two values never write to the same cache line (nor to an adjacent one,
/// which some CPUs fetch in pairs). Reaching a value costs no reference counting: the elements
/// are not objects, and the storage lives exactly as long as this instance.
final class LockedValues<Value>: @unchecked Sendable {
    /// The block of one value: its mutex first, the value after it.
    static var blockSize: Int { 128 }

    private let base: UnsafeMutableRawPointer
    /// How many values.
    let count: Int

    // Where the value starts within its block, and the block stride.
    private static var valueOffset: Int {
        let mutex = MemoryLayout<pthread_mutex_t>.size
        let alignment = MemoryLayout<Value>.alignment
        return (mutex + alignment - 1) / alignment * alignment
    }

    private static var stride: Int {
        let used = valueOffset + MemoryLayout<Value>.size
        return (used + blockSize - 1) / blockSize * blockSize
    }

    /// Guards each of `values` with a new, default (non-recursive) mutex.
    init(_ values: [Value]) {
        precondition(MemoryLayout<Value>.alignment <= LockedValues.blockSize)
        count = values.count
        base = .allocate(byteCount: Swift.max(1, count) * LockedValues.stride, alignment: LockedValues.blockSize)
        for (i, value) in values.enumerated() {
            let block = base + i * LockedValues.stride
            let mutex = block.bindMemory(to: pthread_mutex_t.self, capacity: 1)
            mutex.initialize(to: pthread_mutex_t())
            let rc = pthread_mutex_init(mutex, nil)
            precondition(rc == 0, "pthread_mutex_init failed: \(rc)")
            (block + LockedValues.valueOffset).bindMemory(to: Value.self, capacity: 1).initialize(to: value)
        }
    }

    deinit {
        for i in 0..<count {
            let block = base + i * LockedValues.stride
            let mutex = block.assumingMemoryBound(to: pthread_mutex_t.self)
            pthread_mutex_destroy(mutex)
            mutex.deinitialize(count: 1)
            (block + LockedValues.valueOffset).assumingMemoryBound(to: Value.self).deinitialize(count: 1)
        }
        base.deallocate()
    }

    /// Runs `body` with exclusive access to value `index`. Never call back into the same lock
    /// from `body`.
    @inline(__always)
    func withLock<Result>(_ index: Int, _ body: (inout Value) throws -> Result) rethrows -> Result {
        precondition(UInt(bitPattern: index) < UInt(bitPattern: count), "index out of range")
        let block = base + index &* LockedValues.stride
        let mutex = block.assumingMemoryBound(to: pthread_mutex_t.self)
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&(block + LockedValues.valueOffset).assumingMemoryBound(to: Value.self).pointee)
    }
}
