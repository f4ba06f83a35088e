import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Headless Chromium driven through the DevTools protocol: a page is opened, and JavaScript is
/// evaluated in it over a WebSocket (a minimal client: text frames, masked as RFC 6455 asks).
final class DevToolsPage {
    private let process: Spawned
    private let socket: TestSocket
    private var nextID = 0

    /// Starts Chromium on `url` with a profile in `profile`, and attaches to its page.
    init(url: String, profile: URL, windowSize: String = "1280,900") throws {
        process = try Tool.start(Tool.path("chromium"), [
            "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--user-data-dir=\(profile.path)",
            "--remote-debugging-port=0", "--window-size=\(windowSize)", url,
        ], log: profile.appendingPathComponent("chromium.log"))
        let portFile = profile.appendingPathComponent("DevToolsActivePort")
        var port: UInt16 = 0
        var pagePath: String?
        _ = eventually(20) {
            if port == 0, let text = try? String(contentsOf: portFile, encoding: .utf8),
               let first = text.split(separator: "\n").first, let number = UInt16(first) {
                port = number
            }
            guard port != 0,
                  let list = try? request(port: port, "GET", "/json/list", headers: [("Host", "127.0.0.1:\(port)")]),
                  let targets = try? JSONSerialization.jsonObject(with: Data(list.body)) as? [[String: Any]],
                  let page = targets.first(where: { $0["type"] as? String == "page" }),
                  let address = page["webSocketDebuggerUrl"] as? String,
                  let path = address.range(of: "/devtools/").map({ String(address[$0.lowerBound...]) }) else { return false }
            pagePath = path
            return true
        }
        guard let pagePath else {
            process.terminate()
            throw TestSocket.Failure(description: "chromium's DevTools did not answer")
        }
        socket = try TestSocket(port: port, timeout: 20)
        try socket.send("GET \(pagePath) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        guard let head = try socket.read(until: Array("\r\n\r\n".utf8)),
              String(decoding: head, as: UTF8.self).hasPrefix("HTTP/1.1 101") else {
            process.terminate()
            throw TestSocket.Failure(description: "no WebSocket to chromium's page")
        }
    }

    deinit { close() }

    /// Stops Chromium: SIGTERM, then SIGKILL after 3 s (a process started from a test thread may
    /// inherit a signal mask that blocks SIGTERM).
    func close() {
        guard process.isRunning else { return }
        process.terminate()
        if !eventually(3, { !process.isRunning }) { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    /// The value of `expression` evaluated in the page (a promise is awaited), as JSON gives it.
    func evaluate(_ expression: String) throws -> Any? {
        nextID += 1
        let id = nextID
        let command: [String: Any] = ["id": id, "method": "Runtime.evaluate",
                                      "params": ["expression": expression, "awaitPromise": true, "returnByValue": true]]
        try sendText(try JSONSerialization.data(withJSONObject: command))
        for _ in 0..<1000 {
            guard let message = try readText(),
                  let json = try? JSONSerialization.jsonObject(with: Data(message)) as? [String: Any],
                  json["id"] as? Int == id else { continue }
            let result = (json["result"] as? [String: Any])?["result"] as? [String: Any]
            return result?["value"]
        }
        throw TestSocket.Failure(description: "no answer to Runtime.evaluate")
    }

    private func sendText(_ payload: Data) throws {
        var frame: [UInt8] = [0x81]
        let count = payload.count
        if count < 126 {
            frame.append(0x80 | UInt8(count))
        } else if count < 65_536 {
            frame += [0x80 | 126, UInt8(count >> 8), UInt8(count & 0xff)]
        } else {
            frame.append(0x80 | 127)
            for shift in stride(from: 56, through: 0, by: -8) { frame.append(UInt8((count >> shift) & 0xff)) }
        }
        let mask: [UInt8] = [0x12, 0x34, 0x56, 0x78]
        frame += mask
        for (i, byte) in payload.enumerated() { frame.append(byte ^ mask[i % 4]) }
        try socket.send(frame)
    }

    /// The next text message (fragments joined); nil when the connection closed.
    private func readText() throws -> [UInt8]? {
        var message: [UInt8] = []
        for _ in 0..<10_000 {
            guard let header = try socket.read(count: 2) else { return nil }
            var length = Int(header[1] & 0x7f)
            if length == 126 {
                guard let more = try socket.read(count: 2) else { return nil }
                length = Int(more[0]) << 8 | Int(more[1])
            } else if length == 127 {
                guard let more = try socket.read(count: 8) else { return nil }
                length = more.reduce(0) { $0 << 8 | Int($1) }
            }
            guard let payload = length == 0 ? [] : try socket.read(count: length) else { return nil }
            let opcode = header[0] & 0x0f
            if opcode == 0x8 { return nil }
            if opcode == 0x1 || opcode == 0x0 { message += payload }
            if header[0] & 0x80 != 0 && (opcode == 0x1 || opcode == 0x0) { return message }
        }
        return nil
    }
}
