"""One HTTP/1.1 answer read whole from a socket, plain or TLS: the part of a request loop that
bench/instructions.sh's and bench/tls-counts.sh's clients share. The answer must carry its
length (Content-Length, or no body); an answer the proxy closes early ends the run."""
import sys


def read_answer(s, want_status=None):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            sys.exit("connection closed by the proxy")
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    if want_status is not None and head.split()[1] != want_status:
        sys.exit("unexpected answer: %r" % head)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = s.recv(65536)
        if not chunk:
            sys.exit("connection closed by the proxy in the middle of a body")
        body += chunk
    return head, body
