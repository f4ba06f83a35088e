import BreakwaterCore
import Dispatch
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// Keeps the tracker across restarts (`[state]`): loads the file once at start, saves it every
/// `save_interval` and once more at a clean stop.
///
/// Saving runs on a queue of its own, never on a worker's loop. The tracker is copied one shard
/// at a time (`ErrorTracker.exportState`), so a worker waits at most for one shard's copy;
/// encoding and writing hold no lock.
final class StateKeeper: @unchecked Sendable {
    /// The state file, absolute.
    let path: String
    private let interval: Duration
    private let tracker: ErrorTracker<LoopClock>
    private let fingerprint: UInt64
    private let logger: Logger
    private let metrics: ProxyMetrics
    private let queue = DispatchQueue(label: "breakwater.state")
    // Touched on `queue` only.
    private var timer: DispatchSourceTimer?
    private var lastFailure: String?
    private var stopped = false

    /// A keeper of `tracker` in `config.file`, whose keys were hashed by `hasher`.
    init(config: StateConfig, tracker: ErrorTracker<LoopClock>, hasher: KeyedHasher, metrics: ProxyMetrics, logger: Logger) {
        path = config.file
        interval = config.saveInterval
        self.tracker = tracker
        fingerprint = StateFile.fingerprint(of: hasher)
        self.metrics = metrics
        self.logger = logger
    }

    /// The monotonic and wall clocks read together.
    static func clocks() -> ClockPair {
        let monotonic = LoopClock().nanoseconds()
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return ClockPair(monotonic: monotonic, wall: Int64(ts.tv_sec) &* 1_000_000_000 &+ Int64(ts.tv_nsec))
    }

    /// Loads the file into the tracker; returns how many clients were taken. A missing file is a
    /// first start; any other problem is logged in one line and the tracker stays empty.
    @discardableResult
    func load() -> Int {
        let bytes: [UInt8]
        do {
            guard let read = try StateFileIO.read(path) else {
                logger.info("state: no file yet, starting with an empty tracker", metadata: ["file": "\(path)"])
                metrics.stateLoaded(0)
                return 0
            }
            bytes = read
        } catch {
            logger.warning("state file refused, starting with an empty tracker: \(error)", metadata: ["file": "\(path)"])
            metrics.stateLoaded(0)
            return 0
        }
        do {
            let (header, taken) = try tracker.loadState(bytes, fingerprint: fingerprint, clocks: Self.clocks())
            logger.info("state loaded", metadata: ["file": "\(path)", "entries": "\(header.count)", "loaded": "\(taken)",
                                                   "expired": "\(header.count - taken)"])
            metrics.stateLoaded(taken)
            return taken
        } catch {
            logger.warning("state file refused, starting with an empty tracker: \(error)", metadata: ["file": "\(path)"])
            metrics.stateLoaded(0)
            return 0
        }
    }

    /// Saves every `save_interval` from now on.
    func start() {
        queue.async { [self] in
            guard !stopped else { return }
            let source = DispatchSource.makeTimerSource(queue: queue)
            let ns = Int(clamping: interval.clampedNanoseconds)
            source.schedule(deadline: .now() + .nanoseconds(ns), repeating: .nanoseconds(ns), leeway: .milliseconds(100))
            source.setEventHandler { [weak self] in self?.saveNow() }
            source.resume()
            timer = source
        }
    }

    /// Stops the timer and, with `save`, saves one last time; returns when the file is written.
    func stop(save: Bool = true) {
        queue.sync {
            stopped = true
            timer?.cancel()
            timer = nil
            if save, let count = saveNow() {
                logger.info("state saved", metadata: ["file": "\(path)", "entries": "\(count)"])
            }
        }
    }

    // On `queue`.
    @discardableResult
    private func saveNow() -> Int? {
        let start = LoopClock().nanoseconds()
        let clocks = Self.clocks()
        let (bytes, count) = tracker.saveState(fingerprint: fingerprint, clocks: clocks)
        do {
            try StateFileIO.writeAtomically(path, bytes)
        } catch {
            let text = "\(error)"
            // One line per new problem, not one per interval.
            if text != lastFailure {
                logger.error("state: cannot save: \(text)", metadata: ["file": "\(path)"])
                lastFailure = text
            }
            return nil
        }
        if lastFailure != nil {
            logger.info("state: saving again", metadata: ["file": "\(path)"])
            lastFailure = nil
        }
        let seconds = Double(LoopClock().nanoseconds() - start) / 1e9
        metrics.stateSaved(entries: count, seconds: seconds)
        return count
    }
}

/// Reading and atomically writing a state file.
public enum StateFileIO {
    /// A failed system call, with errno's words.
    public struct Failure: Error, CustomStringConvertible {
        /// What failed and why.
        public let description: String

        /// "`what` `path`: errno's words", with `errno` read now unless `code` is given.
        init(_ what: String, _ path: String, errno code: Int32 = errno) {
            description = "\(what) \(path): \(String(cString: strerror(code)))"
        }
    }

    /// The largest file read: far beyond a billion-client table's worth of blocked clients is damage.
    static let maximumSize = 1 << 34

    /// The whole file, or nil if it does not exist.
    public static func read(_ path: String) throws(Failure) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            if errno == ENOENT { return nil }
            throw Failure("cannot open", path)
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw Failure("cannot stat", path) }
        guard (info.st_mode & S_IFMT) == S_IFREG else { throw Failure("not a regular file:", path, errno: EINVAL) }
        guard Int(info.st_size) <= maximumSize else { throw Failure("too large:", path, errno: EFBIG) }
        var bytes = [UInt8](repeating: 0, count: Int(info.st_size))
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress! + done, $0.count - done) }
            if n < 0 {
                if errno == EINTR { continue }
                throw Failure("cannot read", path)
            }
            if n == 0 { break }
            done += n
        }
        // A file that shrank while read is read as it was: the decoder calls it truncated.
        return Array(bytes[..<done])
    }

    /// Writes `bytes` so that `path` holds either its old content or all of the new, even across
    /// a crash or a power cut: a temporary file in the same directory, fsync, rename over `path`,
    /// fsync of the directory. Creates the directory (one level) if missing.
    public static func writeAtomically(_ path: String, _ bytes: [UInt8]) throws(Failure) {
        let directory = Self.directory(of: path)
        if mkdir(directory, 0o750) != 0 && errno != EEXIST { throw Failure("cannot create directory", directory) }
        let temporary = "\(path).tmp.\(getpid())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw Failure("cannot create", temporary) }
        var failure: Failure?
        var done = 0
        while done < bytes.count && failure == nil {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + done, $0.count - done) }
            if n < 0 {
                if errno != EINTR { failure = Failure("cannot write", temporary) }
            } else {
                done += n
            }
        }
        if failure == nil && fsync(fd) != 0 { failure = Failure("cannot fsync", temporary) }
        if close(fd) != 0 && failure == nil { failure = Failure("cannot close", temporary) }
        if failure == nil && rename(temporary, path) != 0 { failure = Failure("cannot rename over", path) }
        if let failure {
            unlink(temporary)
            throw failure
        }
        let dir = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard dir >= 0 else { throw Failure("cannot open directory", directory) }
        defer { close(dir) }
        guard fsync(dir) == 0 else { throw Failure("cannot fsync directory", directory) }
    }

    /// The directory part of `path` ("." for a bare name).
    static func directory(of path: String) -> String {
        let bytes = Array(path.utf8)
        guard let slash = bytes.lastIndex(of: UInt8(ascii: "/")) else { return "." }
        return slash == 0 ? "/" : String(decoding: bytes[..<slash], as: UTF8.self)
    }
}
