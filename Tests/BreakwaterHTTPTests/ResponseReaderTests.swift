@testable import BreakwaterHTTP
import Testing

/// The upstream side's state machine with no socket: interim responses, bodiless statuses,
/// framings, reuse, and how a close is judged.
@Suite struct ResponseReaderTests {
    /// What one exchange produced.
    private struct Outcome {
        var status = 0
        var framing: BodyLength?
        var body: [UInt8] = []
        var end: ResponseReader.Action?
    }

    /// Feeds `chunks` one at a time, as a connection would, then the close when `close` says so.
    private static func exchange(_ chunks: [String], answeringHEAD: Bool = false, close: Bool? = nil) -> Outcome {
        var reader = ResponseReader()
        reader.requestSent(answeringHEAD: answeringHEAD)
        var input: [UInt8] = []
        var outcome = Outcome()
        func carry(_ action: ResponseReader.Action) -> Bool {
            switch action {
            case .wait: return false
            case .needContiguous: preconditionFailure("the whole input is offered")
            case .discard(let n): input.removeFirst(n)
            case .head(let head, let length, let body):
                input.removeFirst(length)
                outcome.status = head.status
                outcome.framing = body
            case .body(let n):
                outcome.body += input.prefix(n)
                input.removeFirst(n)
            case .complete, .fail, .switched:
                outcome.end = action
                return false
            }
            return true
        }
        for chunk in chunks {
            input += bytes(chunk)
            while outcome.end == nil, carry(input.withUnsafeBytes { reader.read($0, buffered: input.count) }) {}
        }
        if let cleanly = close, outcome.end == nil { _ = carry(reader.peerClosed(cleanly: cleanly)) }
        return outcome
    }

    private static func reusable(_ o: Outcome) -> Bool? {
        if case .complete(let reusable) = o.end { return reusable }
        return nil
    }

    private static func failure(_ o: Outcome) -> ResponseReader.Failure? {
        if case .fail(let failure) = o.end { return failure }
        return nil
    }

    @Test func aLengthBodyInPiecesCompletesAndTheConnectionIsReusable() {
        let o = Self.exchange(["HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhe", "llo"])
        #expect(o.status == 200)
        #expect(o.body == bytes("hello"))
        #expect(Self.reusable(o) == true)
    }

    @Test func interimResponsesAreNotRelayed() {
        let o = Self.exchange(["HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n",
                               "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"])
        #expect(o.status == 201)
        #expect(Self.reusable(o) == true)
    }

    @Test func statusesWithoutABodyEndAtTheirHead() {
        for status in ["204 No Content", "304 Not Modified"] {
            let o = Self.exchange(["HTTP/1.1 \(status)\r\nContent-Length: 10\r\n\r\n"])
            #expect(o.framing == BodyLength.none, "\(status)")
            #expect(Self.reusable(o) == true, "\(status)")
        }
        let head = Self.exchange(["HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"], answeringHEAD: true)
        #expect(head.framing == BodyLength.none)
        #expect(head.body.isEmpty)
        #expect(Self.reusable(head) == true)
    }

    @Test func aChunkedBodyIsDecoded() {
        let o = Self.exchange(["HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nwiki\r\n", "5\r\npedia\r\n0\r\n\r\n"])
        #expect(o.framing == .chunked)
        #expect(o.body == bytes("wikipedia"))
        #expect(Self.reusable(o) == true)
    }

    @Test func aBodyWithoutLengthRunsUntilAnOrderlyClose() {
        let o = Self.exchange(["HTTP/1.1 200 OK\r\n\r\nsome", " bytes"], close: true)
        #expect(o.framing == .untilClose)
        #expect(o.body == bytes("some bytes"))
        #expect(Self.reusable(o) == false)
        let reset = Self.exchange(["HTTP/1.1 200 OK\r\n\r\nsome"], close: false)
        #expect(Self.failure(reset) == .brokenResponse)
    }

    @Test func bytesBeyondTheResponseForbidReuse() {
        let o = Self.exchange(["HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA"])
        #expect(Self.reusable(o) == false)
        let close = Self.exchange(["HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"])
        #expect(Self.reusable(close) == false)
        let ten = Self.exchange(["HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"])
        #expect(Self.reusable(ten) == false)
    }

    @Test func closesAndBadHeadsAreJudgedByWhatArrived() {
        #expect(Self.failure(Self.exchange([], close: true)) == .closedBeforeResponse)
        #expect(Self.failure(Self.exchange(["HTTP/1.1 200"], close: true)) == .badResponse)
        #expect(Self.failure(Self.exchange(["HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc"], close: true)) == .brokenResponse)
        #expect(Self.failure(Self.exchange(["HTTP/1.1 2x0 OK\r\n\r\n"])) == .badResponse)
        #expect(Self.failure(Self.exchange(["HTTP/1.1 101 Switching Protocols\r\n\r\n"])) == .badResponse)
        #expect(Self.failure(Self.exchange(["HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n"])) == .badResponse)
        #expect(Self.failure(Self.exchange(["HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"])) == .brokenResponse)
    }

    @Test func bytesWithNoRequestOutstandingAreOutOfProtocol() {
        var reader = ResponseReader()
        let action = bytes("HTTP/1.1 200 OK\r\n\r\n").withUnsafeBytes { reader.read($0, buffered: $0.count) }
        guard case .fail(.badResponse) = action else { Issue.record("\(action)"); return }
    }
}

/// Switching protocols: a 101 only answers a request that asked for it, and what follows it is
/// not HTTP.
@Suite struct UpgradeTests {
    @Test func a101ToAnUpgradeSwitchesAndLeavesTheRestForTheTunnel() {
        var reader = ResponseReader()
        reader.requestSent(answeringHEAD: false, upgrading: true)
        let input = bytes("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\u{81}\u{01}x")
        let action = input.withUnsafeBytes { reader.read($0, buffered: $0.count) }
        guard case .switched(let head, let length) = action else { Issue.record("\(action)"); return }
        #expect(head.status == 101)
        #expect(input.count - length == 4)   // the frame that came along stays for the tunnel
        let after = input.withUnsafeBytes { reader.read(UnsafeRawBufferPointer(rebasing: $0[length...]), buffered: input.count - length) }
        guard case .wait = after else { Issue.record("\(after)"); return }
    }

    @Test func a101NobodyAskedForIsABadResponse() {
        var reader = ResponseReader()
        reader.requestSent(answeringHEAD: false)
        let action = bytes("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n").withUnsafeBytes {
            reader.read($0, buffered: $0.count)
        }
        guard case .fail(.badResponse) = action else { Issue.record("\(action)"); return }
    }

    @Test func anUpgradeThatIsRefusedIsAnOrdinaryResponse() {
        var reader = ResponseReader()
        reader.requestSent(answeringHEAD: false, upgrading: true)
        let action = bytes("HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n").withUnsafeBytes {
            reader.read($0, buffered: $0.count)
        }
        guard case .head(let head, _, _) = action else { Issue.record("\(action)"); return }
        #expect(head.status == 401)
    }

    @Test func upgradeProtocolsNeedConnectionUpgradeAndHTTP11() throws {
        func protocols(_ text: String) throws -> [String] { try HTTPHead.parseRequest(bytes(text)).upgradeProtocols }
        #expect(try protocols("GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Upgrade\r\nUpgrade: WebSocket, foo/2\r\n\r\n")
                == ["websocket", "foo"])
        #expect(try protocols("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n").isEmpty)
        #expect(try protocols("GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n").isEmpty)
        #expect(try protocols("GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\n\r\n").isEmpty)
    }

    @Test func aRequestReaderInATunnelReadsNoMoreHTTP() {
        var d = ReaderDriver()
        d.receive("GET /ws HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n")
        #expect(d.requests.count == 1)
        d.reader.tunnelStarted()
        guard case .tunnel = d.reader.state else { Issue.record("\(d.reader.state)"); return }
        #expect(d.reader.deadline == nil)
        #expect(!d.reader.isIdle)
        d.receive("GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(d.requests.count == 1)   // tunnel bytes, not a request
    }
}
