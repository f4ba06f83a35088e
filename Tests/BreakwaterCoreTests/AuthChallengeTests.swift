import Testing
@testable import BreakwaterCore

/// Which 401s are handshake steps (not counted) and which are rejected credentials (counted).
@Suite struct AuthChallengeTests {
    private func step(_ challenge: String?, _ authorization: String?) -> Bool {
        AuthChallenge.isHandshakeStep(wwwAuthenticate: challenge, authorization: authorization)
    }

    @Test func aBearerChallengeAlwaysCounts() {
        #expect(!step(#"Bearer error="invalid_token""#, "Bearer expired"))
        #expect(!step(#"Bearer realm="api""#, nil))
        #expect(!step(#"Basic realm="a", Bearer realm="b""#, nil), "Bearer among others: an API's token check")
    }

    @Test func aFourOhOneWithoutAChallengeCounts() {
        #expect(!step(nil, nil))
        #expect(!step("", nil))
    }

    @Test func theOpeningChallengeOfEachSchemeDoesNotCount() {
        #expect(step(#"Digest realm="r", nonce="abc", qop="auth", algorithm=MD5"#, nil))
        #expect(step(#"Basic realm="r""#, nil))
        #expect(step("NTLM", nil))
        #expect(step("Negotiate", nil))
        #expect(step("NTLM, Negotiate", "  "))
    }

    @Test func aChallengeThatGoesOnWithTheHandshakeDoesNotCount() {
        #expect(step("NTLM TlRMTVNTUAACAAAADAAMADAAAAA=", "NTLM TlRMTVNTUAABAAAAB4IIAAAAAAAAAAAAAAAAAAAAAAA="))
        #expect(step("Negotiate oYH1MIHyoAMKAQGhCwYJKoZIhvcSAQICooHd", "Negotiate YIIC"))
        #expect(step(#"Digest realm="r", nonce="new", stale=TRUE, qop="auth""#, #"Digest username="u", nonce="old""#))
    }

    @Test func aBareChallengeInAnswerToCredentialsIsARejectedLoginAndCounts() {
        #expect(!step(#"Digest realm="r", nonce="n2", qop="auth""#, #"Digest username="u", response="bad""#))
        #expect(!step(#"Basic realm="r""#, "Basic dTpiYWQ="))
        #expect(!step("NTLM", "NTLM TlRMTVNTUAADAAAA"))
        #expect(!step("Negotiate", "Negotiate YIIC"))
    }

    @Test func challengesAreSplitOutsideQuotes() {
        let parsed = AuthChallenge.parse(#"Digest realm="a, b", nonce="n", Basic realm="c", NTLM abc=="#)
        #expect(parsed.map(\.scheme) == ["digest", "basic", "ntlm"])
        #expect(parsed[0].params.map(\.value) == ["a, b", "n"])
        #expect(parsed[2].hasData)
    }
}
