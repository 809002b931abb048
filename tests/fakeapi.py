"""A real HTTP server on loopback that speaks the OpenAI chat-completions wire format.

Tests script its answers per conversation: a reply list is picked by a *key*, a string that
appears in the request's messages (put a unique marker in each test conversation). A request
with ``"stream": true`` gets the same reply as SSE chunks, so one script serves both paths.

    with FakeMiMo() as api:
        api.script("ORDER-17", error(500), ok({"problem_type": "consult", ...}))
        client = openai.OpenAI(base_url=api.base_url, api_key="test")
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

USAGE = {"prompt_tokens": 161, "completion_tokens": 89, "total_tokens": 250,
         "completion_tokens_details": {"reasoning_tokens": 0}, "prompt_tokens_details": {}}


@dataclass
class Reply:
    """One scripted answer: a completion (``content``) or an HTTP error (``status``)."""

    status: int = 200
    content: str | None = None
    finish_reason: str = "stop"
    headers: dict[str, str] = field(default_factory=dict)
    body: str | None = None
    delay: float = 0.0
    usage: dict[str, Any] = field(default_factory=lambda: dict(USAGE))
    reasoning: str | None = None


def ok(content: str | dict[str, Any], finish_reason: str = "stop", **kw: Any) -> Reply:
    """A 200 completion whose message content is ``content`` (a dict is JSON-encoded)."""
    text = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
    return Reply(content=text, finish_reason=finish_reason, **kw)


def error(status: int, message: str = "scripted error", headers: dict[str, str] | None = None) -> Reply:
    """An HTTP error in the OpenAI error-body shape."""
    body = json.dumps({"error": {"message": message, "type": "error", "code": str(status)}})
    return Reply(status=status, body=body, headers=headers or {})


def hang(seconds: float, then: Reply | None = None) -> Reply:
    """Wait ``seconds`` before answering (longer than the client timeout = a timeout)."""
    reply = then or ok("{}")
    reply.delay = seconds
    return reply


VALID_TICKET = {"problem_type": "other", "device_model": None, "urgent_level": "normal",
                "user_requirements": []}


class FakeMiMo:
    """The loopback server. Unscripted requests get ``default`` (a valid ticket)."""

    def __init__(self, default: Reply | None = None) -> None:
        self.default = default or ok(VALID_TICKET)
        self._scripts: dict[str, list[Reply]] = {}
        self._lock = threading.Lock()
        self.requests: list[dict[str, Any]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> FakeMiMo:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def script(self, key: str, *replies: Reply) -> None:
        """Answer requests mentioning ``key`` with ``replies`` in order; the last one repeats."""
        with self._lock:
            self._scripts[key] = list(replies)

    def requests_for(self, key: str) -> list[dict[str, Any]]:
        with self._lock:
            return [r for r in self.requests if key in json.dumps(r["body"]["messages"], ensure_ascii=False)]

    def _next_reply(self, body: dict[str, Any]) -> Reply:
        text = json.dumps(body.get("messages", []), ensure_ascii=False)
        with self._lock:
            for key, replies in self._scripts.items():
                if key in text:
                    return replies.pop(0) if len(replies) > 1 else replies[0]
        return self.default

    def _record(self, request: dict[str, Any]) -> None:
        with self._lock:
            self.requests.append(request)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
                return

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                fake._record({"path": self.path, "headers": dict(self.headers), "body": body,
                              "at": time.time()})
                if not self.path.endswith("/chat/completions"):
                    self._send(404, json.dumps({"error": {"message": "no such route"}}), {})
                    return
                reply = fake._next_reply(body)
                if reply.delay:
                    time.sleep(reply.delay)
                if reply.status != 200:
                    self._send(reply.status, reply.body or "{}", reply.headers)
                elif body.get("stream"):
                    self._stream(body, reply)
                else:
                    self._send(200, json.dumps(_completion(body, reply), ensure_ascii=False), reply.headers)

            def _send(self, status: int, text: str, headers: dict[str, str]) -> None:
                data = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def _stream(self, body: dict[str, Any], reply: Reply) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                for chunk in _chunks(body, reply):
                    self.wfile.write(b"data: " + json.dumps(chunk, ensure_ascii=False).encode() + b"\n\n")
                    self.wfile.flush()
                self.wfile.write(b"data: [DONE]\n\n")

        return Handler


def _completion(body: dict[str, Any], reply: Reply) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.content, "tool_calls": None}
    if reply.reasoning is not None:
        message["reasoning_content"] = reply.reasoning
    return {"id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model", "mimo-v2-flash"),
            "choices": [{"index": 0, "finish_reason": reply.finish_reason, "message": message}],
            "usage": reply.usage}


def _chunks(body: dict[str, Any], reply: Reply) -> list[dict[str, Any]]:
    base: dict[str, Any] = {"id": "chatcmpl-fake", "object": "chat.completion.chunk",
                            "created": int(time.time()), "model": body.get("model", "mimo-v2-flash")}
    text = reply.content or ""
    pieces = [text[i:i + 7] for i in range(0, len(text), 7)] or [""]
    chunks = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                    "finish_reason": None}]}]
    chunks += [{**base, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
               for piece in pieces]
    chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": reply.finish_reason}]})
    if (body.get("stream_options") or {}).get("include_usage"):
        chunks.append({**base, "choices": [], "usage": reply.usage})
    return chunks

