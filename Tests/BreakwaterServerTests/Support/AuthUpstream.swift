import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// An upstream on 127.0.0.1 that asks for credentials as real servers do, one path per scheme,
/// user "user" and password "pass": `/digest` (RFC 7616, MD5, qop=auth, checked), `/basic`,
/// `/ntlm` (the three messages: a bare challenge, then the server's challenge message to a
/// negotiate message, then 200 to an authenticate message for "user"), `/negotiate` (token
/// "first" gets a challenge with data, "final" 200, anything else a bare challenge). Python's
/// `http.server`; it stops itself after 5 minutes whatever happens to the test.
final class AuthUpstream: @unchecked Sendable {
    let port: UInt16
    private let process: Spawned

    init() throws {
        let dir = try Binary.tempDirectory()
        let script = dir.appendingPathComponent("auth.py")
        let portFile = dir.appendingPathComponent("port")
        try Self.script.write(to: script, atomically: true, encoding: .utf8)
        let process = try Tool.start("python3", [script.path, portFile.path], log: dir.appendingPathComponent("auth.log"))
        self.process = process
        var found: UInt16?
        _ = eventually(10) {
            found = (try? String(contentsOf: portFile, encoding: .utf8)).flatMap { UInt16($0) }
            return found != nil || !process.isRunning
        }
        guard let found else {
            kill(process.processIdentifier, SIGKILL)
            throw TestSocket.Failure(description: "the auth upstream did not start")
        }
        port = found
    }

    deinit {
        // SIGKILL: a process started from a test thread inherits its mask, which blocks SIGTERM.
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }

    private static let script = #"""
        import base64, hashlib, http.server, os, secrets, struct, sys, threading

        port_file = sys.argv[1]
        threading.Timer(300, os._exit, [0]).start()
        USER, PASSWORD, REALM = "user", "pass", "breakwater-test"

        def md5(text):
            return hashlib.md5(text.encode()).hexdigest()

        def digest_params(value):
            params, rest = {}, value
            for part in http_split(rest):
                name, _, v = part.strip().partition("=")
                params[name.strip().lower()] = v.strip().strip('"')
            return params

        def http_split(text):
            parts, current, quoted = [], "", False
            for c in text:
                if c == '"':
                    quoted = not quoted
                if c == "," and not quoted:
                    parts.append(current)
                    current = ""
                else:
                    current += c
            parts.append(current)
            return parts

        def ntlm_type2():
            target_info_offset = 48
            return (b"NTLMSSP\x00" + struct.pack("<I", 2) + struct.pack("<HHI", 0, 0, target_info_offset)
                    + struct.pack("<I", 0x00000201) + secrets.token_bytes(8) + b"\x00" * 8
                    + struct.pack("<HHI", 0, 0, target_info_offset))

        def ntlm_user(message):
            length, _, offset = struct.unpack("<HHI", message[36:44])
            return message[offset:offset + length].decode("utf-16-le", "replace")

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def answer(self, status, challenge=None):
                body = b"ok\n" if status == 200 else b"who are you?\n"
                self.send_response(status)
                if challenge is not None:
                    self.send_header("WWW-Authenticate", challenge)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                auth = self.headers.get("Authorization")
                scheme, _, data = (auth or "").partition(" ")
                scheme = scheme.lower()
                if self.path == "/digest":
                    challenge = f'Digest realm="{REALM}", nonce="{secrets.token_hex(16)}", qop="auth", algorithm=MD5'
                    if scheme != "digest":
                        return self.answer(401, challenge)
                    p = digest_params(data)
                    ha1 = md5(f"{p.get('username')}:{REALM}:{PASSWORD}")
                    ha2 = md5(f"GET:{p.get('uri')}")
                    expected = md5(f"{ha1}:{p.get('nonce')}:{p.get('nc')}:{p.get('cnonce')}:{p.get('qop')}:{ha2}")
                    ok = p.get("username") == USER and p.get("response") == expected
                    return self.answer(200) if ok else self.answer(401, challenge)
                if self.path == "/basic":
                    good = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
                    return self.answer(200) if scheme == "basic" and data.strip() == good else self.answer(401, f'Basic realm="{REALM}"')
                if self.path == "/ntlm":
                    if scheme != "ntlm":
                        return self.answer(401, "NTLM")
                    message = base64.b64decode(data)
                    kind = struct.unpack("<I", message[8:12])[0]
                    if kind == 1:
                        return self.answer(401, "NTLM " + base64.b64encode(ntlm_type2()).decode())
                    return self.answer(200) if kind == 3 and ntlm_user(message) == USER else self.answer(401, "NTLM")
                if self.path == "/negotiate":
                    token = base64.b64decode(data).decode() if scheme == "negotiate" else ""
                    if token == "first":
                        return self.answer(401, "Negotiate " + base64.b64encode(b"continue").decode())
                    return self.answer(200) if token == "final" else self.answer(401, "Negotiate")
                self.answer(404)

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        with open(port_file + ".tmp", "w") as f:
            f.write(str(server.server_address[1]))
        os.rename(port_file + ".tmp", port_file)
        server.serve_forever()
        """#
}
