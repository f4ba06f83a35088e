/// Why a conf file was refused, precise enough to fix it without reading the source.
///
/// An operator facing a refused reload at 3 a.m. needs the file, the exact key, the value that
/// was wrong and what would have been accepted, all on one line:
/// `conf/x.conf: server.workers: got -3; allowed: an integer from 0 (one per core) to 1024`.
public struct ConfigError: Error, CustomStringConvertible, Equatable {
    /// The file as it was named to `load` or `parse`, so the message matches what the operator typed.
    public var file: String
    /// The dotted path of the offending key (`server.max_body_bytes`, `route[2].backoff.base`,
    /// routes counted from 0 in file order); `"syntax"` for malformed TOML, `"file"` when the
    /// file could not be read.
    public var key: String
    /// What was wrong, quoting the bad value.
    public var message: String
    /// What would have been accepted instead.
    public var allowed: String

    /// An error from its four parts.
    public init(file: String, key: String, message: String, allowed: String) {
        self.file = file
        self.key = key
        self.message = message
        self.allowed = allowed
    }

    /// `FILE: KEY: MESSAGE; allowed: ALLOWED`, one line, for logs and for `breakwater check`.
    public var description: String {
        "\(file): \(key): \(message); allowed: \(allowed)"
    }
}
