private import CLibevent
#if canImport(Glibc)
import Glibc
#endif

/// A system or libevent call failed: the one error type of the loop layer.
public struct SystemCallError: Error, CustomStringConvertible {
    /// Why, as the C library reports it.
    public enum Cause: Sendable, Equatable {
        /// errno after the call.
        case errno(Int32)
        /// getaddrinfo's own error code (EAI_*).
        case resolver(Int32)
        /// The call reports failure without a reason (libevent's NULL from an allocation).
        case unspecified
    }

    /// The call that failed, with what it was asked (`bind(0.0.0.0:8080)`).
    public var call: String
    public var cause: Cause

    public init(_ call: String, _ cause: Cause) {
        self.call = call
        self.cause = cause
    }

    /// errno, 0 when the cause is not an errno.
    public var errno: Int32 { if case .errno(let code) = cause { code } else { 0 } }

    /// What failed and why, e.g. `bind(0.0.0.0:8080): Address already in use`.
    public var description: String {
        switch cause {
        case .errno(let code): "\(call): \(String(cString: strerror(code)))"
        case .resolver(let code): "\(call): \(String(cString: gai_strerror(code)))"
        case .unspecified: "\(call) failed"
        }
    }
}

/// Runs a system call that returns -1 and sets errno on failure, retrying on EINTR, and turns the
/// failure into a thrown `SystemCallError` (SwiftNIO's `syscall(blocking:where:_:)` is the model).
@inline(__always)
func syscall<T: FixedWidthInteger>(_ call: @autoclosure () -> String, _ body: () -> T) throws(SystemCallError) -> T {
    while true {
        let result = body()
        if result != -1 { return result }
        let code = Glibc.errno
        if code != EINTR { throw SystemCallError(call(), .errno(code)) }
    }
}

/// Turns libevent's NULL (an allocation or set-up that failed) into a thrown error.
@inline(__always)
func libevent<T>(_ call: StaticString, _ value: T?) throws(SystemCallError) -> T {
    guard let value else { throw SystemCallError("\(call)", Glibc.errno == 0 ? .unspecified : .errno(Glibc.errno)) }
    return value
}

/// The version of the libevent Breakwater runs on.
public func libeventVersion() -> String { String(cString: event_get_version()) }
