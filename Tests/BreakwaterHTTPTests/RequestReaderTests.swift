@testable import BreakwaterHTTP
import Testing

/// The client side's state machine, driven with a manual clock and no socket: every timeout,
/// limit and refusal of reading requests.
@Suite struct RequestReaderTests {
    private static let get = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"

    @Test func aWholeRequestIsHandedOverAndTheConnectionWaitsForTheNext() {
        var d = ReaderDriver()
        d.receive(Self.get)
        #expect(d.requests.count == 1)
        #expect(d.requests[0].head.target == "/a")
        #expect(d.reader.isResponding)
        #expect(d.lastDeadline == nil)   // no timeout while the handler answers
        d.respond()
        #expect(d.reader.isIdle)
        #expect(d.lastDeadline == d.clock.now.advanced(by: .seconds(60)))   // idle_timeout
    }

    @Test func pipelinedRequestsWaitForTheResponseBeforeThem() {
        var d = ReaderDriver()
        d.receive(Self.get + "GET /b HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(d.requests.count == 1)
        d.respond()
        #expect(d.requests.map(\.head.target) == ["/a", "/b"])
    }

    @Test func pipelinedBytesPilingUpDuringAResponseStopReading() {
        var d = ReaderDriver()
        d.receive(Self.get)
        let action = d.receive([UInt8](repeating: 0x41, count: 40_000))
        guard case .stopReading = action else { Issue.record("\(action)"); return }
    }

    @Test func emptyLinesBeforeARequestAreIgnored() {
        var d = ReaderDriver()
        d.receive("\r\n\r\n" + Self.get)
        #expect(d.requests.count == 1)
        #expect(d.refusals.isEmpty)
    }

    @Test func aHeadArrivingInPiecesIsParsedOnceWhole() {
        var d = ReaderDriver()
        for byte in bytes(Self.get) { d.receive([byte]) }
        #expect(d.requests.count == 1)
        #expect(d.refusals.isEmpty)
    }

    @Test func aHeadMustArriveWithinTheHeaderTimeoutOfItsFirstByte() {
        var d = ReaderDriver()
        d.receive("GET / HTTP/1.1\r\n")
        #expect(d.lastDeadline == d.clock.now.advanced(by: .seconds(10)))
        d.clock.advance(by: .seconds(9))
        d.receive("Host: x\r\n")   // progress does not move a head's deadline
        #expect(d.lastDeadline == ManualClock.Instant(offset: .seconds(10)))
        d.elapse(.seconds(1))
        #expect(d.refusals.map(\.status) == [408])
        d.respond(keepAlive: false)
        #expect(d.closed)   // a client that was too slow gets no lingering
        #expect(!d.lingering)
    }

    @Test func anEarlyDeadlineEventChangesNothing() {
        var d = ReaderDriver()
        d.receive("GET / HTTP/1.1\r\n")
        let action = d.elapse(.seconds(3))
        guard case .wait(let deadline) = action else { Issue.record("\(action)"); return }
        #expect(deadline == ManualClock.Instant(offset: .seconds(10)))
        #expect(d.refusals.isEmpty)
    }

    @Test func aConnectionThatNeverSendsAByteClosesAfterTheHeaderTimeout() {
        var d = ReaderDriver()
        #expect(d.lastDeadline == ManualClock.Instant(offset: .seconds(10)))
        d.elapse(.seconds(10))
        #expect(d.closed)
        #expect(d.refusals.isEmpty)
    }

    @Test func aKeptAliveConnectionWaitsTheIdleTimeoutForItsNextRequest() {
        var d = ReaderDriver()
        d.receive(Self.get)
        d.respond()
        d.elapse(.seconds(59))
        #expect(!d.closed)
        d.elapse(.seconds(1))
        #expect(d.closed)
    }

    @Test func aBodyIsBufferedThenTheRequestHandedOver() {
        var d = ReaderDriver()
        d.receive("POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhel")
        #expect(d.requests.isEmpty)
        d.receive("lo")
        #expect(d.requests.count == 1)
        #expect(d.requests[0].body == bytes("hello"))
    }

    @Test func aChunkedBodyIsDecoded() {
        var d = ReaderDriver()
        d.receive("POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3;x=1\r\nabc\r\n2\r\nde\r\n0\r\nT: v\r\n\r\n")
        #expect(d.requests.count == 1)
        #expect(d.requests[0].body == bytes("abcde"))
    }

    @Test func aBareLFEndingTheTrailerSectionIsRefusedAtOnce() {
        var d = ReaderDriver()
        d.receive("POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\n")
        #expect(d.refusals.map(\.status) == [400])
    }

    @Test func aBodyThatStallsForTheHeaderTimeoutIs408() {
        var d = ReaderDriver()
        d.receive("POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
        #expect(d.lastDeadline == d.clock.now.advanced(by: .seconds(10)))
        d.elapse(.seconds(10))
        #expect(d.refusals.map(\.status) == [408])
    }

    @Test func aBodyTricklingSlowerThanTheFloorIs408() {
        var limits = ReaderLimits()
        limits.minBodyRate = 1000   // bytes a second, after a grace of header_timeout
        var d = ReaderDriver(limits: limits)
        d.receive("POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
        // 100 bytes every 9 s: never stalls 10 s, but earns only 0.1 s per 100 bytes.
        d.clock.advance(by: .seconds(9))
        d.receive([UInt8](repeating: 0x61, count: 100))
        #expect(d.refusals.isEmpty)
        #expect(d.lastDeadline == ManualClock.Instant(offset: .milliseconds(10_100)))
        // At 18 s the floor allowed 10 s + 200 bytes / 1000 B/s = 10.2 s: refused as the bytes come.
        d.clock.advance(by: .seconds(9))
        d.receive([UInt8](repeating: 0x61, count: 100))
        #expect(d.refusals.map(\.status) == [408])
    }

    @Test func aBodyAtTheFloorRateIsAccepted() {
        var limits = ReaderLimits()
        limits.minBodyRate = 1000
        var d = ReaderDriver(limits: limits)
        d.receive("POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 20000\r\n\r\n")
        for _ in 0..<20 {
            d.clock.advance(by: .seconds(1))
            d.receive([UInt8](repeating: 0x61, count: 1000))
        }
        #expect(d.refusals.isEmpty)
        #expect(d.requests.count == 1)
    }

    @Test func expectContinueIsAnsweredWhenTheBodyHasNotStarted() {
        var d = ReaderDriver()
        d.receive("POST /p HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
        #expect(d.continues == 1)
        d.receive("ok")
        #expect(d.requests.count == 1)
        var early = ReaderDriver()
        early.receive("POST /p HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok")
        #expect(early.continues == 0)   // the body is already here
    }

    @Test func aBodyOverTheLimitIs413AndTheConnectionLingers() {
        var limits = ReaderLimits()
        limits.maxBodyBytes = 10
        var d = ReaderDriver(limits: limits)
        d.receive("POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n")
        #expect(d.refusals.map(\.status) == [413])
        d.respond(keepAlive: false)
        #expect(d.lingering)   // the body may still be on its way: drop it, do not reset
        #expect(d.lastDeadline == d.clock.now.advanced(by: .seconds(5)))
        d.receive([UInt8](repeating: 0x61, count: 11))
        #expect(d.input.isEmpty)
        d.elapse(.seconds(5))
        #expect(d.closed)
    }

    @Test func lingeringEndsAfterThirtySecondsEvenIfTheClientKeepsSending() {
        var limits = ReaderLimits()
        limits.maxBodyBytes = 10
        var d = ReaderDriver(limits: limits)
        d.receive("POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n")
        d.respond(keepAlive: false)
        for _ in 0..<7 {
            d.clock.advance(by: .seconds(4))
            d.receive("more")
        }
        #expect(d.lastDeadline == ManualClock.Instant(offset: .seconds(30)))
    }

    @Test func aChunkedBodyOverTheLimitIs413() {
        var limits = ReaderLimits()
        limits.maxBodyBytes = 4
        var d = ReaderDriver(limits: limits)
        d.receive("POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n0\r\n\r\n")
        #expect(d.refusals.map(\.status) == [413])
    }

    @Test func aHeadOverTheLimitIs431AndALongRequestLine414() {
        var limits = ReaderLimits()
        limits.maxHeaderBytes = 2048
        limits.maxRequestLineBytes = 1024
        var big = ReaderDriver(limits: limits)
        big.receive("GET / HTTP/1.1\r\nHost: x\r\nX: " + String(repeating: "a", count: 3000))
        #expect(big.refusals.map(\.status) == [431])
        var complete = ReaderDriver(limits: limits)
        complete.receive("GET / HTTP/1.1\r\nHost: x\r\nX: " + String(repeating: "a", count: 2100) + "\r\n\r\n")
        #expect(complete.refusals.map(\.status) == [431])
        var line = ReaderDriver(limits: limits)
        line.receive("GET /" + String(repeating: "a", count: 1100) + " HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(line.refusals.map(\.status) == [414])
        var unfinished = ReaderDriver(limits: limits)
        unfinished.receive("GET /" + String(repeating: "a", count: 1100))
        #expect(unfinished.refusals.map(\.status) == [414])
    }

    @Test func whatIsNotHTTPIsRefusedBeforeItsHeadEnds() {
        var tls = ReaderDriver()
        tls.receive([0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        #expect(tls.refusals.map(\.status) == [400])
        var version = ReaderDriver()
        version.receive("GET / HTTP/2.0\r\n")
        #expect(version.refusals.map(\.status) == [505])
        var bareLF = ReaderDriver()
        bareLF.receive("GET / HTTP/1.1\r\nHost: x\n\n")
        #expect(bareLF.refusals.map(\.status) == [400])
    }

    @Test func smugglingShapesAre400() {
        for head in [
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n",
            "GET / HTTP/1.1\r\n\r\n",
        ] {
            var d = ReaderDriver()
            d.receive(head)
            #expect(d.refusals.map(\.status) == [400], "\(head)")
        }
    }

    @Test func aResponseThatBreaksOffClosesOnceDeliveredOrAfterTheIdleTimeout() {
        var d = ReaderDriver()
        d.receive(Self.get)
        let action = d.reader.responseAborted(now: d.clock.now)
        guard case .wait(let deadline) = action else { Issue.record("\(action)"); return }
        #expect(deadline == d.clock.now.advanced(by: .seconds(60)))
        d.elapse(.seconds(60))
        #expect(d.closed)
    }
}

/// How responses are framed for the client: HEAD, HTTP/1.0, streaming and draining.
@Suite struct ResponseFramingTests {
    private static func request(_ text: String) throws -> HTTPHead { try HTTPHead.parseRequest(bytes(text)) }

    @Test func aStreamedBodyIsChunkedForHTTP11AndCloseDelimitedForHTTP10() throws {
        var eleven = ResponseFraming(request: try Self.request("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
        #expect(eleven.headers(for: .stream, draining: false) == .init(chunked: true))
        #expect(eleven.keepAlive)
        var ten = ResponseFraming(request: try Self.request("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"))
        #expect(ten.headers(for: .stream, draining: false) == .init(close: true))
        #expect(!ten.keepAlive)
        var tenLength = ResponseFraming(request: try Self.request("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"))
        #expect(tenLength.headers(for: .length(3), draining: false) == .init(contentLength: 3, keepAlive: true))
    }

    @Test func aResponseToHEADHasNoBodyFraming() throws {
        var head = ResponseFraming(request: try Self.request("HEAD / HTTP/1.1\r\nHost: x\r\n\r\n"))
        #expect(head.answeringHEAD)
        #expect(head.headers(for: .stream, draining: false) == .init())
        // Methods are case-sensitive: `head` is not HEAD, and (as nginx) not a method at all.
        #expect(throws: HTTPError.self) { try Self.request("head / HTTP/1.1\r\nHost: x\r\n\r\n") }
    }

    @Test func drainingClosesAfterTheResponse() throws {
        var f = ResponseFraming(request: try Self.request("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
        #expect(f.headers(for: .length(0), draining: true) == .init(contentLength: 0, close: true))
        #expect(!f.keepAlive)
    }
}
