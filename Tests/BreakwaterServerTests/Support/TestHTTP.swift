import Foundation

/// A parsed HTTP message as a test sees it on the wire.
struct TestMessage {
    var startLine: String
    var headers: [(name: String, value: String)]
    var body: [UInt8]
    /// False when the body ended early (connection closed before the framing said it was complete).
    var complete: Bool

    var status: Int { Int(startLine.split(separator: " ")[1]) ?? 0 }
    var method: String { String(startLine.split(separator: " ")[0]) }
    var target: String { String(startLine.split(separator: " ")[1]) }
    var bodyText: String { String(decoding: body, as: UTF8.self) }

    func header(_ name: String) -> String? {
        headers.first { $0.name.lowercased() == name.lowercased() }?.value
    }

    func all(_ name: String) -> [String] {
        headers.filter { $0.name.lowercased() == name.lowercased() }.map(\.value)
    }
}

extension TestSocket {
    /// Reads one message: a response (framing by status, CL, chunked or close) or, with
    /// `isRequest`, a request (CL or chunked). Nil when the peer closed before a head.
    func readMessage(isRequest: Bool = false, headRequest: Bool = false) throws -> TestMessage? {
        guard let headBytes = try read(until: Array("\r\n\r\n".utf8)) else { return nil }
        let text = String(decoding: headBytes, as: UTF8.self)
        var lines = text.components(separatedBy: "\r\n").filter { !$0.isEmpty }
        let start = lines.removeFirst()
        let headers = lines.map { line -> (String, String) in
            let colon = line.firstIndex(of: ":")!
            return (String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces))
        }
        var message = TestMessage(startLine: start, headers: headers, body: [], complete: true)
        if !isRequest {
            let status = message.status
            if headRequest || status == 204 || status == 304 || status < 200 { return message }
        }
        if message.header("transfer-encoding")?.lowercased().contains("chunked") == true {
            while true {
                guard let sizeLine = try read(until: [13, 10]) else { message.complete = false; return message }
                let hex = String(decoding: sizeLine.dropLast(2), as: UTF8.self).split(separator: ";")[0]
                let size = Int(hex.trimmingCharacters(in: .whitespaces), radix: 16) ?? 0
                if size == 0 {
                    while let line = try read(until: [13, 10]), line.count > 2 {}
                    return message
                }
                guard let data = try read(count: size), try read(count: 2) != nil else {
                    message.complete = false
                    return message
                }
                message.body += data
            }
        }
        if let length = message.header("content-length").flatMap({ Int($0) }) {
            if let data = try read(count: length) { message.body = data } else {
                message.body = try readToEnd()
                message.complete = false
            }
            return message
        }
        if isRequest { return message }
        message.body = try readToEnd()
        return message
    }
}

/// One request on a fresh connection.
func request(port: UInt16, _ method: String = "GET", _ target: String, headers: [(String, String)] = [],
             body: [UInt8] = [], host: String = "127.0.0.1") throws -> TestMessage {
    let socket = try TestSocket(port: port, host: host)
    try socket.send(rawRequest(method, target, headers: headers, body: body))
    guard let response = try socket.readMessage(headRequest: method == "HEAD") else {
        throw TestSocket.Failure(description: "\(method) \(target) on port \(port): connection closed without a response")
    }
    return response
}

/// Serializes a request with Host and (when there is a body) Content-Length.
func rawRequest(_ method: String, _ target: String, headers: [(String, String)] = [], body: [UInt8] = []) -> [UInt8] {
    var text = "\(method) \(target) HTTP/1.1\r\n"
    if !headers.contains(where: { $0.0.lowercased() == "host" }) { text += "Host: test\r\n" }
    for (name, value) in headers { text += "\(name): \(value)\r\n" }
    if !body.isEmpty || method == "POST" || method == "PUT" { text += "Content-Length: \(body.count)\r\n" }
    text += "\r\n"
    return Array(text.utf8) + body
}
