"""A local HTTP file server for the weights-download tests (127.0.0.1, a thread), with faults on request.

`WeightsServer.files` maps a file name to its bytes; `mode[name]` picks what the server does with it:
"ok" (Range supported), "norange" (Range ignored: always 200 with the whole file), "drop" (sends half of what
was asked, then closes the connection), "drop_once" (like drop for the first request, then "ok"), "html"
(200 with an HTML error page instead of the file: a captive portal or proxy), "flip" (the file with some bytes of
its data changed, same length), "404". `log` records (name, Range header) of every request.
"""

from __future__ import annotations

import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        state: WeightsServer = self.server.state
        name = self.path.rsplit("/", 1)[-1]
        rng = self.headers.get("Range")
        state.log.append((name, rng))
        mode = state.mode.get(name, "ok")
        if mode == "drop_once":
            state.mode[name] = "ok"
            mode = "drop"
        if mode == "404" or name not in state.files:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data = state.files[name]
        if mode == "html":
            data = b"<html><body>Please log in to continue</body></html>\n" * 8
        elif mode == "flip":
            mid = len(data) // 2
            data = data[:mid] + bytes(b ^ 0xFF for b in data[mid:mid + 64]) + data[mid + 64:]
        start = 0
        m = re.match(r"bytes=(\d+)-$", rng or "")
        if m and mode != "norange":
            start = int(m.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        if mode == "drop":
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(body)


class WeightsServer:
    """``with WeightsServer() as srv:`` serves ``srv.files`` at ``srv.url``; ``srv.stop()`` takes it offline."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.mode: dict[str, str] = {}
        self.log: list[tuple[str, str | None]] = []
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.state = self
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def closed_port() -> int:
    """A local port nothing listens on (connection refused)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port
