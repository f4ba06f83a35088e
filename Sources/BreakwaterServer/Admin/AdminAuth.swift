import BreakwaterCore
import BreakwaterHTTP

/// The admin listener's two guards: the bearer token, and the same-origin rule of the endpoints
/// that change state.
struct AdminAuth {
    /// Two SipHash keys drawn at random for this process: a token is compared by its 128-bit
    /// digest, so the comparison takes the same time whatever the two tokens share.
    private let first = KeyedHasher(secret: "")
    private let second = KeyedHasher(secret: "")

    /// Whether `head` carries `Authorization: Bearer <token>` (the scheme in any case). Both the
    /// presented token and `token` are hashed, and every byte of the two digests is compared.
    func authorized(_ head: HTTPHead, token: String) -> Bool {
        guard let value = head.combined("authorization") else { return false }
        let bytes = Array(value.utf8)
        let scheme = Array("bearer ".utf8)
        guard bytes.count > scheme.count,
              zip(bytes, scheme).allSatisfy({ $0 | 0x20 == $1 || $0 == $1 }) else { return false }
        var presented = bytes[scheme.count...]
        while presented.first == 0x20 { presented = presented.dropFirst() }
        while presented.last == 0x20 { presented = presented.dropLast() }
        return Self.equal(digest(presented), digest(Array(token.utf8)[...]))
    }

    private func digest(_ bytes: ArraySlice<UInt8>) -> [UInt8] {
        let words = [first.hash(bytes), second.hash(bytes)]
        return words.flatMap { word in (0..<8).map { UInt8(truncatingIfNeeded: word >> ($0 * 8)) } }
    }

    /// Compares every byte of two digests of equal length, without stopping at the first difference.
    static func equal(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for i in a.indices { difference |= a[i] ^ b[i] }
        return difference == 0
    }

    /// Why a state-changing request must be refused as cross-origin, or nil when it may proceed.
    ///
    /// A browser says where a request comes from: `Sec-Fetch-Site` must be `same-origin` or `none`
    /// (typed by the user), and `Origin`, when present, must be this listener's own origin, the
    /// request's `Host` over http or https. Clients that send neither (curl, scripts) pass: the
    /// rule is there so that a page open in the operator's browser cannot act behind their back.
    static func crossOrigin(_ head: HTTPHead) -> String? {
        if let site = head.combined("sec-fetch-site") {
            let value = site.trimmed(" \t").lowercased()
            if value != "same-origin" && value != "none" { return "Sec-Fetch-Site: \(value)" }
        }
        if let origin = head.combined("origin") {
            guard let host = head.combined("host")?.trimmed(" \t").lowercased(), !host.isEmpty else {
                return "Origin without Host"
            }
            let value = origin.trimmed(" \t").lowercased()
            if value != "http://" + host && value != "https://" + host { return "Origin \(value), not this listener" }
        }
        return nil
    }
}

extension String {
    /// The string without leading and trailing characters of `set`.
    fileprivate func trimmed(_ set: String) -> String {
        var slice = Substring(self)
        while let c = slice.first, set.contains(c) { slice = slice.dropFirst() }
        while let c = slice.last, set.contains(c) { slice = slice.dropLast() }
        return String(slice)
    }
}
