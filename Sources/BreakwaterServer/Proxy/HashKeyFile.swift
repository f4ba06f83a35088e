#if canImport(Glibc)
import Glibc
#endif

/// The hash key kept beside the state file (`FILE.key`) when `[state] file` is set and
/// `clients.hash_key` is empty: generated at the first start, read at every later one, so the
/// saved keys stay readable across restarts without a secret in the shipped conf.
///
/// The file holds 64 hex digits (32 random bytes) and a newline, mode 0600: a valid `hash_key`
/// value, so replicas that later share Redis can be given the same one.
public enum HashKeyFile {
    /// The key file of the state file `file`.
    public static func path(forStateFile file: String) -> String { file + ".key" }

    /// What a key file holds at least: the rule of `hash_key` itself.
    static let minimumLength = 16

    /// The key in `path`, or nil when there is no file; throws when it cannot be read or holds
    /// no key (it is never replaced: the saved state depends on it).
    public static func read(_ path: String) throws(StateFileIO.Failure) -> String? {
        guard let bytes = try StateFileIO.read(path) else { return nil }
        var text = bytes
        while let last = text.last, last == UInt8(ascii: "\n") || last == UInt8(ascii: "\r") { text.removeLast() }
        guard text.count >= minimumLength, text.count <= 4096,
              text.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
            throw StateFileIO.Failure("no hash key (at least \(minimumLength) printable characters) in", path, errno: EINVAL)
        }
        return String(decoding: text, as: UTF8.self)
    }

    /// Whether others than the owner may read or write `path` (a key file should be 0600).
    public static func isExposed(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0 && info.st_mode & 0o077 != 0
    }

    /// The key in `path`, created first if there is none. Two processes starting at once agree
    /// on one key: the new file is complete (written, fsynced) before it is linked into place,
    /// and a link that finds a file already there reads that one instead.
    public static func loadOrCreate(_ path: String) throws(StateFileIO.Failure) -> (secret: String, created: Bool) {
        if let secret = try read(path) { return (secret, false) }
        let directory = StateFileIO.directory(of: path)
        if mkdir(directory, 0o750) != 0 && errno != EEXIST { throw StateFileIO.Failure("cannot create directory", directory) }
        var generator = SystemRandomNumberGenerator()
        let hex = Array("0123456789abcdef".utf8)
        var secret: [UInt8] = []
        for _ in 0..<32 {
            let byte = UInt8.random(in: 0...255, using: &generator)
            secret += [hex[Int(byte >> 4)], hex[Int(byte & 0xF)]]
        }
        let temporary = "\(path).tmp.\(getpid())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw StateFileIO.Failure("cannot create", temporary) }
        defer { unlink(temporary) }
        let line = secret + [UInt8(ascii: "\n")]
        let written = line.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        var failure: StateFileIO.Failure?
        if written != line.count { failure = StateFileIO.Failure("cannot write", temporary) }
        if failure == nil && fsync(fd) != 0 { failure = StateFileIO.Failure("cannot fsync", temporary) }
        close(fd)
        if let failure { throw failure }
        if link(temporary, path) != 0 {
            guard errno == EEXIST else { throw StateFileIO.Failure("cannot create", path) }
            // Another process was first: its key is the key.
            guard let theirs = try read(path) else { throw StateFileIO.Failure("cannot read", path, errno: ENOENT) }
            return (theirs, false)
        }
        let dir = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dir >= 0 {
            _ = fsync(dir)
            close(dir)
        }
        return (String(decoding: secret, as: UTF8.self), true)
    }
}
