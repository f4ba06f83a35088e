import BreakwaterCore
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
            fd = try syscall("open(\(target))") { open(target, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644) }
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
    /// The current second as "YYYY-MM-DDTHH:MM:SS", made once per second.
    private var secondText: [UInt8] = []

    init(sink: AccessLogSink, worker: Worker) {
        self.sink = sink
        self.worker = worker
        buffer.reserveCapacity(40_000)
    }

    deinit { if !buffer.isEmpty { sink.write(buffer) } }

    var target: String { sink.target }

    /// Appends one line: time, client, request, status, outcome, route, upstream time, body
    /// bytes, and the scheme the client spoke (`http`, or `https` over TLS).
    func log(client: String, method: String, path: Substring, status: Int, outcome: String, route: String,
             upstream: Duration?, bytes: Int, secure: Bool) {
        let ts = LoopClock.wallTime()
        if ts.tv_sec != second {
            second = ts.tv_sec
            var t = time_t(ts.tv_sec)
            var parts = tm()
            gmtime_r(&t, &parts)
            secondText.removeAll(keepingCapacity: true)
            secondText.append(digits: Int(parts.tm_year) + 1900, width: 4)
            for (separator, value) in [(UInt8(ascii: "-"), parts.tm_mon + 1), (UInt8(ascii: "-"), parts.tm_mday),
                                       (UInt8(ascii: "T"), parts.tm_hour), (UInt8(ascii: ":"), parts.tm_min),
                                       (UInt8(ascii: ":"), parts.tm_sec)] {
                secondText.append(separator)
                secondText.append(digits: Int(value), width: 2)
            }
        }
        buffer += secondText
        buffer.append(ascii: ".")
        buffer.append(digits: ts.tv_nsec / 1_000_000, width: 3)
        buffer.append(ascii: "Z ")
        buffer.append(utf8: client)
        buffer.append(ascii: " \"")
        buffer.append(utf8: method)
        buffer.append(ascii: " ")
        buffer += path.utf8
        buffer.append(ascii: "\" ")
        buffer.append(decimal: status)
        buffer.append(ascii: " ")
        buffer.append(utf8: outcome)
        buffer.append(ascii: " route=")
        buffer.append(utf8: route)
        buffer.append(ascii: " upstream=")
        if let upstream {
            // Seconds with three decimals, rounded to the millisecond.
            let millis = Int((upstream.clampedNanoseconds + 500_000) / 1_000_000)
            buffer.append(decimal: millis / 1000)
            buffer.append(ascii: ".")
            buffer.append(digits: millis % 1000, width: 3)
        } else {
            buffer.append(ascii: "-")
        }
        buffer.append(ascii: " bytes=")
        buffer.append(decimal: bytes)
        buffer.append(ascii: secure ? " scheme=https\n" : " scheme=http\n")
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
