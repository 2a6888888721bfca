"""The serve function behind a local HTTP server (``groves serve``, ``groves.serve``): the
same ``steps.serve.Service`` a Function URL reaches, for development and for users without
AWS. A ``ThreadingHTTPServer`` speaking HTTP/1.1 (persistent connections, a thread per
connection): concurrent requests share one model, which stays fresh as the deployed one does.
"""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from groves.steps.serve import JSON_HEADERS, Service, dump

log = logging.getLogger("groves")
DRAIN_BYTES = 16 * 2**20  # a body over the limit is read and dropped up to this size


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else headers, then body: 40 ms of delayed ACK a request
    server: LocalServer

    def _answer(self, method: str) -> None:
        service = self.server.service
        length = self.headers.get("Content-Length")
        if method == "POST" and length is None:
            self._send(411, {"error": "a POST needs a Content-Length", "field": "body"})
            return
        try:
            size = int(length or 0)
        except ValueError:
            self._send(400, {"error": "Content-Length is not a number", "field": "body"})
            return
        if size > service.max_body_bytes:  # refused, read to its end (a client sees the 413)
            if size <= DRAIN_BYTES:
                for start in range(0, size, 1 << 16):
                    self.rfile.read(min(1 << 16, size - start))
            else:  # or not read at all: the connection closes
                self.close_connection = True
            error = f"body: {size} bytes; at most {service.max_body_bytes}"
            self._send(413, {"error": error, "field": "body"})
            return
        body = self.rfile.read(size) if size else b""
        status, payload = service.respond(method, self.path.split("?", 1)[0], body)
        self._send(status, payload)

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        data = dump(payload).encode()
        self.send_response(status)
        for name, value in JSON_HEADERS.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._answer("GET")

    def do_POST(self) -> None:
        self._answer("POST")

    def do_PUT(self) -> None:
        self._answer("PUT")

    def do_DELETE(self) -> None:
        self._answer("DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


class LocalServer(ThreadingHTTPServer):
    """A started server (``start``): ``url``, ``close()``, usable as a context manager."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, service: Service, host: str, port: int) -> None:
        super().__init__((host, port), _Handler)
        self.service = service
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"

    def start(self) -> LocalServer:
        """Serve in a background thread."""
        self._thread = threading.Thread(target=self.serve_forever, name="groves-serve", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        if self._thread is not None:  # shutdown waits for a serve_forever that runs
            self.shutdown()
            self._thread.join()
            self._thread = None
        self.server_close()

    def __enter__(self) -> LocalServer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def serve(service: Service, host: str = "127.0.0.1", port: int = 8080) -> LocalServer:
    """A server for ``service`` listening on ``host:port`` (``port`` 0: any free port), not
    yet serving: ``.start()`` serves in a thread, ``.serve_forever()`` in this one."""
    return LocalServer(service, host, port)
