import BreakwaterHTTP
private import CLibevent
import BreakwaterCore
import Dispatch
#if canImport(Glibc)
import Glibc
#endif

/// One event loop on its own thread. Everything a worker owns (connections, upstream pool,
/// timers, its libevent base) is touched only from its thread; other threads talk to it through
/// `execute` and `schedule`, which post to its inbox.
///
/// libevent runs without its thread support (no `evthread_use_pthreads`): a base shared between
/// threads would take and release its lock around every callback, about a tenth of a tunnelled
/// message's instructions in user space, for the few blocks other threads post.
final class Worker: @unchecked Sendable {
    /// Position among the workers, 0-based.
    let index: Int
    let base: OpaquePointer
    private let finished = DispatchSemaphore(value: 0)
    /// Client connections accepted so far: the next one's `serial`.
    var accepted: UInt64 = 0
    /// Open client connections, so draining can close the idle ones.
    var connections: [ObjectIdentifier: any WorkerConnection] = [:]
    var listeners: [Listener] = []
    /// The `Date` header line of this second (`Date: ` IMF-fixdate CRLF), and the wall-clock second
    /// it is for: Breakwater's own answers, and relayed ones that came without a Date, carry it.
    /// Made once a second per worker, kept behind pointers so reading it takes no reference
    /// counting and no exclusivity check. Only this worker's thread touches it.
    private let dateLine = UnsafeMutablePointer<UInt8>.allocate(capacity: Worker.dateLineLength)
    private let dateSecond = UnsafeMutablePointer<Int64>.allocate(capacity: 1)
    private static let dateLineLength = 37

    /// `Date: ...\r\n` for now, valid until the worker's next turn of its loop.
    var dateHeaderLine: UnsafeRawBufferPointer {
        let now = LoopClock.coarseWallSeconds()
        if now != dateSecond.pointee {
            dateSecond.pointee = now
            let text = HTTPDate.imfFixdate(epochSeconds: now)
            let line = Array("Date: ".utf8) + text + [0x0D, 0x0A]
            line.withUnsafeBufferPointer { dateLine.update(from: $0.baseAddress!, count: Worker.dateLineLength) }
        }
        return UnsafeRawBufferPointer(start: dateLine, count: Worker.dateLineLength)
    }

    /// Set while the process stops: no new requests on kept-alive connections.
    private(set) var draining = false
    private var drainDeadline: LoopClock.Instant?
    private var exiting = false

    /// Blocks posted from other threads, in order.
    private let inbox = LockedValue<[Posted]>([])
    /// Written by a thread that posts to an empty inbox; its readiness runs `readInbox`.
    private let inboxFD: Int32
    private var inboxEvent: LoopEvent!

    init(index: Int) throws(SystemCallError) {
        dateSecond.initialize(to: -1)
        dateLine.initialize(repeating: 0, count: Worker.dateLineLength)
        self.index = index
        base = try libevent("event_base_new", event_base_new())
        do throws(SystemCallError) {
            inboxFD = try syscall("eventfd") { breakwater_eventfd() }
        } catch {
            event_base_free(base)
            throw error
        }
        inboxEvent = try LoopEvent(base: base, fd: inboxFD, what: Int16(EV_READ | EV_PERSIST)) { [unowned(unsafe) self] in
            readInbox()
        }
        inboxEvent.add()
    }

    /// The base whose loop runs on the calling thread; nil elsewhere.
    private static let loopKey: pthread_key_t = {
        var key = pthread_key_t()
        precondition(pthread_key_create(&key, nil) == 0, "pthread_key_create failed")
        return key
    }()

    /// Whether the caller runs on this worker's loop thread.
    var isLoopThread: Bool { Self.isLoopThread(of: base) }

    private static func isLoopThread(of base: OpaquePointer) -> Bool {
        pthread_getspecific(loopKey) == UnsafeMutableRawPointer(base)
    }

    /// The bases whose loops run now, by address (kept by debug builds only, for `mayTouch`).
    private static let running = LockedValue<Set<UInt>>([])

    private static func address(of base: OpaquePointer) -> UInt {
        UInt(bitPattern: Int(bitPattern: UnsafeMutableRawPointer(base)))
    }

    /// Whether the calling thread may change `base`'s events: it is the base's loop thread, or
    /// that loop does not run (being set up, or over). Checked by debug builds (the tests) on every
    /// change, since libevent, without its thread support, would not notice a race.
    static func mayTouch(_ base: OpaquePointer) -> Bool {
        isLoopThread(of: base) || !running.withLock { $0.contains(Self.address(of: base)) }
    }

    /// Runs what other threads posted: blocks due now at once, the others on timers.
    private func readInbox() {
        var count: UInt64 = 0
        // Emptied before the inbox is read: a post after this read wakes the loop again.
        _ = read(inboxFD, &count, MemoryLayout<UInt64>.size)
        let posted = inbox.withLock { posted in
            defer { posted.removeAll() }
            return posted
        }
        for item in posted {
            if item.delay > 0 { LoopEvent.once(base: base, after: item.delay, item.block) } else { item.block() }
        }
    }

    /// Out of descriptors (accept failed with EMFILE or ENFILE): closes idle connections of this
    /// worker, those between requests or that never sent a byte, so that new clients are served.
    /// The ones whose deadline comes first go first (with equal timeouts: the longest idle), at
    /// most 32 or an eighth of them a time, as nginx reclaims its reusable connections. A
    /// connection whose bytes are waiting to be read is not idle. HTTP/1.1 connections only: an
    /// HTTP/2 connection is left to its own idle_timeout. Returns how many were closed;
    /// 0 when none is idle.
    func closeIdleConnections() -> Int {
        var idle: [(deadline: LoopClock.Instant, connection: ClientConnection)] = []
        for case let connection as ClientConnection in connections.values where connection.reader.isIdle {
            idle.append((connection.reader.deadline ?? LoopClock.coarseNow, connection))
        }
        guard !idle.isEmpty else { return 0 }
        let wanted = max(1, min(32, idle.count / 8))
        // Deadlines on the coarse clock tie often: the one accepted first goes first.
        idle.sort { $0.deadline < $1.deadline || ($0.deadline == $1.deadline && $0.connection.serial < $1.connection.serial) }
        var closed = 0
        for (_, connection) in idle where !connection.socket.hasPendingInput() {
            connection.close()
            closed += 1
            if closed == wanted { break }
        }
        return closed
    }

    /// The bound on bodies being received, shared by every worker; nil: none.
    var bodyBudget: BodyBudget?
    /// Connections reading a body, in the order their bodies began. The first is never held by
    /// the budget, so some body always progresses: bodies that each wait for the others'
    /// bytes to be released would otherwise wait for ever.
    private var bodiesInProgress: [ClientConnection] = []
    /// Connections that stopped reading their body because the budget was spent, in the order
    /// they stopped; the first resume first.
    private var bodyWaiters: [ClientConnection] = []
    private var bodyRecheckScheduled = false
    private var resumingBodies = false
    /// How often waiting connections look again at a budget that another worker may have freed.
    static let bodyRecheck: Duration = .milliseconds(10)

    /// Whether `connection` must wait before reading more of its body.
    func mustWaitForBodyBudget(_ connection: ClientConnection) -> Bool {
        guard let budget = bodyBudget, !budget.hasRoom else { return false }
        return bodiesInProgress.first !== connection
    }

    /// `connection` began reading a body.
    func bodyStarted(_ connection: ClientConnection) {
        bodiesInProgress.append(connection)
    }

    /// `connection`'s body is complete, refused or abandoned; it held `bytes` of the budget.
    func bodyEnded(_ connection: ClientConnection, bytes: Int) {
        bodyWaiters.removeAll { $0 === connection }
        bodiesInProgress.removeAll { $0 === connection }
        bodyBudget?.give(bytes)
        bodyBudgetFreed()
    }

    /// `connection` waits for room in the body budget.
    func waitForBodyBudget(_ connection: ClientConnection) {
        bodyWaiters.append(connection)
        scheduleBodyRecheck()
    }

    private func scheduleBodyRecheck() {
        guard !bodyRecheckScheduled else { return }
        bodyRecheckScheduled = true
        schedule(after: Self.bodyRecheck) { [self] in
            bodyRecheckScheduled = false
            bodyBudgetFreed()
        }
    }

    /// Waiting connections read again: the oldest body at once, the others in the order they
    /// stopped while there is room.
    private func bodyBudgetFreed() {
        guard !resumingBodies, !bodyWaiters.isEmpty, let budget = bodyBudget else { return }
        // A resumed connection may complete its body and release bytes: this loop goes on.
        resumingBodies = true
        while let next = bodyWaiters.first(where: { $0 === bodiesInProgress.first }) ?? (budget.hasRoom ? bodyWaiters.first : nil) {
            bodyWaiters.removeAll { $0 === next }
            next.bodyBudgetAvailable()
        }
        resumingBodies = false
        if !bodyWaiters.isEmpty { scheduleBodyRecheck() }
    }

    /// The buffer this loop's tunnels read into and send from, allocated on first use: the
    /// loop runs one relay at a time, so one buffer serves them all.
    var relayBuffer: UnsafeMutableRawBufferPointer {
        if let buffer = relayStorage { return buffer }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: Self.relayBufferSize, alignment: 16)
        relayStorage = buffer
        return buffer
    }
    private var relayStorage: UnsafeMutableRawBufferPointer?
    /// 64 KiB: a large message crosses in one read and one write where the kernel allows.
    static let relayBufferSize = 1 << 16

    deinit {
        inboxEvent.close()
        Glibc.close(inboxFD)
        event_base_free(base)
        dateLine.deallocate()
        dateSecond.deallocate()
        relayStorage?.deallocate()
    }

    /// Runs the loop on a new thread (1 MiB of stack, named `name` for ps and perf) until `stop`
    /// or `drain` ends it.
    func start(name: String) {
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        defer { pthread_attr_destroy(&attributes) }
        pthread_attr_setstacksize(&attributes, 1 << 20)
        pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
        let loop = Unmanaged.passRetained(Box { [self] in
            Self.nameThisThread(name)
            pthread_setspecific(Self.loopKey, UnsafeMutableRawPointer(base))
            assert(Self.running.withLock { $0.insert(Self.address(of: base)).inserted })
            // -1 means the backend itself failed: nothing this worker owns can be served any more.
            precondition(event_base_loop(base, EVLOOP_NO_EXIT_ON_EMPTY) != -1, "event_base_loop failed")
            assert(Self.running.withLock { $0.remove(Self.address(of: base)) != nil })
            pthread_setspecific(Self.loopKey, nil)
            finished.signal()
        }).toOpaque()
        var thread = pthread_t()
        let rc = pthread_create(&thread, &attributes, { loop in
            Unmanaged<Box>.fromOpaque(loop!).takeRetainedValue().block()
            return nil
        }, loop)
        guard rc == 0 else {
            Unmanaged<Box>.fromOpaque(loop).release()
            fatalError("pthread_create failed: \(String(cString: strerror(rc)))")
        }
    }

    /// Names the calling thread (the kernel keeps 15 bytes), as top -H, ps and perf show it.
    private static func nameThisThread(_ name: String) {
        let fd = open("/proc/thread-self/comm", O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { return }
        let bytes = Array(name.utf8.prefix(15))
        _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
    }

    /// Blocks until the loop thread has ended.
    func join() { finished.wait() }

    /// Waits at most `seconds` for the loop thread to end; whether it did.
    func join(within seconds: Double) -> Bool {
        finished.wait(timeout: .now() + seconds) == .success
    }

    /// Runs `block` on this worker's thread, soon; callable from any thread.
    func execute(_ block: @escaping () -> Void) {
        schedule(after: .zero, block)
    }

    /// Runs `block` on this worker's thread after `delay`; callable from any thread. From the
    /// loop's own thread it is a timer on the base; from another it goes through the inbox,
    /// whose eventfd wakes the loop when the inbox was empty.
    func schedule(after delay: Duration, _ block: @escaping () -> Void) {
        let nanoseconds = delay.clampedNanoseconds
        if isLoopThread { return LoopEvent.once(base: base, after: nanoseconds, block) }
        let item = Posted(delay: nanoseconds, block: block)
        let first = inbox.withLock { posted in
            posted.append(item)
            return posted.count == 1
        }
        guard first else { return }
        var one: UInt64 = 1
        _ = write(inboxFD, &one, MemoryLayout<UInt64>.size)
    }

    /// Stops accepting, lets requests in flight finish, then ends the loop (at the latest after `grace`).
    ///
    /// `closingIdle`: idle keep-alive connections are closed at once, as nginx does on a stop.
    /// Without, they stay open until their next request, answered with `Connection: close`, or
    /// until `grace` (a hot upgrade: the new process serves meanwhile, and a client never meets
    /// a connection closed just as it sends on it, the race RFC 9112, section 9.3.1, leaves open).
    func drain(grace: Duration, closingIdle: Bool = true) {
        execute { [self] in
            draining = true
            drainDeadline = LoopClock().now.advanced(by: grace)
            for listener in listeners where !listener.keepWhileDraining { listener.close() }
            listeners.removeAll { !$0.keepWhileDraining }
            if closingIdle {
                for connection in connections.values where !connection.listener.keepWhileDraining { connection.closeIfIdle() }
            }
            checkDrained()
            if closingIdle { closeIdleAgain() }
        }
    }

    /// While draining, closes again the connections `closeIfIdle` spared, once they may go.
    private func closeIdleAgain() {
        schedule(after: .milliseconds(100)) { [self] in
            guard draining, !exiting else { return }
            for connection in connections.values where !connection.listener.keepWhileDraining { connection.closeIfIdle() }
            closeIdleAgain()
        }
    }

    /// Ends the loop once no connection is left, or when the grace period is over.
    func checkDrained() {
        guard draining, !exiting else { return }
        let busy = connections.values.contains { !$0.listener.keepWhileDraining }
        if !busy || LoopClock().now >= drainDeadline! {
            exiting = true
            listeners.forEach { $0.close() }
            listeners.removeAll()
            for connection in connections.values { connection.close() }
            precondition(event_base_loopexit(base, nil) == 0, "event_base_loopexit failed")
        } else {
            schedule(after: .milliseconds(20)) { [self] in checkDrained() }
        }
    }

    /// A block posted from another thread, and its delay in nanoseconds. It runs on the loop's
    /// thread only, which is what makes handing it over sound.
    private final class Posted: @unchecked Sendable {
        let delay: Int64
        let block: () -> Void
        init(delay: Int64, block: @escaping () -> Void) {
            self.delay = delay
            self.block = block
        }
    }

    private final class Box {
        let block: () -> Void
        init(_ block: @escaping () -> Void) { self.block = block }
    }
}

/// A client connection as its worker sees it (HTTP/1.1 or HTTP/2): closed at once, or once idle
/// while the worker drains.
protocol WorkerConnection: AnyObject {
    /// The listener that accepted it.
    var listener: Listener { get }
    /// Closes now if no request is in progress; while draining the worker asks again until it has.
    func closeIfIdle()
    /// Closes the connection and forgets it.
    func close()
}
