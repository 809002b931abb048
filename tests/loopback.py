"""A real HTTP server on loopback, run in a thread: the base of every fake peer in the tests
(the OpenAI-format API, the helpdesks, Slack, event receivers).

    class FakePeer(Loopback):
        def __init__(self) -> None:
            super().__init__(self._handler())   # a BaseHTTPRequestHandler class
    with FakePeer() as peer:
        httpx.get(peer.address + "/ping")
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

HOST = "127.0.0.1"
#: How often the server loop looks for shutdown (the stdlib's 0.5 s makes every test half a second longer).
POLL_SECONDS = 0.02


class LoopbackServer(ThreadingHTTPServer):
    """Many clients at once (a deep listen backlog); a client that hung up is not an error."""

    request_queue_size = 256
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class Loopback:
    """Serves ``handler`` on ``127.0.0.1:port`` (0: any free port) while the ``with`` block runs."""

    def __init__(self, handler: type[BaseHTTPRequestHandler], port: int = 0) -> None:
        self._handler_class = handler
        self.restarts = 0
        self._listen(port)

    def _listen(self, port: int) -> None:
        self._server = LoopbackServer((HOST, port), self._handler_class)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(POLL_SECONDS,), daemon=True)

    @property
    def address(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://{HOST}:{self._server.server_address[1]}"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def restart(self, down_seconds: float) -> None:
        """Stop listening (connections are refused), wait ``down_seconds``, listen again on the same port, as
        a peer's outage looks from outside (what the subclass holds, e.g. a helpdesk's tickets, stays)."""
        with self.down():
            time.sleep(down_seconds)

    @contextmanager
    def down(self) -> Iterator[None]:
        """Not listening inside the block (connections are refused), back on the same port after it."""
        port = self._server.server_address[1]
        self.__exit__()
        try:
            yield
        finally:
            self._listen(port)
            self._thread.start()
            self.restarts += 1
