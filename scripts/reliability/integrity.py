#!/usr/bin/env python3
"""Byte integrity through a running Breakwater, both directions.

Starts an echo upstream (threads, on 127.0.0.1, kernel-chosen port) that hashes every request
body it receives (SHA-256), echoes the body back (with Content-Length, or in chunks of random
sizes) and reports the hash in X-Body-SHA256. Starts the given breakwater binary in front of it,
then sends N requests with random binary bodies of 0..1 MiB (Content-Length or chunked, random
chunk sizes) over C keep-alive connections and checks, for every request, that the upstream's
hash and the hash of the echoed body equal the hash of what was sent.

Usage: integrity.py BREAKWATER_BINARY [--requests N] [--clients C] [--max-size BYTES] [--seed S]
Prints one JSON line of totals; exits 1 on any mismatch, error or non-200.
"""
import argparse, hashlib, json, os, random, socket, subprocess, sys, tempfile, threading, time

HOST = "127.0.0.1"


def free_port():
    s = socket.socket()
    s.bind((HOST, 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Reader:
    """Buffered reads from a socket: lines, exact counts, chunked bodies."""

    def __init__(self, sock):
        self.sock, self.buf = sock, bytearray()

    def fill(self):
        data = self.sock.recv(1 << 20)
        if not data:
            raise EOFError("peer closed")
        self.buf += data

    def until(self, delim):
        while True:
            i = self.buf.find(delim)
            if i >= 0:
                out = bytes(self.buf[: i + len(delim)])
                del self.buf[: i + len(delim)]
                return out
            self.fill()

    def exact(self, n):
        while len(self.buf) < n:
            self.fill()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def head(self):
        lines = self.until(b"\r\n\r\n").decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        return lines[0], headers

    def body(self, headers):
        if "chunked" in headers.get("transfer-encoding", "").lower():
            parts = []
            while True:
                size = int(self.until(b"\r\n").split(b";")[0].strip(), 16)
                if size == 0:
                    while self.until(b"\r\n") != b"\r\n":
                        pass
                    return b"".join(parts)
                parts.append(self.exact(size))
                self.exact(2)
        return self.exact(int(headers.get("content-length", "0")))


def chunked(body, rng):
    out, offset = [], 0
    while offset < len(body):
        n = min(len(body) - offset, rng.randint(1, 262144))
        out += [b"%x\r\n" % n, body[offset : offset + n], b"\r\n"]
        offset += n
    out.append(b"0\r\n\r\n")
    return b"".join(out)


def echo_upstream(listener, stats):
    def serve(conn):
        rng = random.Random()
        reader = Reader(conn)
        try:
            while True:
                _, headers = reader.head()
                body = reader.body(headers)
                digest = hashlib.sha256(body).hexdigest()
                with stats["lock"]:
                    stats["upstream_requests"] += 1
                    stats["upstream_bytes"] += len(body)
                if headers.get("x-answer") == "chunked":
                    head = b"HTTP/1.1 200 OK\r\nX-Body-SHA256: %s\r\nTransfer-Encoding: chunked\r\n\r\n" % digest.encode()
                    conn.sendall(head + chunked(body, rng))
                else:
                    head = b"HTTP/1.1 200 OK\r\nX-Body-SHA256: %s\r\nContent-Length: %d\r\n\r\n" % (digest.encode(), len(body))
                    conn.sendall(head + body)
        except (EOFError, OSError):
            pass
        finally:
            conn.close()

    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


def client(port, jobs, results, seed, deadline):
    rng = random.Random(seed)
    sock = None
    reader = None
    for i, size in jobs:
        if time.time() > deadline:
            results["errors"].append(f"{i}: deadline passed")
            return
        body = os.urandom(size)
        sent = hashlib.sha256(body).hexdigest()
        use_chunked = i % 3 == 1
        head = f"POST /echo/{i} HTTP/1.1\r\nHost: integrity\r\nContent-Type: application/octet-stream\r\n"
        if i % 3 == 2:
            head += "X-Answer: chunked\r\n"
        head += "Transfer-Encoding: chunked\r\n\r\n" if use_chunked else f"Content-Length: {size}\r\n\r\n"
        payload = head.encode() + (chunked(body, rng) if use_chunked else body)
        try:
            if sock is None:
                sock = socket.create_connection((HOST, port), timeout=60)
                reader = Reader(sock)
            sock.sendall(payload)
            status_line, headers = reader.head()
            echoed = reader.body(headers)
        except (OSError, EOFError, ValueError) as error:
            results["errors"].append(f"{i}: {error!r}")
            sock = None
            continue
        status = int(status_line.split()[1])
        with results["lock"]:
            results["requests"] += 1
            results["bytes_up"] += size
            results["bytes_down"] += len(echoed)
            if status != 200:
                results["statuses"][status] = results["statuses"].get(status, 0) + 1
            if headers.get("x-body-sha256") != sent:
                results["request_mismatches"].append(i)
            if len(echoed) != size or hashlib.sha256(echoed).hexdigest() != sent:
                results["response_mismatches"].append(i)
        if headers.get("connection", "").lower() == "close":
            sock.close()
            sock = None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("binary")
    parser.add_argument("--requests", type=int, default=10000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--max-size", type=int, default=1 << 20)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--timeout", type=float, default=1800, help="give up after this many seconds")
    args = parser.parse_args()

    listener = socket.socket()
    listener.bind((HOST, 0))
    listener.listen(512)
    upstream_port = listener.getsockname()[1]
    stats = {"lock": threading.Lock(), "upstream_requests": 0, "upstream_bytes": 0}
    threading.Thread(target=echo_upstream, args=(listener, stats), daemon=True).start()

    work = tempfile.mkdtemp(prefix="breakwater-integrity-")
    port, admin = free_port(), free_port()
    conf = os.path.join(work, "breakwater.conf")
    with open(conf, "w") as f:
        f.write(f'[server]\nlisten = "{HOST}:{port}"\nmax_body_bytes = "2MB"\n'
                f'[admin]\nlisten = "{HOST}:{admin}"\n'
                f'[upstream]\nservers = ["{HOST}:{upstream_port}"]\n')
    log = open(os.path.join(work, "breakwater.log"), "w")
    proxy = subprocess.Popen([args.binary, "--config", conf], stdout=log, stderr=log)
    try:
        for _ in range(150):
            try:
                socket.create_connection((HOST, port), timeout=1).close()
                break
            except OSError:
                if proxy.poll() is not None:
                    sys.exit("breakwater exited at start; see " + log.name)
                time.sleep(0.1)
        rng = random.Random(args.seed)
        edges = [0, 1, 2, 16383, 16384, 16385, 65535, 65536, 65537, args.max_size]
        sizes = [edges[i] if i < len(edges) else rng.randint(0, args.max_size) for i in range(args.requests)]
        results = {"lock": threading.Lock(), "requests": 0, "bytes_up": 0, "bytes_down": 0, "statuses": {},
                   "request_mismatches": [], "response_mismatches": [], "errors": []}
        started = time.time()
        deadline = started + args.timeout
        threads = []
        for c in range(args.clients):
            jobs = [(i, sizes[i]) for i in range(c, args.requests, args.clients)]
            t = threading.Thread(target=client, args=(port, jobs, results, args.seed + c, deadline))
            t.start()
            threads.append(t)
        for t in threads:
            t.join()
        elapsed = time.time() - started
    finally:
        proxy.terminate()
        try:
            proxy.wait(15)
        except subprocess.TimeoutExpired:
            proxy.kill()
        listener.close()
    summary = {
        "requests": args.requests, "answered": results["requests"], "seed": args.seed,
        "bytes_sent": results["bytes_up"], "bytes_echoed": results["bytes_down"],
        "upstream_requests": stats["upstream_requests"], "upstream_bytes": stats["upstream_bytes"],
        "request_direction_mismatches": len(results["request_mismatches"]),
        "response_direction_mismatches": len(results["response_mismatches"]),
        "non_200": results["statuses"], "errors": len(results["errors"]),
        "seconds": round(elapsed, 1), "exit_status": proxy.returncode,
    }
    print(json.dumps(summary))
    for line in results["errors"][:10]:
        print("error:", line, file=sys.stderr)
    ok = (results["requests"] == args.requests and not results["request_mismatches"]
          and not results["response_mismatches"] and not results["statuses"] and not results["errors"]
          and stats["upstream_bytes"] == results["bytes_up"])
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
