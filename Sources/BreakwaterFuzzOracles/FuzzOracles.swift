import BreakwaterCore
import BreakwaterHTTP

// The properties the libFuzzer targets in Fuzz/ check, shared with HostileFuzzRegressionTests,
// which runs them over every stored input. Each oracle takes the fuzzer's bytes and returns a
// description of what went wrong, or nil; a crash inside is a finding too.

/// The conf parser: any text is parsed or refused with a ConfigError (never another error, never
/// an abort inside TOMLKit: TOMLPrecheck keeps the shapes toml++ asserts on away from it), and a
/// config it accepts renders to text that parses back to the same config (with the secrets shown:
/// `render()` prints a placeholder in their place, which parse refuses), and without them shown
/// the rendered text contains none of them.
public func configOracle(_ bytes: [UInt8]) -> String? {
    let text = String(decoding: bytes, as: UTF8.self)
    let config: Config
    do {
        config = try Config.parse(text, file: "fuzz.conf")
    } catch let error as ConfigError {
        if TOMLPrecheck.refusal(in: text) != nil && error.key != "syntax" {
            return "the precheck refused the text but the error names \(error.key), not syntax"
        }
        return nil
    } catch {
        return "parse threw \(type(of: error)), not a ConfigError: \(error)"
    }
    do {
        let shown = config.render()
        if config.admin.tokenFile.isEmpty && !config.admin.token.isEmpty
            && !shown.contains("\ntoken = \"\(Config.redactedToken)\"\n") {
            return "render() does not hide the admin token"
        }
        if !config.clients.hashKey.isEmpty && !shown.contains("\nhash_key = \"\(Config.redactedToken)\"\n") {
            return "render() does not hide the hash key"
        }
        if let password = config.redis?.endpoint?.password, !password.isEmpty,
           !shown.contains(":\(Config.redactedToken)@") {
            return "render() does not hide the Redis password"
        }
        let again = try Config.parse(config.render(showingSecrets: true), file: "rendered.conf")
        return again == config ? nil : "render() then parse() gives a different config"
    } catch {
        return "the rendered config does not parse: \(error)"
    }
}

/// Client identity and route matching, fed from one input split at NUL bytes into: route
/// prefixes (newline-separated), a request path, a peer address, an X-Forwarded-For value,
/// an Authorization value, trusted CIDRs (newline-separated), and an IPv6 prefix length.
///
/// The key is deterministic and ignores X-Forwarded-For from an untrusted peer; the route is the
/// first prefix of the path (else the default); the client address is the peer or one of the
/// X-Forwarded-For hops.
public func identityOracle(_ bytes: [UInt8]) -> String? {
    var parts = bytes.split(separator: 0, maxSplits: 6, omittingEmptySubsequences: false)
        .map { String(decoding: $0, as: UTF8.self) }
    while parts.count < 7 { parts.append("") }
    let prefixes = parts[0].split(separator: "\n").map(String.init).filter { !$0.isEmpty }.prefix(16)
    let path = parts[1], forwarded = parts[3], token = parts[4]
    let peer = IPAddress(parsing: parts[2]) ?? IPAddress(ipv4: 0x7f00_0001)
    var config = Config()
    config.routes = prefixes.enumerated().map { i, prefix in
        var route = RouteConfig(name: "r\(i)", path: prefix)
        route.key = i % 2 == 0 ? [.ip] : [.header("authorization"), .route]
        return route
    }
    config.clients.trustedProxies = parts[5].split(separator: "\n").compactMap { CIDR(parsing: String($0)) }
    config.clients.ipv6Prefix = (parts[6].utf8.first.map(Int.init) ?? 64) % 129
    let table = RouteTable(config: config)
    let identity = ClientIdentity(clients: config.clients, hasher: KeyedHasher(secret: "fuzzing-hash-key-0123"))

    let route = table.match(path)
    let expected = prefixes.firstIndex { path.utf8.starts(with: $0.utf8) } ?? config.routes.count
    guard route.index == expected else { return "route \(route.index) for \(path.debugDescription), expected \(expected)" }
    guard Array(path.utf8).withUnsafeBytes({ table.match(pathBytes: $0).index }) == route.index else {
        return "match(pathBytes:) and match(_:) disagree on \(path.debugDescription)"
    }

    func header(_ name: String) -> String? {
        switch name {
        case "x-forwarded-for": return forwarded.isEmpty ? nil : forwarded
        case "authorization": return token.isEmpty ? nil : token
        default: return nil
        }
    }
    let key = identity.key(parts: route.keyParts, routeName: route.name, peer: peer, header: header)
    guard key == identity.key(parts: route.keyParts, routeName: route.name, peer: peer, header: header) else {
        return "the key is not deterministic"
    }
    let trusted = config.clients.trustedProxies.contains { $0.contains(peer) }
    if !trusted {
        let withoutForwarded = identity.key(parts: route.keyParts, routeName: route.name, peer: peer) {
            $0 == "x-forwarded-for" ? nil : header($0)
        }
        guard key == withoutForwarded else { return "an untrusted peer's X-Forwarded-For changed its key" }
    }
    let address = identity.clientAddress(peer: peer, forwardedFor: forwarded.isEmpty ? nil : forwarded)
    let grouped = { (a: IPAddress) in a.isIPv4 ? a : a.masked(to: config.clients.ipv6Prefix) }
    if address != grouped(peer) {
        guard trusted else { return "an untrusted peer got the address \(address)" }
        let hops = forwarded.split(separator: ",").map { String($0.trimmingASCIISpaces()) }
        let candidates = hops.compactMap { hop -> IPAddress? in
            if hop.hasPrefix("["), let close = hop.firstIndex(of: "]") {
                return IPAddress(parsing: String(hop[hop.index(after: hop.startIndex)..<close]))
            }
            if let colon = hop.firstIndex(of: ":"), hop.lastIndex(of: ":") == colon {
                return IPAddress(parsing: String(hop[..<colon]))
            }
            return IPAddress(parsing: hop)
        }
        guard candidates.contains(where: { grouped($0) == address }) else {
            return "client address \(address) is neither the peer nor an X-Forwarded-For hop"
        }
    }
    return nil
}

/// The request-head parser and the framing rules: no crash; every parsed range lies inside the
/// head; a head the parser accepts is never refused early, byte by byte, by the checks a
/// connection runs while the head is still arriving (HTTPHead.isPlausibleRequestStart and
/// scanHeadBytes); framing never accepts both Content-Length and Transfer-Encoding.
public func httpHeadOracle(_ bytes: [UInt8]) -> String? {
    guard let head = try? HTTPHead.parseRequest(bytes) else { return nil }
    let count = head.bytes.count
    for f in head.fields {
        guard f.nameStart <= f.nameEnd, f.nameEnd <= f.valueStart, f.valueStart <= f.valueEnd, Int(f.valueEnd) <= count else {
            return "field ranges out of order or out of the head: \(f)"
        }
    }
    guard head.first.upperBound <= count, head.second.upperBound <= count else { return "start-line ranges outside the head" }
    // The parser stops at the blank line; a connection scans only bytes before it.
    guard let blank = bytes.firstRange(of: [13, 10, 13, 10]) else { return "a head accepted without a blank line" }
    let headBytes = Array(bytes[..<blank.upperBound])
    var last: UInt8 = 0
    guard HTTPHead.scanHeadBytes(headBytes, last: &last) else { return "an accepted head fails scanHeadBytes" }
    for end in stride(from: 0, through: min(headBytes.count, 64), by: 1)
    where !HTTPHead.isPlausibleRequestStart(headBytes[0..<end]) {
        return "an accepted head's first \(end) bytes are refused as not plausible"
    }
    if let framing = try? head.requestBodyLength() {
        let hasLength = head.count("content-length") > 0, hasCoding = head.count("transfer-encoding") > 0
        if hasLength && hasCoding { return "framing \(framing) accepted with both Content-Length and Transfer-Encoding" }
        if case .chunked = framing, !hasCoding { return "chunked framing without Transfer-Encoding" }
        if case .length(let n) = framing, n <= 0 { return "a length framing of \(n)" }
        if case .untilClose = framing { return "a request framed until close" }
    }
    return nil
}

/// The chunked decoder: any input decodes to the same data and the same end (done at the same
/// byte, the same error, or still waiting for more) whether it arrives whole, in pieces of
/// arbitrary sizes or byte by byte; every step stays inside the bytes it was given; it never
/// crashes. The first byte of the fuzzer's input picks the piece sizes, the rest is the body.
public func chunkedOracle(_ bytes: [UInt8]) -> String? {
    guard let seed = bytes.first else { return nil }
    let body = Array(bytes.dropFirst())
    let whole: ChunkedOutcome
    switch decodeChunked(body, pieces: [body.count]) {
    case .success(let outcome): whole = outcome
    case .failure(let problem): return "fed whole: \(problem)"
    }
    // Piece sizes from a small generator seeded by the first byte, up to 1 + seed % 64 bytes each.
    var state = UInt32(seed) &* 2_654_435_761 | 1
    var sizes: [Int] = []
    var covered = 0
    while covered < body.count {
        state = state &* 1_103_515_245 &+ 12_345
        let size = 1 + Int(state >> 16) % (1 + Int(seed) % 64)
        sizes.append(size)
        covered += size
    }
    for (name, pieces) in [("in pieces \(sizes.prefix(8))", sizes), ("byte by byte", Array(repeating: 1, count: body.count))] {
        switch decodeChunked(body, pieces: pieces) {
        case .success(let outcome) where outcome == whole: continue
        case .success(let outcome): return "fed \(name): \(outcome), fed whole: \(whole)"
        case .failure(let problem): return "fed \(name): \(problem)"
        }
    }
    return nil
}

/// What decoding a chunked body came to: the data it passed on and how it ended.
struct ChunkedOutcome: Equatable, CustomStringConvertible {
    enum End: Equatable {
        /// The message ended after this many bytes of the input.
        case done(Int)
        case error(HTTPError)
        /// The input ran out before the message ended.
        case needMore
    }
    var data: [UInt8]
    var end: End
    var description: String { "\(data.count) data bytes, \(end)" }
}

struct ChunkedProblem: Error, CustomStringConvertible {
    let description: String
}

/// Feeds `body` to a fresh decoder in pieces of the given sizes (the last one cut to what is
/// left), as a connection would: each call sees the bytes received and not yet consumed.
func decodeChunked(_ body: [UInt8], pieces: [Int]) -> Result<ChunkedOutcome, ChunkedProblem> {
    var decoder = ChunkedDecoder()
    var data: [UInt8] = []
    var received = 0, consumed = 0
    for size in pieces {
        received = min(body.count, received + size)
        // Each call consumes at least one byte unless it ends or needs more, so this is a bound.
        for _ in 0...(received - consumed) {
            let step = body.withUnsafeBytes { decoder.next(UnsafeRawBufferPointer(rebasing: $0[consumed..<received])) }
            let available = received - consumed
            switch step {
            case .needMore:
                guard available == 0 else { return .failure(ChunkedProblem(description: "needMore with \(available) bytes unread")) }
            case .skip(let n), .data(let n):
                guard n >= 1, n <= available else { return .failure(ChunkedProblem(description: "\(step) with \(available) bytes given")) }
                if case .data = step { data += body[consumed..<consumed + n] }
                consumed += n
                guard !decoder.isDone else { return .failure(ChunkedProblem(description: "done after \(step), not after .done")) }
                continue
            case .done(let n):
                guard n >= 0, n <= available else { return .failure(ChunkedProblem(description: "\(step) with \(available) bytes given")) }
                guard decoder.isDone else { return .failure(ChunkedProblem(description: "\(step) but isDone is false")) }
                return .success(ChunkedOutcome(data: data, end: .done(consumed + n)))
            case .error(let error):
                return .success(ChunkedOutcome(data: data, end: .error(error)))
            }
            break
        }
        guard consumed == received else { return .failure(ChunkedProblem(description: "stopped with \(received - consumed) bytes unread")) }
    }
    return .success(ChunkedOutcome(data: data, end: .needMore))
}
