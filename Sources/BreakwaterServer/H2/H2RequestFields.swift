import BreakwaterHTTP

extension H2Headers {
    /// The fields of a request forwarded over HTTP/2, written by `ProxyHeaders.upstreamRequest`
    /// (the rule that writes an HTTP/1.1 request's head): its request line and host become the
    /// pseudo-header fields, placed first; every field it passes on follows, its name in lower case;
    /// Content-Length is left out (DATA frames delimit the body); `te: trailers` is added when the
    /// client asked for it (gRPC does). The fields HTTP/2 forbids (Connection, Upgrade, TE,
    /// Transfer-Encoding, Keep-Alive, Proxy-*) are hop-by-hop, which the rule drops already;
    /// no upgrade is asked of an HTTP/2 upstream.
    struct RequestFields: UpstreamHeadWriter {
        private(set) var fields: Fields
        /// The pseudo-header fields, in `fields.storage`: :method and :scheme, :path, :authority.
        private var pseudo: [(name: Range<Int>, value: Range<Int>)] = []
        private var path: (name: Range<Int>, value: Range<Int>)?
        private var authority: (name: Range<Int>, value: Range<Int>)?
        private let scheme: StaticString
        private let teTrailers: Bool
        private var fieldStart = 0
        private var valueStart = 0

        init(scheme: StaticString, teTrailers: Bool, reserving size: Int = 512, count: Int = 16) {
            fields = Fields(bytes: size, count: count + 8)
            pseudo.reserveCapacity(2)
            self.scheme = scheme
            self.teTrailers = teTrailers
        }

        private mutating func addPseudo(_ name: StaticString, _ value: some Collection<UInt8>) -> (name: Range<Int>, value: Range<Int>) {
            let start = fields.storage.count
            fields.storage.append(ascii: name)
            let mid = fields.storage.count
            fields.storage.append(contentsOf: value)
            return (start..<mid, mid..<fields.storage.count)
        }

        mutating func requestLine(method: ArraySlice<UInt8>, path: ArraySlice<UInt8>, query: ArraySlice<UInt8>) {
            pseudo.append(addPseudo(":method", method))
            pseudo.append(addPseudo(":scheme", UnsafeBufferPointer(start: scheme.utf8Start, count: scheme.utf8CodeUnitCount)))
            let start = fields.storage.count
            fields.storage.append(ascii: ":path")
            let mid = fields.storage.count
            fields.storage.append(contentsOf: path)
            fields.storage.append(contentsOf: query)
            self.path = (start..<mid, mid..<fields.storage.count)
        }

        mutating func field(_ head: HTTPHead, _ f: HeaderField) {
            // A Host of the client's (an origin-form request) is the authority.
            if head.nameIs(f, "host") { return host(head.bytes[Int(f.valueStart)..<Int(f.valueEnd)]) }
            fields.add(head.bytes[Int(f.nameStart)..<Int(f.nameEnd)], head.bytes[Int(f.valueStart)..<Int(f.valueEnd)])
        }

        mutating func host(_ value: ArraySlice<UInt8>) { authority = addPseudo(":authority", value) }

        mutating func forwarding(forwardedFor: String?, client: ArraySlice<UInt8>, secure: Bool, via: String?) {
            startField("x-forwarded-for")
            if let forwardedFor {
                value(utf8: forwardedFor)
                value(ascii: ", ")
            }
            value(bytes: client)
            endField()
            startField("x-forwarded-proto")
            value(ascii: secure ? "https" : "http")
            endField()
            startField("via")
            if let via {
                value(utf8: via)
                value(ascii: ", ")
            }
            value(ascii: "1.1 breakwater")
            endField()
        }

        mutating func startField(_ name: StaticString) {
            fieldStart = fields.storage.count
            fields.storage.append(ascii: name)
            valueStart = fields.storage.count
        }

        mutating func value(bytes: ArraySlice<UInt8>) { fields.storage.append(contentsOf: bytes) }
        mutating func value(ascii: StaticString) { fields.storage.append(ascii: ascii) }
        mutating func value(utf8: String) { fields.storage.append(utf8: utf8) }

        mutating func endField() {
            fields.storage.lowercaseASCII(fieldStart..<valueStart)
            fields.ranges.append((fieldStart..<valueStart, valueStart..<fields.storage.count))
        }

        mutating func contentLength(_ length: Int) {}

        mutating func endHead() {
            if teTrailers { fields.add("te".utf8, "trailers".utf8) }
            // :method, :scheme, :authority, :path, as an HTTP/2 client orders them.
            if authority == nil { authority = addPseudo(":authority", EmptyCollection()) }
            if let authority { pseudo.append(authority) }
            if let path { pseudo.append(path) }
            fields.ranges.insert(contentsOf: pseudo, at: 0)
        }
    }
}
