/// How a request's body is delimited, decided from its head with no tolerance for ambiguity:
/// the usual request-smuggling shapes are refused before any byte is forwarded.
public enum RequestFraming: Equatable {
    case none
    case length(Int)
    case chunked

    /// A refusal: status code and reason phrase.
    public struct Refusal: Error, Equatable {
        public let code: Int
        public let reason: String
        public static let badRequest = Refusal(code: 400, reason: "Bad Request")
    }

    /// The framing of `head`, or the status to refuse it with.
    public static func of(_ head: HTTPHead) -> Result<RequestFraming, Refusal> {
        if head.minorVersion == 1, head.count("host") != 1 { return .failure(.badRequest) }
        let transferEncoding = head.combined("transfer-encoding")
        let lengths = head.fields.filter { head.nameIs($0, "content-length") }
        if let transferEncoding {
            // RFC 9112 6.1: chunked must be the only coding we accept; with Content-Length it is an attack.
            guard lengths.isEmpty, head.minorVersion == 1,
                  transferEncoding.trimmingASCIISpaces().lowercased() == "chunked"
            else { return .failure(.badRequest) }
            return .success(.chunked)
        }
        guard !lengths.isEmpty else { return .success(.none) }
        var length: Int?
        for field in lengths {
            for part in head.value(field).split(separator: ",", omittingEmptySubsequences: false) {
                let digits = part.trimmingASCIISpaces()
                guard !digits.isEmpty, digits.count <= 18, digits.allSatisfy({ $0.isASCII && $0.isNumber }),
                      let n = Int(digits), length == nil || length == n
                else { return .failure(.badRequest) }
                length = n
            }
        }
        return .success(length == 0 ? .none : .length(length!))
    }
}
