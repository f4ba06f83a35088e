/// Which 401s are a step of an authentication handshake rather than a failure.
///
/// Digest, NTLM and Negotiate begin with a 401: the client asks without credentials (or with a
/// first handshake message), the server answers with a challenge, and the client's next request
/// carries the answer. Counting those 401s would block the client before its authenticated retry.
/// A 401 does not count when:
/// - no challenge is `Bearer` (a Bearer 401 is how an API says a token is bad: it always counts), and
/// - the request carried no `Authorization` (the server's opening challenge), or the challenge
///   goes on with a handshake: an NTLM or Negotiate challenge with data, a Digest challenge with
///   `stale=true` (the nonce expired, not the password).
///
/// A bare challenge in answer to credentials of that scheme is a rejected login, and counts like
/// any error: wrong passwords are still shielded, with `threshold` as for every error.
public enum AuthChallenge {
    /// Whether a 401 with `wwwAuthenticate` (every WWW-Authenticate value, comma-joined) to a
    /// request with `authorization` (nil when it had none) is a handshake step that does not count.
    public static func isHandshakeStep(wwwAuthenticate: String?, authorization: String?) -> Bool {
        guard let wwwAuthenticate else { return false }
        let challenges = parse(wwwAuthenticate)
        guard !challenges.isEmpty, !challenges.contains(where: { $0.scheme == "bearer" }) else { return false }
        if authorization.map({ $0.trimmingSpaces.isEmpty }) ?? true { return true }
        return challenges.contains { challenge in
            switch challenge.scheme {
            case "ntlm", "negotiate": return challenge.hasData
            case "digest": return challenge.params.contains { $0.name == "stale" && $0.value.lowercased() == "true" }
            default: return false
            }
        }
    }

    /// One challenge: its scheme (lower-case), whether a token68 follows it, and its parameters.
    struct Challenge: Equatable {
        var scheme: String
        var hasData = false
        var params: [(name: String, value: String)] = []

        static func == (a: Challenge, b: Challenge) -> Bool {
            a.scheme == b.scheme && a.hasData == b.hasData && a.params.elementsEqual(b.params) { $0 == $1 }
        }
    }

    /// The challenges of a WWW-Authenticate list (RFC 9110 11.6.1): elements split at commas
    /// outside quotes; an element whose first word has no `=` starts a challenge, the rest of it
    /// being a token68 or its first parameter; an element `name=value` is a parameter of the last.
    static func parse(_ text: String) -> [Challenge] {
        var challenges: [Challenge] = []
        for element in splitOutsideQuotes(text) {
            let item = element.trimmingSpaces
            guard !item.isEmpty else { continue }
            let word = item.prefix { $0 != " " && $0 != "\t" }
            let rest = item.dropFirst(word.count).trimmingSpaces
            if !word.contains("=") {
                var challenge = Challenge(scheme: word.lowercased())
                if let param = parameter(rest) { challenge.params.append(param) } else { challenge.hasData = !rest.isEmpty }
                challenges.append(challenge)
            } else if let param = parameter(item), !challenges.isEmpty {
                challenges[challenges.count - 1].params.append(param)
            }
        }
        return challenges
    }

    /// `name=value` or `name="value"` as a parameter (name lower-case); nil for a token68, whose
    /// `=` can only be trailing padding.
    private static func parameter(_ text: Substring) -> (name: String, value: String)? {
        guard let equals = text.firstIndex(of: "=") else { return nil }
        let name = text[..<equals].trimmingSpaces
        var value = text[text.index(after: equals)...].trimmingSpaces
        guard !name.isEmpty, !(value.isEmpty || value.allSatisfy { $0 == "=" }) else { return nil }
        if value.hasPrefix("\""), value.hasSuffix("\""), value.count >= 2 { value = value.dropFirst().dropLast() }
        return (name.lowercased(), String(value))
    }

    private static func splitOutsideQuotes(_ text: String) -> [Substring] {
        var parts: [Substring] = []
        var start = text.startIndex
        var quoted = false
        var escaped = false
        var i = text.startIndex
        while i < text.endIndex {
            let c = text[i]
            if escaped { escaped = false } else if quoted && c == "\\" { escaped = true } else if c == "\"" {
                quoted.toggle()
            } else if c == "," && !quoted {
                parts.append(text[start..<i])
                start = text.index(after: i)
            }
            i = text.index(after: i)
        }
        parts.append(text[start...])
        return parts
    }
}

extension StringProtocol {
    /// Without leading and trailing spaces and tabs.
    fileprivate var trimmingSpaces: Substring {
        let s = Substring(self)
        guard let first = s.firstIndex(where: { $0 != " " && $0 != "\t" }) else { return s[s.endIndex...] }
        let last = s.lastIndex { $0 != " " && $0 != "\t" }!
        return s[first...last]
    }
}
