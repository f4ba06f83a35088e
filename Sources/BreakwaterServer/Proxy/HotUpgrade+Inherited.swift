import BreakwaterCore
#if canImport(Glibc)
import Glibc
#endif

extension HotUpgrade {
    /// The new process's side of a hot upgrade: what the previous process handed over, and the
    /// socket to ask it for the tracker and to tell it this process serves.
    public struct Inherited: Sendable {
        /// Listening sockets by endpoint, to adopt instead of binding.
        public var sockets: [HostPort: [Int32]] = [:]
        /// The previous process's hash key: used when this conf names no key of its own.
        public var key: KeyedHasher?
        /// Why the handover failed; nil when it went well or this start is not an upgrade.
        public var failure: String?
        var channel: UpgradeChannel?

        /// Nothing inherited: an ordinary start.
        public init() {}

        /// Whether a previous process is handing over to this one.
        public var isUpgrade: Bool { channel != nil }

        /// Asks the previous process for its tracker, now (just before the listeners open); the
        /// bytes are in the state file's format.
        func receiveState(timeout: Duration = .seconds(30)) throws(Failure) -> [UInt8] {
            guard let channel else { throw Failure(description: "not a hot upgrade") }
            let deadline = LoopClock().nanoseconds().addingClamped(timeout.clampedNanoseconds)
            try channel.send(.stateRequest, deadline: deadline)
            return try channel.expect(.state, deadline: deadline).payload
        }

        /// Tells the previous process that this one serves (it stops accepting then), and closes
        /// the socket. False when the previous process is gone.
        @discardableResult
        public func reportReady() -> Bool {
            guard let channel else { return false }
            defer { channel.close() }
            let deadline = LoopClock().nanoseconds().addingClamped(Duration.seconds(5).clampedNanoseconds)
            return (try? channel.send(.ready, deadline: deadline)) != nil
        }
    }

    /// The handover of this process, read once at start (the variable is removed, so a child
    /// process never sees it); empty for an ordinary start. Listeners and the key arrive here; the
    /// tracker comes later, when the server asks (`receiveState`).
    public static func takeInherited(timeout: Duration = .seconds(10)) -> Inherited {
        var inherited = Inherited()
        guard let text = getenv(channelVariable).map({ String(cString: $0) }) else { return inherited }
        unsetenv(channelVariable)
        guard let fd = Int32(text), fd > 2, fcntl(fd, F_SETFD, FD_CLOEXEC) == 0 else {
            inherited.failure = "\(channelVariable)=\(text) names no open descriptor"
            return inherited
        }
        let channel = UpgradeChannel(fd: fd)
        let deadline = LoopClock().nanoseconds().addingClamped(timeout.clampedNanoseconds)
        do throws(Failure) {
            while true {
                let frame = try channel.receive(deadline: deadline, maximum: 4096)
                switch frame.kind {
                case .listener:
                    guard let endpoint = HostPort(parsing: String(decoding: frame.payload, as: UTF8.self)) else {
                        for fd in frame.descriptors { close(fd) }
                        throw Failure(description: "a listener frame names no endpoint")
                    }
                    inherited.sockets[endpoint, default: []] += frame.descriptors
                case .key:
                    inherited.key = KeyedHasher(keyBytes: frame.payload)
                case .endOfListeners:
                    inherited.channel = channel
                    return inherited
                default:
                    for fd in frame.descriptors { close(fd) }
                    throw Failure(description: "unexpected frame \(frame.kind) before the listeners ended")
                }
            }
        } catch {
            for fd in inherited.sockets.values.joined() { close(fd) }
            inherited.sockets = [:]
            inherited.key = nil
            inherited.failure = error.description
            channel.close()
            return inherited
        }
    }
}
