/// The HTTP/2 connections of one worker to the upstream servers: a few per server, each carrying
/// many streams. A request takes the least loaded connection that has room under the server's
/// SETTINGS_MAX_CONCURRENT_STREAMS, else a new one up to `connectionsPerServer`, else the least
/// loaded (nghttp2 holds its stream until one closes).
final class UpstreamH2Pool {
    /// Connections per server and worker: streams are multiplexed, so few are needed; more than
    /// one spreads the work of a busy worker over the upstream's cores.
    static let connectionsPerServer = 4

    unowned let worker: Worker
    let settings: UpstreamSettings
    private var connections: [[UpstreamH2Connection]]

    init(worker: Worker, settings: UpstreamSettings, servers: Int) {
        self.worker = worker
        self.settings = settings
        connections = Array(repeating: [], count: servers)
    }

    /// No exchange holds the pool any more (it holds its pool while it runs): what is left is idle.
    deinit {
        for connection in connections.joined() { connection.close() }
    }

    /// Runs `start` with a connection to `server` once it is made; a connection that cannot be
    /// started is reported to `exchange` as a connect failure. Returns the connection chosen.
    @discardableResult
    func acquire(_ server: UpstreamServer, for exchange: UpstreamH2Exchange,
                 _ start: @escaping (UpstreamH2Connection) -> Void) -> UpstreamH2Connection? {
        let usable = connections[server.index].filter(\.isUsable)
        if let connection = usable.filter(\.hasRoom).min(by: { $0.load < $1.load }) {
            connection.whenReady(for: exchange, start)
            return connection
        }
        if usable.count < Self.connectionsPerServer {
            do {
                let connection = try UpstreamH2Connection(server: server, pool: self)
                connections[server.index].append(connection)
                connection.whenReady(for: exchange, start)
                return connection
            } catch {
                exchange.h2Failed(.connect)
                return nil
            }
        }
        let connection = usable.min(by: { $0.load < $1.load })!
        connection.whenReady(for: exchange, start)
        return connection
    }

    /// `connection` closed: it is forgotten.
    func closed(_ connection: UpstreamH2Connection) {
        connections[connection.server.index].removeAll { $0 === connection }
    }

    /// Closes the connections that carry no stream (a reload replaced the pool).
    func closeIdle() {
        for connection in connections.joined() where connection.load == 0 { connection.close() }
    }
}
