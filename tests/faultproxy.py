"""A fault-injecting HTTP proxy on loopback, in front of the moto S3 server: a test utility, not a mock.

Requests pass through to the real endpoint unless the rule picks them: then the proxy answers 503 (or 500)
or drops the connection without an answer, as a throttled or flapping object store does.
"""

from __future__ import annotations

import http.client
import random
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# rule(method, path) -> None (pass through), "500", "503" or "drop"
Rule = Callable[[str, str], str | None]
_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade"}


def share_failing(share: float, seed: int = 0, kinds: tuple[str, ...] = ("503", "500", "drop")) -> Rule:
    """Fail a share of all requests (seeded), cycling through the kinds of failure."""
    rng, lock = random.Random(seed), threading.Lock()

    def rule(method: str, path: str) -> str | None:
        with lock:
            return rng.choice(kinds) if rng.random() < share else None

    return rule


class FaultProxy:
    """`with FaultProxy(upstream, rule) as url:` - a proxy URL to use as the S3 endpoint."""

    def __init__(self, upstream: str, rule: Rule | None = None) -> None:
        self.upstream = upstream.removeprefix("http://")
        self.rule: Rule = rule or (lambda m, p: None)
        self.counts = {"passed": 0, "failed": 0}
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _body(self) -> bytes | None:
                """The request body, also when sent in chunks (no Content-Length)."""
                if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                    parts = []
                    while (size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)) > 0:
                        parts.append(self.rfile.read(size))
                        self.rfile.readline()  # the CRLF after each chunk
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                        pass
                    return b"".join(parts)
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else None

            def _forward(self) -> None:
                body = self._body()
                fault = proxy.rule(self.command, self.path)
                if fault == "drop":
                    proxy.counts["failed"] += 1
                    self.close_connection = True
                    self.connection.close()
                    return
                if fault in ("500", "503"):
                    proxy.counts["failed"] += 1
                    payload = b"<Error><Code>SlowDown</Code><Message>injected</Message></Error>"
                    self.send_response(int(fault))
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(payload)
                    return
                proxy.counts["passed"] += 1
                conn = http.client.HTTPConnection(proxy.upstream, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                if body is not None:
                    headers["Content-Length"] = str(len(body))
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in _HOP and k.lower() != "content-length":
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> str:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self.url

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
