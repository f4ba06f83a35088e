import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Keep-alive clients sending requests back to back, each on a thread of its own, until stopped.
/// Every request ends up counted once: by the status it got, or by how it failed.
final class LoadLoop: @unchecked Sendable {
    /// What the clients saw.
    struct Tally: CustomStringConvertible {
        var statuses: [Int: Int] = [:]
        /// Requests without a complete response, by what happened ("connect", "closed", "broken", "timeout").
        var failures: [String: Int] = [:]
        var answered: Int { statuses.values.reduce(0, +) }
        var failed: Int { failures.values.reduce(0, +) }
        var description: String { "statuses \(statuses.sorted { $0.key < $1.key }), failures \(failures)" }
    }

    private let port: UInt16
    private let connections: Int
    private let request: @Sendable (Int) -> [UInt8]
    private let state = Guarded<(tally: Tally, stopped: Bool, running: Int)>((Tally(), false, 0))
    private let done = DispatchGroup()

    /// `request(n)` is the n-th request a client sends (n counts per client).
    init(port: UInt16, connections: Int, request: @escaping @Sendable (Int) -> [UInt8] = { _ in rawRequest("GET", "/load") }) {
        self.port = port
        self.connections = connections
        self.request = request
    }

    func start() {
        for _ in 0..<connections {
            done.enter()
            let thread = Thread { [self] in
                run()
                done.leave()
            }
            thread.stackSize = 512 << 10
            thread.start()
        }
    }

    /// The counts so far.
    var tally: Tally { state.withLock { $0.tally } }

    /// Stops every client after its current request and returns the final counts.
    func stop() -> Tally {
        state.withLock { $0.stopped = true }
        done.wait()
        return tally
    }

    private var stopped: Bool { state.withLock { $0.stopped } }

    private func count(status: Int? = nil, failure: String? = nil) {
        state.withLock {
            if let status { $0.tally.statuses[status, default: 0] += 1 }
            if let failure { $0.tally.failures[failure, default: 0] += 1 }
        }
    }

    private func run() {
        var socket: TestSocket?
        var n = 0
        while !stopped {
            if socket == nil {
                socket = try? TestSocket(port: port, timeout: 10)
                if socket == nil {
                    count(failure: "connect")
                    usleep(20_000)
                    continue
                }
            }
            n += 1
            do {
                try socket!.send(request(n))
                guard let response = try socket!.readMessage() else {
                    count(failure: "closed")
                    socket = nil
                    continue
                }
                if response.complete {
                    count(status: response.status)
                } else {
                    count(failure: "broken")
                }
                if !response.complete || response.header("Connection")?.lowercased() == "close" { socket = nil }
            } catch {
                count(failure: "\(error)".contains("timed out") ? "timeout" : "closed")
                socket = nil
            }
        }
    }
}

extension LoadLoop {
    /// Results gathered from many threads.
    final class Results: @unchecked Sendable {
        private let items = Guarded<[(Int, Double)]>([])
        func add(_ status: Int, _ seconds: Double) { items.withLock { $0.append((status, seconds)) } }
        var all: [(Int, Double)] { items.withLock { $0 } }
    }
}
