import BreakwaterCore
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Where access log lines go: stderr or a file opened for appending. Shared by all workers;
/// each line batch is one write(2), so batches from different workers never interleave.
final class AccessLogSink: Sendable {
    let target: String
    private let fd: Int32
    private let owned: Bool

    /// Opens `target` ("stderr" or a path).
    init(target: String) throws {
        self.target = target
        if target == "stderr" {
            fd = 2
            owned = false
        } else {
            fd = open(target, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
            guard fd >= 0 else { throw LibeventError(call: "open(\(target))", errno: errno) }
            owned = true
        }
    }

    deinit { if owned { close(fd) } }

    func write(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let n = Glibc.write(fd, raw.baseAddress! + offset, raw.count - offset)
                if n <= 0 { return }
                offset += n
            }
        }
    }
}

/// One worker's access log buffer: lines are appended in memory on the request path and written
/// in batches (at 32 KiB, or within a second), so no request waits on the disk.
final class AccessLog {
    private let sink: AccessLogSink
    private unowned let worker: Worker
    private var buffer: [UInt8] = []
    private var flushScheduled = false
    private var second: Int = -1
    private var secondText = ""

    init(sink: AccessLogSink, worker: Worker) {
        self.sink = sink
        self.worker = worker
        buffer.reserveCapacity(40_000)
    }

    deinit { if !buffer.isEmpty { sink.write(buffer) } }

    var target: String { sink.target }

    /// Appends one line: time, client, request, status, outcome, route, upstream time, body bytes.
    func log(client: String, method: String, path: Substring, status: Int, outcome: String, route: String,
             upstream: Duration?, bytes: Int) {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        if ts.tv_sec != second {
            second = ts.tv_sec
            var t = time_t(ts.tv_sec)
            var parts = tm()
            gmtime_r(&t, &parts)
            secondText = String(format: "%04d-%02d-%02dT%02d:%02d:%02d", parts.tm_year + 1900, parts.tm_mon + 1,
                                parts.tm_mday, parts.tm_hour, parts.tm_min, parts.tm_sec)
        }
        let millis = ts.tv_nsec / 1_000_000
        let upstreamText = upstream.map { String(format: "%.3f", Double($0.components.attoseconds) / 1e18 + Double($0.components.seconds)) } ?? "-"
        let line = "\(secondText).\(millis < 10 ? "00" : millis < 100 ? "0" : "")\(millis)Z \(client) \"\(method) \(path)\" \(status) \(outcome) route=\(route) upstream=\(upstreamText) bytes=\(bytes)\n"
        buffer += line.utf8
        if buffer.count >= 32_768 {
            flush()
        } else if !flushScheduled {
            flushScheduled = true
            worker.schedule(after: .seconds(1)) { [weak self] in
                self?.flushScheduled = false
                self?.flush()
            }
        }
    }

    /// Writes what is buffered.
    func flush() {
        guard !buffer.isEmpty else { return }
        sink.write(buffer)
        buffer.removeAll(keepingCapacity: true)
    }
}
