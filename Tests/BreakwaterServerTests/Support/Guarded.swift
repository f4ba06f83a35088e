import Foundation

/// A value shared between test threads, guarded by an NSLock (a pthread mutex underneath).
///
/// The suite's own helpers use this rather than Synchronization.Mutex: on Linux the Mutex fast
/// path is invisible to ThreadSanitizer, which then reports every guarded access as a race (see
/// BreakwaterCore's LockedValue), and `swift test --sanitize=thread` should show real races only.
final class Guarded<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value

    init(_ value: Value) { self.value = value }

    func withLock<Result>(_ body: (inout Value) throws -> Result) rethrows -> Result {
        lock.lock()
        defer { lock.unlock() }
        return try body(&value)
    }
}
