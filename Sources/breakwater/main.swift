import ArgumentParser
import BreakwaterCore
import BreakwaterServer
import Dispatch
import Synchronization
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// `breakwater`: serve, check a conf file, or run the demo API.
struct BreakwaterCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "breakwater",
        abstract: "A rate-limiting HTTP reverse proxy that shields an API from clients that keep failing.",
        version: Breakwater.version,
        subcommands: [Serve.self, Check.self, DemoAPICommand.self, StateCommand.self, Upgrade.self],
        defaultSubcommand: Serve.self
    )
}

/// Serves on the conf file's listeners until SIGTERM or SIGINT; SIGHUP reloads the file; SIGUSR2
/// hands the listeners to the binary now on disk (a hot upgrade).
struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "serve", abstract: "Run the proxy (the default).")

    @Option(name: .long, help: "The conf file.")
    var config = "conf/breakwater.conf"

    func run() throws {
        // Before any other thread exists, so that every thread inherits the blocked signals.
        SignalThread.shared.start()
        // First: the sockets a previous process hands over, if this start is a hot upgrade.
        let inherited = HotUpgrade.takeInherited()
        let logger = makeLogger("breakwater")
        if let failure = inherited.failure {
            logger.critical("cannot start: the hot upgrade handover failed: \(failure)")
            throw ExitCode.failure
        }
        let loaded = try loadOrExit(config)
        let server: ProxyServer
        do {
            server = try ProxyServer(config: loaded, logger: logger, handedKey: inherited.key)
        } catch {
            logger.critical("cannot start: \(error)")
            throw ExitCode.failure
        }
        let path = config
        // The handlers go in before the listeners open: a SIGTERM sent as soon as the port
        // answers must not fall between the signal being ignored and its source being ready.
        onSignals([SIGTERM, SIGINT]) { signal in
            logger.info("stopping: draining requests in flight", metadata: ["signal": "\(signal)"])
            server.shutdown()
            logger.info("stopped")
            Glibc.exit(0)
        }
        onSignals([SIGUSR2]) { _ in
            logger.info("upgrade: starting the binary on disk", metadata: ["path": "\(HotUpgrade.executablePath)"])
            do {
                let handover = try server.upgrade(arguments: Array(CommandLine.arguments.dropFirst()))
                logger.info("upgrade: the new process serves; draining this one",
                            metadata: ["pid": "\(handover.pid)", "clients": "\(handover.entries)"])
                server.shutdown(closingIdle: false)
                logger.info("stopped")
                Glibc.exit(0)
            } catch {
                logger.error("upgrade failed, this process keeps serving: \(error)")
            }
        }
        onSignals([SIGHUP]) { _ in
            do {
                let fresh = try Config.load(path: path)
                for key in try server.reload(fresh) {
                    logger.warning("reload: \(key) changed; it takes effect only after a restart")
                }
                logger.info("reloaded", metadata: ["config": "\(path)"])
                for warning in fresh.warnings + ((try? TLSCheck.warnings(for: fresh)) ?? []) { logger.warning("\(warning)") }
            } catch {
                logger.error("reload refused, the running config stays: \(error)")
            }
        }
        do {
            try server.start(inherited: inherited)
        } catch {
            logger.critical("cannot start: \(error)")
            throw ExitCode.failure
        }
        if inherited.isUpgrade {
            // Under systemd (Type=notify, NotifyAccess=all) this process becomes the unit's main
            // one, and systemd must have taken that in before the previous process learns it may
            // exit: a main process that exits first would stop the whole unit.
            if SystemdNotify.send("MAINPID=\(getpid())\nREADY=1") && !SystemdNotify.barrier(timeout: .seconds(5)) {
                logger.warning("upgrade: systemd did not confirm the new main pid within 5 s (a systemd before 246 has no barriers)")
            }
            if !inherited.reportReady() { logger.warning("upgrade: the previous process is gone; serving anyway") }
        } else {
            SystemdNotify.send("READY=1")
        }
        for warning in loaded.warnings + ((try? TLSCheck.warnings(for: loaded)) ?? []) { logger.warning("\(warning)") }
        waitForever()
    }
}

/// `breakwater upgrade --pid PID`: asks a running Breakwater for a hot upgrade (SIGUSR2) and waits
/// for it to hand over and exit.
struct Upgrade: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "upgrade",
        abstract: "Hot upgrade: the running process starts the binary now on disk, hands it its sockets, and exits.")

    /// The process to upgrade.
    @Option(name: .long, help: "The pid of the running breakwater.")
    var pid: Int32

    /// How long to wait for the old process to hand over and drain.
    @Option(name: .long, help: "Seconds to wait for the old process to exit.")
    var timeout: Double = 60

    /// Sends SIGUSR2 and waits; exit 1 if the old process is still there at the timeout.
    func run() throws {
        guard kill(pid, SIGUSR2) == 0 else {
            FileHandleStderr.write("breakwater upgrade: cannot signal \(pid): \(String(cString: strerror(errno)))\n")
            throw ExitCode.failure
        }
        var waited = 0.0
        while waited < timeout {
            if kill(pid, 0) != 0 && errno == ESRCH {
                print("upgraded: process \(pid) handed over and exited")
                return
            }
            usleep(50_000)
            waited += 0.05
        }
        FileHandleStderr.write("breakwater upgrade: process \(pid) still runs after \(Int(timeout)) s: the upgrade failed "
                               + "(its log says why) or its connections are still draining\n")
        throw ExitCode.failure
    }
}

/// Validates a conf file and prints the effective configuration.
struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "check", abstract: "Validate a conf file and print the effective config.")

    @Option(name: .long, help: "The conf file.")
    var config = "conf/breakwater.conf"

    func run() throws {
        let loaded = try loadOrExit(config)
        let warnings: [String]
        do {
            warnings = try TLSCheck.warnings(for: loaded)
        } catch {
            FileHandleStderr.write("breakwater: \(config): \(error)\n")
            throw ExitCode.failure
        }
        let note: String?
        do {
            note = try HashKeyNote.text(for: loaded)
        } catch {
            FileHandleStderr.write("breakwater: \(config): clients.hash_key: \(error)\n")
            throw ExitCode.failure
        }
        print(loaded.render(), terminator: "")
        if let note { FileHandleStderr.write("note: \(note)\n") }
        for warning in loaded.warnings + warnings { FileHandleStderr.write("warning: \(warning)\n") }
        FileHandleStderr.write("\(config): ok\n")
    }
}

/// `breakwater state`: what a state file holds.
struct StateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "state", abstract: "Look into a state file ([state] file).",
                                                    subcommands: [Inspect.self])

    /// `breakwater state inspect FILE`: the header and the entries, or why the file is refused.
    struct Inspect: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "inspect",
            abstract: "Print a state file's header and entries, or why it is refused (exit 1).")

        /// The state file.
        @Argument(help: "The state file.")
        var file: String

        /// A conf file whose `hash_key` the state file must have been written with; nil: not checked.
        @Option(name: .long, help: "A conf file whose clients.hash_key the file must have been written with.")
        var config: String?

        /// Prints the report, or the refusal and exits 1.
        func run() throws {
            let fingerprint = try config.map { StateFile.fingerprint(of: try hasherOrExit(try loadOrExit($0))) }
            let header: StateFile.Header
            let clients: [SavedClient]
            do {
                guard let bytes = try StateFileIO.read(file) else {
                    print("\(file): refused: no such file")
                    throw ExitCode.failure
                }
                (header, clients) = try StateFile.decode(bytes, fingerprint: fingerprint)
            } catch let refusal as StateFile.Refusal {
                print("\(file): refused: \(refusal)")
                throw ExitCode.failure
            } catch let failure as StateFileIO.Failure {
                print("\(file): refused: \(failure)")
                throw ExitCode.failure
            }
            print(StateReport.text(file: file, header: header, clients: clients, checked: fingerprint != nil,
                                   now: StateReport.wallNow()), terminator: "")
        }
    }
}

/// The text `breakwater state inspect` prints.
enum StateReport {
    /// The wall clock, Unix nanoseconds.
    static func wallNow() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
    }

    /// Unix nanoseconds as `2026-12-04T23:40:01Z` (UTC, whole seconds).
    static func utc(_ ns: Int64) -> String {
        var seconds = time_t(ns / 1_000_000_000)
        var parts = tm()
        guard gmtime_r(&seconds, &parts) != nil else { return "-" }
        var buffer = [CChar](repeating: 0, count: 32)
        let n = strftime(&buffer, buffer.count, "%Y-%m-%dT%H:%M:%SZ", &parts)
        return n == 0 ? "-" : String(decoding: buffer[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// The header, then one line per entry.
    static func text(file: String, header: StateFile.Header, clients: [SavedClient], checked: Bool, now: Int64) -> String {
        let ago = max(0, (now - header.writtenAt) / 1_000_000_000)
        let hex = String(header.fingerprint, radix: 16)
        var out = """
        file: \(file)
        format: \(header.version)
        written at: \(utc(header.writtenAt)) (\(ago) s ago)
        hash key fingerprint: \(String(repeating: "0", count: 16 - hex.count) + hex)\(checked ? " (matches the conf's hash_key)" : "")
        entries: \(header.count)

        """
        guard !clients.isEmpty else { return out }
        func pad(_ text: String, _ width: Int, right: Bool = false) -> String {
            let fill = String(repeating: " ", count: max(0, width - text.count))
            return right ? fill + text : text + fill
        }
        out += "\(pad("key", 16)) \(pad("route", 5, right: true)) \(pad("level", 5, right: true)) "
            + "\(pad("errors", 6, right: true)) \(pad("window end (UTC)", 20)) \(pad("left s", 6, right: true))\n"
        for c in clients {
            let end = c.windowEnd == .min ? "-" : utc(c.windowEnd)
            let left = c.windowEnd == .min || c.windowEnd <= now ? 0 : (c.windowEnd - now + 999_999_999) / 1_000_000_000
            out += "\(ClientKey(value: c.key)) \(pad("\(c.routeIndex)", 5, right: true)) \(pad("\(c.level)", 5, right: true)) "
                + "\(pad("\(c.consecutiveErrors)", 6, right: true)) \(pad(end, 20)) \(pad("\(left)", 6, right: true))\n"
        }
        return out
    }
}

/// The demo API that stands behind Breakwater in demos and tests.
struct DemoAPICommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo-api",
        abstract: "Serve a small API: /api/v1/device/<token> (200 if the token starts with \"valid\", else 401), /echo, /healthz."
    )

    @Option(name: .long, help: "Address to listen on.")
    var listen = "127.0.0.1:9000"

    func run() throws {
        guard let address = HostPort(parsing: listen) else {
            throw ValidationError("--listen: expected host:port, got \"\(listen)\"")
        }
        SignalThread.shared.start()   // before the API's threads, which inherit the blocked signals
        let logger = makeLogger("demo-api")
        let api = try DemoAPI(logger: logger)
        try api.start(listen: address)
        onSignals([SIGTERM, SIGINT]) { _ in
            api.shutdown()
            Glibc.exit(0)
        }
        waitForever()
    }
}

/// What `check` says of a `hash_key` kept in a file beside the state file.
enum HashKeyNote {
    /// nil when the conf sets the key itself or has no `[state]`; throws when the key file is
    /// there but holds no key (the start would refuse it too).
    static func text(for config: Config) throws -> String? {
        guard config.clients.hashKey.isEmpty, !config.state.file.isEmpty else { return nil }
        let path = HashKeyFile.path(forStateFile: config.state.file)
        guard try HashKeyFile.read(path) != nil else {
            return "clients.hash_key is \"\": a random key is generated at the first start and kept in \(path) (mode 0600)"
        }
        let exposed = HashKeyFile.isExposed(path) ? "; the file is readable by others, chmod 600 it" : ""
        return "clients.hash_key is \"\": the key is read from \(path)\(exposed)"
    }
}

/// The hasher of a conf for reading state files: its `hash_key`, or the key file beside its
/// state file (never created here); exits 1 when there is neither.
private func hasherOrExit(_ config: Config) throws -> KeyedHasher {
    if !config.clients.hashKey.isEmpty { return KeyedHasher(secret: config.clients.hashKey) }
    let path = HashKeyFile.path(forStateFile: config.state.file)
    guard !config.state.file.isEmpty, let secret = try? HashKeyFile.read(path) else {
        FileHandleStderr.write("breakwater: the conf sets no clients.hash_key and no key file was found"
                               + (config.state.file.isEmpty ? "" : " at \(path)") + "\n")
        throw ExitCode.failure
    }
    return KeyedHasher(secret: secret)
}

private func makeLogger(_ label: String) -> Logger {
    var logger = Logger(label: label) { StreamLogHandler.standardError(label: $0) }
    logger.logLevel = .info
    return logger
}

/// Loads and validates a conf file; on error prints the message and exits 1.
private func loadOrExit(_ path: String) throws -> Config {
    do {
        return try Config.load(path: path)
    } catch {
        FileHandleStderr.write("breakwater: \(error)\n")
        throw ExitCode.failure
    }
}

private enum FileHandleStderr {
    static func write(_ text: String) {
        var text = text
        text.withUTF8 { _ = Glibc.write(2, $0.baseAddress, $0.count) }
    }
}

/// Runs `handler` on the signal thread each time one of `signals` arrives.
///
/// The signals Breakwater acts on are blocked in every thread (threads inherit the mask of the
/// main thread, which blocks them here, before any other thread exists) and one thread takes them
/// with sigwait: a signal sent at any moment is kept pending until that thread takes it, never
/// lost to an ignored disposition nor left to its default action. (A dispatch signal source, used
/// before, is registered asynchronously, and a SIGTERM sent right after start could be ignored.)
private func onSignals(_ signals: [Int32], _ handler: @escaping @Sendable (Int32) -> Void) {
    SignalThread.shared.add(signals, handler)
}

/// The main thread's work is done once the loops run: it waits, its signals blocked (what
/// `dispatchMain` would do unblocks them all, letting a SIGTERM take its default action).
private func waitForever() -> Never {
    while true { pause() }
}

/// The one thread that waits for the handled signals.
private final class SignalThread: @unchecked Sendable {
    static let shared = SignalThread()
    /// Every signal Breakwater acts on; blocked all at once, whichever are handled.
    private static let handled: [Int32] = [SIGTERM, SIGINT, SIGHUP, SIGUSR2]
    private let state = Mutex<(handlers: [Int32: @Sendable (Int32) -> Void], started: Bool)>(([:], false))

    private init() {}

    func add(_ signals: [Int32], _ handler: @escaping @Sendable (Int32) -> Void) {
        state.withLock { state in
            for signo in signals { state.handlers[signo] = handler }
        }
        start()
    }

    /// Blocks the handled signals in the calling thread (and so in every thread it creates from
    /// now on) and starts the thread that waits for them; once.
    func start() {
        let first = state.withLock { state in
            defer { state.started = true }
            return !state.started
        }
        guard first else { return }
        var set = Self.set()
        pthread_sigmask(SIG_BLOCK, &set, nil)
        var thread = pthread_t()
        let rc = pthread_create(&thread, nil, { _ in
            SignalThread.shared.wait()
            return nil
        }, nil)
        precondition(rc == 0, "pthread_create failed for the signal thread")
        pthread_detach(thread)
    }

    private static func set() -> sigset_t {
        var set = sigset_t()
        sigemptyset(&set)
        for signo in handled { sigaddset(&set, signo) }
        return set
    }

    fileprivate func wait() {
        var set = Self.set()
        while true {
            var signo: Int32 = 0
            guard sigwait(&set, &signo) == 0 else { continue }
            let handler = state.withLock { $0.handlers[signo] }
            handler?(signo)
        }
    }
}

BreakwaterCommand.main()
