/// What a request must satisfy beyond its syntax before it is routed or forwarded (RFC 9112 3).
extension HTTPHead {
    /// Throws the status to refuse the request with when it breaks a rule of request semantics.
    public func checkRequest() throws(HTTPError) {
        // RFC 9112 3.2: an HTTP/1.1 request carries exactly one Host.
        if minorVersion == 1, count("host") != 1 { throw .badRequest("HTTP/1.1 request without exactly one Host") }
    }
}
