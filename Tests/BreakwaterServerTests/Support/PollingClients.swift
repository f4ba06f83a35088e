import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Many HTTP/1.1 keep-alive clients on one thread with poll(2), for loads of a thousand
/// connections that threads would drown: each client sends `GET target` with its own
/// `Authorization`, reads the whole response, waits `interval` and sends again, whatever the
/// answer (a storm ignores Retry-After). A response with `Connection: close` is followed by a new
/// connection, as HTTP clients do.
///
/// What is counted as trouble: a connection that cannot be made (`refused`), one that breaks or
/// closes before a complete response (`failed`), and one the server closes while the client is
/// between requests (`closedIdle`: the next request would have met a closed connection).
final class PollingClients: @unchecked Sendable {
    /// What the clients saw.
    struct Counts: CustomStringConvertible {
        var statuses: [Int: Int] = [:]
        var refused = 0, failed = 0, closedIdle = 0, reconnected = 0
        var responses: Int { statuses.values.reduce(0, +) }
        var description: String {
            "statuses \(statuses.sorted { $0.key < $1.key }), refused \(refused), failed \(failed), "
                + "closed while idle \(closedIdle), reconnected after Connection: close \(reconnected)"
        }
    }

    private enum Phase { case waiting(until: Double), connecting, reading }

    private struct Client {
        let request: [UInt8]
        var fd: Int32 = -1
        var phase: Phase
        var buffer: [UInt8] = []
    }

    private let port: UInt16
    private let interval: Double
    private var clients: [Client]
    private let shared = Guarded((counts: Counts(), stop: false))
    private let finished = DispatchSemaphore(value: 0)

    /// Starts one client per `(target, token)`, their first requests spread over `interval`.
    init(port: UInt16, requests: [(target: String, token: String)], interval: Double) {
        self.port = port
        self.interval = interval
        let start = Self.now()
        clients = requests.enumerated().map { i, r in
            Client(request: rawRequest("GET", r.target, headers: [("Authorization", "Bearer \(r.token)")]),
                   phase: .waiting(until: start + interval * Double(i) / Double(max(1, requests.count))))
        }
        let thread = Thread { [self] in
            run()
            finished.signal()
        }
        thread.start()
    }

    /// The counts so far.
    var current: Counts { shared.withLock { $0.counts } }

    /// Stops every client (a request in flight is abandoned, not counted) and closes the sockets.
    func stop() -> Counts {
        shared.withLock { $0.stop = true }
        finished.wait()
        return current
    }

    private static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    private func count(_ change: (inout Counts) -> Void) { shared.withLock { change(&$0.counts) } }

    private func run() {
        var buffer = [UInt8](repeating: 0, count: 65536)
        while !shared.withLock({ $0.stop }) {
            let now = Self.now()
            var wake = now + 0.05
            for i in clients.indices {
                if case .waiting(let until) = clients[i].phase {
                    if until <= now { send(i, now: now) } else { wake = min(wake, until) }
                }
            }
            var pollers: [pollfd] = []
            var owners: [Int] = []
            for (i, c) in clients.enumerated() where c.fd >= 0 {
                let events: Int32
                if case .connecting = c.phase { events = Int32(POLLOUT) } else { events = Int32(POLLIN) }
                pollers.append(pollfd(fd: c.fd, events: Int16(events), revents: 0))
                owners.append(i)
            }
            let timeout = Int32(max(0, min(50, (wake - Self.now()) * 1000)))
            guard poll(&pollers, nfds_t(pollers.count), timeout) > 0 else { continue }
            for (k, p) in pollers.enumerated() where p.revents != 0 {
                let i = owners[k]
                switch clients[i].phase {
                case .connecting: connected(i)
                case .reading: read(i, &buffer)
                case .waiting:
                    // Readable between requests: the server closed (or broke) the connection.
                    count { $0.closedIdle += 1 }
                    drop(i, retryAt: clients[i].phase)
                }
            }
        }
        for c in clients where c.fd >= 0 { close(c.fd) }
    }

    /// Sends the client's request, connecting first if it has no connection.
    private func send(_ i: Int, now: Double) {
        if clients[i].fd < 0 {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { count { $0.refused += 1 }; clients[i].phase = .waiting(until: now + interval); return }
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = port.bigEndian
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            let rc = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            clients[i].fd = fd
            if rc != 0 {
                if errno == EINPROGRESS { clients[i].phase = .connecting; return }
                count { $0.refused += 1 }
                drop(i, retryAt: .waiting(until: now + interval))
                return
            }
        }
        write(i)
    }

    private func connected(_ i: Int) {
        var error: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        getsockopt(clients[i].fd, SOL_SOCKET, SO_ERROR, &error, &length)
        guard error == 0 else {
            count { $0.refused += 1 }
            drop(i, retryAt: .waiting(until: Self.now() + interval))
            return
        }
        write(i)
    }

    private func write(_ i: Int) {
        let request = clients[i].request
        let n = request.withUnsafeBytes { Glibc.send(clients[i].fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        guard n == request.count else {
            count { $0.failed += 1 }
            drop(i, retryAt: .waiting(until: Self.now() + interval))
            return
        }
        clients[i].buffer.removeAll(keepingCapacity: true)
        clients[i].phase = .reading
    }

    private func read(_ i: Int, _ scratch: inout [UInt8]) {
        let n = scratch.withUnsafeMutableBytes { recv(clients[i].fd, $0.baseAddress, $0.count, 0) }
        if n < 0 && (errno == EAGAIN || errno == EINTR) { return }
        guard n > 0 else {
            count { $0.failed += 1 }
            drop(i, retryAt: .waiting(until: Self.now() + interval))
            return
        }
        clients[i].buffer += scratch[..<n]
        guard let (status, length, closing, headEnd) = Self.head(clients[i].buffer),
              clients[i].buffer.count >= headEnd + length else { return }
        count { $0.statuses[status, default: 0] += 1 }
        let next = Phase.waiting(until: Self.now() + interval)
        if closing {
            count { $0.reconnected += 1 }
            drop(i, retryAt: next)
        } else {
            clients[i].phase = next
        }
    }

    private func drop(_ i: Int, retryAt phase: Phase) {
        if clients[i].fd >= 0 { close(clients[i].fd) }
        clients[i].fd = -1
        clients[i].phase = phase
    }

    /// Status, Content-Length, whether `Connection: close`, and where the body starts; nil until
    /// the head is complete.
    private static func head(_ bytes: [UInt8]) -> (Int, Int, Bool, Int)? {
        let end = Array("\r\n\r\n".utf8)
        guard let at = bytes.indices.dropLast(3).first(where: { bytes[$0..<$0 + 4].elementsEqual(end) }) else { return nil }
        let text = String(decoding: bytes[..<at], as: UTF8.self).lowercased()
        let lines = text.split(separator: "\r\n")
        guard let first = lines.first, first.count >= 12, let status = Int(first.dropFirst(9).prefix(3)) else { return nil }
        var length = 0, closing = false
        for line in lines.dropFirst() {
            if line.hasPrefix("content-length:") { length = Int(line.dropFirst(15).trimmingCharacters(in: .whitespaces)) ?? 0 }
            if line.hasPrefix("connection:") && line.contains("close") { closing = true }
        }
        return (status, length, closing, at + 4)
    }
}
