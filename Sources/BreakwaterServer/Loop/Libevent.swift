private import CLibevent
#if canImport(Glibc)
import Glibc
#endif

/// A libevent or system call failed; `call` names it, `errno` says why where there is one.
public struct LibeventError: Error, CustomStringConvertible {
    /// The C function that failed.
    public var call: String
    /// The errno at the time, 0 when the call sets none.
    public var errno: Int32

    /// What failed and why, e.g. `evconnlistener_new_bind: Address already in use`.
    public var description: String {
        errno == 0 ? "\(call) failed" : "\(call): \(String(cString: strerror(errno)))"
    }
}

/// Turns libevent's NULL into a thrown error carrying errno.
@inline(__always)
func check<T>(_ value: T?, _ call: String) throws -> T {
    guard let value else { throw LibeventError(call: call, errno: Glibc.errno) }
    return value
}

/// Turns libevent's -1 into a thrown error carrying errno.
@inline(__always)
func check(_ result: Int32, _ call: String) throws {
    if result < 0 { throw LibeventError(call: call, errno: Glibc.errno) }
}

/// libevent must be told once, before any event_base exists, that bases are shared between threads.
enum LibeventThreads {
    static let enabled: Bool = evthread_use_pthreads() == 0

    static func enable() {
        precondition(enabled, "libevent was built without pthreads support")
    }
}

extension timeval {
    /// A timeval from a Swift duration (microsecond precision).
    init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        self.init(tv_sec: Int(seconds), tv_usec: Int(attoseconds / 1_000_000_000_000))
    }
}

/// The version of the libevent Breakwater runs on.
public func libeventVersion() -> String { String(cString: event_get_version()) }
