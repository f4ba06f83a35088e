import ArgumentParser
import BreakwaterCore
import BreakwaterServer
import Dispatch
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
        subcommands: [Serve.self, Check.self, DemoAPICommand.self],
        defaultSubcommand: Serve.self
    )
}

/// Serves on the conf file's listeners until SIGTERM or SIGINT; SIGHUP reloads the file.
struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "serve", abstract: "Run the proxy (the default).")

    @Option(name: .long, help: "The conf file.")
    var config = "conf/breakwater.conf"

    func run() throws {
        let logger = makeLogger("breakwater")
        let loaded = try loadOrExit(config)
        let server: ProxyServer
        do {
            server = try ProxyServer(config: loaded, logger: logger)
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
        onSignals([SIGHUP]) { _ in
            do {
                let fresh = try Config.load(path: path)
                for key in try server.reload(fresh) {
                    logger.warning("reload: \(key) changed; it takes effect only after a restart")
                }
                logger.info("reloaded", metadata: ["config": "\(path)"])
                for warning in (try? TLSCheck.warnings(for: fresh)) ?? [] { logger.warning("\(warning)") }
            } catch {
                logger.error("reload refused, the running config stays: \(error)")
            }
        }
        do {
            try server.start()
        } catch {
            logger.critical("cannot start: \(error)")
            throw ExitCode.failure
        }
        for warning in (try? TLSCheck.warnings(for: loaded)) ?? [] { logger.warning("\(warning)") }
        dispatchMain()
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
        print(loaded.render(), terminator: "")
        for warning in warnings { FileHandleStderr.write("warning: \(warning)\n") }
        FileHandleStderr.write("\(config): ok\n")
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
        let logger = makeLogger("demo-api")
        let api = try DemoAPI(logger: logger)
        try api.start(listen: address)
        onSignals([SIGTERM, SIGINT]) { _ in
            api.shutdown()
            Glibc.exit(0)
        }
        dispatchMain()
    }
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

/// Runs `handler` on a private queue for each of `signals` (their default action is disabled).
private func onSignals(_ signals: [Int32], _ handler: @escaping @Sendable (Int32) -> Void) {
    let queue = DispatchQueue(label: "signals")
    for signo in signals {
        signal(signo, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: signo, queue: queue)
        source.setEventHandler { handler(signo) }
        source.resume()
        retainedSources.append(source)
    }
}

nonisolated(unsafe) private var retainedSources: [any DispatchSourceSignal] = []

BreakwaterCommand.main()
