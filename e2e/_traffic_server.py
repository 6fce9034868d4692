"""A backend test host for the traffic e2e tests: answers every request with its own name.

With ``--echo-address`` (the name is then ignored) it answers with the local address the request
reached: one process stands in for every pod of a pod CIDR the network namespace owns.

``GET /__seen?path=P`` answers how many requests for path ``P`` it has served (mirrored copies
included), so a test can count what a proxy mirrored to it.

Runs inside the test's network namespace (``ip netns exec``). Stdlib only; stops by itself
after ``--max-seconds`` so a crashed test can never leave it serving. An idle keep-alive
connection is closed after ``IDLE_TIMEOUT`` (its thread ends) instead of being held forever.
"""

from __future__ import annotations

import argparse
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

IDLE_TIMEOUT = 60.0  # seconds a connection may stay silent (the proxy's idle timeout is 30 s)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("listen", help="ADDRESS:PORT")
    parser.add_argument("name")
    parser.add_argument("--max-seconds", type=float, default=900.0)
    parser.add_argument("--echo-address", action="store_true")
    args = parser.parse_args()
    host, _, port = args.listen.rpartition(":")
    seen: Counter[str] = Counter()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = IDLE_TIMEOUT  # socket timeout of every connection (StreamRequestHandler)

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            url = urlsplit(self.path)
            name = self.connection.getsockname()[0] if args.echo_address else args.name
            answer = name.encode()
            if url.path == "/__seen":
                with lock:
                    answer = str(seen[parse_qs(url.query).get("path", [""])[0]]).encode()
            else:
                with lock:
                    seen[url.path] += 1
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("X-Backend", name)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _answer

        def log_message(self, format: str, *a: object) -> None:
            pass

    server = ThreadingHTTPServer((host, int(port)), Handler)
    server.daemon_threads = True
    threading.Timer(args.max_seconds, server.shutdown).start()
    print(f"ready {args.name} {args.listen}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
